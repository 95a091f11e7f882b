"""``blender rank``: rank the candidates of MixInstruct records (PairRanker, consensus, random).

Example:
    .. code-block:: console

        $ blender rank data.jsonl --model llm-blender/PairRM --out ranked.jsonl
        $ blender rank 'shards/*.parquet' --engine ray --address auto --concurrency 8 \\
              --num-gpus 1 --out ranked.parquet --pairs-out prefs.jsonl --pair-policy best-worst

Each output row: ``{"id", "order", "ranks", "scores", "best", "best_model", "strategy"}`` where
``order`` lists candidate indices best first and ``ranks`` gives each candidate's rank (1 = best);
``--pairs-out`` adds DPO preference pairs (``prompt``, ``chosen``, ``rejected``, scores). Outputs
are JSONL or Parquet by suffix and appear complete or not at all; a rerun with the same ``--out``
skips the records already done (by id). ``--engine local`` (default) runs in this process;
``--engine ray`` runs a pool of PairRanker actors on Ray Data (the ``ray`` extra).
``--model consensus`` (MiniLM agreement, offline) or ``--model random`` rank without a
checkpoint; every ranker is built by :func:`blender_core.loading.load_ranker`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from blender_core.cli import app
from blender_core.cli._errors import cli_errors

if TYPE_CHECKING:
    from blender_core.data import MixRecord
    from blender_core.preferences import PairPolicy
    from blender_core.rank_output import RankOutput

__all__ = ["rank_command"]

_LOCAL_CHUNK = 32


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _root_cause(exc: BaseException) -> BaseException:
    """The user-facing error inside Ray's wrappers (task errors, user-code exceptions)."""
    seen: BaseException | None = exc
    for _ in range(16):
        if seen is None or not type(seen).__module__.startswith("ray"):
            break
        seen = getattr(seen, "cause", None) or seen.__cause__ or seen.__context__
    return seen if seen is not None else exc


@app.command("rank")
@cli_errors
def rank_command(
    data: Annotated[
        str,
        typer.Argument(help="MixInstruct JSONL or Parquet: a file, a folder or a glob (quote it)."),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output *.jsonl or *.parquet (default: JSONL on stdout)."),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="PairRanker checkpoint (hub id or local directory), or consensus (MiniLM, "
            "offline) or random.",
        ),
    ] = "llm-blender/PairRM",
    strategy: Annotated[str, typer.Option(help="max_logits, max_wins or bubble.")] = "max_logits",
    pairs: Annotated[
        str,
        typer.Option(
            "--pairs",
            help="all (every ordered pair, N(N-1) passes) or one-way (each pair once, half).",
        ),
    ] = "all",
    top_k: Annotated[
        int | None,
        typer.Option(
            help="Only select the best K by a knockout (max_logits; ~2(N-1) passes for K=1)."
        ),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="local (this process) or ray (a pool of actors on Ray Data).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster: auto, ray://host:10001 (default: a local Ray instance)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Ray actors, each with one PairRanker.")] = 1,
    num_gpus: Annotated[float, typer.Option(help="GPUs per Ray actor (0: CPU).")] = 0,
    batch_size: Annotated[int, typer.Option(help="Records per Ray actor call.")] = 16,
    pairs_out: Annotated[
        Path | None,
        typer.Option(help="Also write DPO preference pairs here (*.jsonl or *.parquet)."),
    ] = None,
    pair_policy: Annotated[
        str, typer.Option(help="best-worst, all or margin=X (score gap at least X).")
    ] = "best-worst",
    resume: Annotated[
        bool,
        typer.Option("--resume/--no-resume", help="Skip the records already in --out (by id)."),
    ] = True,
    batch_tokens: Annotated[
        int | None,
        typer.Option(help="Padded tokens per forward pass (default: tuned for the device)."),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1, mps (default: best).")
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            help="float32, float16 or bfloat16 (default: by the hardware, bf16 where native)."
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the bubble permutation.")] = None,
    limit: Annotated[int | None, typer.Option(help="Rank only the first N records.")] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bar.")
    ] = True,
) -> None:
    """Rank each record's candidates; write one row per record (and preference pairs)."""
    from blender_core.aggregation import STRATEGIES
    from blender_core.data import MixInstructError
    from blender_core.distributed import resolve_input_files
    from blender_core.io import OutputPathError
    from blender_core.preferences import parse_pair_policy
    from blender_core.rank_output import RankOutput

    if strategy not in STRATEGIES:
        raise typer.BadParameter(f"use one of {', '.join(STRATEGIES)}", param_hint="--strategy")
    if pairs not in ("all", "one-way"):
        raise typer.BadParameter("use all or one-way", param_hint="--pairs")
    if top_k is not None:
        if top_k < 1:
            raise typer.BadParameter("must be >= 1", param_hint="--top-k")
        if strategy != "max_logits":
            raise typer.BadParameter("works with --strategy max_logits", param_hint="--top-k")
        if pairs != "all":
            raise typer.BadParameter(
                "plays each match both ways: leave --pairs all", param_hint="--top-k"
            )
    if engine not in ("local", "ray"):
        raise typer.BadParameter("use local or ray", param_hint="--engine")
    for name, value in (("--limit", limit), ("--concurrency", concurrency)):
        if value is not None and value < 1:
            raise typer.BadParameter("must be >= 1", param_hint=name)
    if batch_size < 1:
        raise typer.BadParameter("must be >= 1", param_hint="--batch-size")
    if num_gpus < 0:
        raise typer.BadParameter("must be >= 0", param_hint="--num-gpus")
    try:
        policy = parse_pair_policy(pair_policy)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--pair-policy") from exc
    from blender_core.distributed import CORE_RANKERS, check_ranker_options
    from blender_core.hub import require_cached

    try:
        check_ranker_options(model, strategy=strategy, pairs=pairs, top_k=top_k)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from exc
    core = model.strip().lower() in CORE_RANKERS
    if not core:
        require_cached([(model, "PairRanker checkpoint")])  # offline: fail now, not in an actor
        _warn_if_random(model)
    try:
        files, fmt = resolve_input_files(data)
        label = model.strip().lower() if core else _run_label(strategy, pairs, top_k)
        sink = RankOutput(out, pairs_out=pairs_out, strategy=label, resume=resume)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from exc

    job = _RankJob(
        sink,
        files,
        fmt,
        model,
        strategy,
        policy,
        seed,
        limit,
        progress,
        {
            "device": device,
            "dtype": dtype,
            "batch_tokens": batch_tokens,
            "pairs": pairs,
            "top_k": top_k,
        },
    )
    try:
        with sink:
            if engine == "local":
                _run_local(job)
            else:
                ray_options = {"concurrency": concurrency, "num_gpus": num_gpus}
                _run_ray(job, address, {**ray_options, "batch_size": batch_size})
        records, pair_count = sink.finish()
    except typer.Exit:
        raise
    except Exception as exc:
        cause = _root_cause(exc)
        if isinstance(cause, OSError | OutputPathError | MixInstructError | ValueError):
            # Ray appends retry advice to a task's error: keep the error's own first line.
            message = str(cause) if cause is exc else str(cause).splitlines()[0]
            raise _fail(message) from exc
        raise
    if out is not None or pairs_out is not None:
        skipped = f", {sink.resumed} already done" if sink.resumed else ""
        where = f" -> {out}" if out is not None else ""
        pair_note = f", {pair_count} pairs -> {pairs_out}" if pairs_out is not None else ""
        typer.echo(
            f"ranked {sink.added} records{skipped} ({records} in all){where}{pair_note}", err=True
        )


def _warn_if_random(model: str) -> None:
    from blender_core.testing.pairranker import is_random_checkpoint

    if is_random_checkpoint(model):
        typer.echo(
            f"warning: {model} has random weights (blender_core.testing): its rankings are "
            "arbitrary; use llm-blender/PairRM, a trained checkpoint or --model consensus",
            err=True,
        )


def _run_label(strategy: str, pairs: str, top_k: int | None) -> str:
    """The ``strategy`` field of the output rows: the strategy, and how pairs were chosen.

    A resumed run must rank the way the finished rows were ranked (the output checks it), so a
    one-way or top-K run is labelled apart: ``max_logits/one-way``, ``top_k``.
    """
    if top_k is not None:
        return "top_k"
    if pairs == "one-way" and strategy != "bubble":
        return f"{strategy}/one-way"
    return strategy


def _local_records(files: list[str], fmt: str) -> Iterator[MixRecord]:
    from blender_core.data import iter_mixinstruct, parse_record

    for name in files:
        if fmt == "jsonl":
            yield from iter_mixinstruct(name)
            continue
        import pyarrow.parquet as pq

        from blender_core.distributed import parquet_row

        number = 0
        for batch in pq.ParquetFile(name).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield parse_record(parquet_row(row), f"{name}: row {number}")


@dataclass(frozen=True)
class _RankJob:
    """One ``blender rank`` run, whatever the engine: where the rankings go, what is read, how
    each record is ranked (``options``: device, dtype, batch_tokens, pairs, top_k)."""

    sink: RankOutput
    files: list[str]
    fmt: str
    model: str
    strategy: str
    policy: PairPolicy
    seed: int | None
    limit: int | None
    progress: bool
    options: dict[str, Any]


def _run_local(job: _RankJob) -> None:
    from blender_core.distributed import load_data_ranker, rank_records
    from blender_core.preferences import preference_pairs, prompt_text
    from blender_core.rank_output import ranking_row

    # Every record is read and checked before any work, so bad input fails fast.
    records: list[MixRecord] = []
    for record in _local_records(job.files, job.fmt):
        if job.limit is not None and len(records) >= job.limit:
            break
        records.append(record)
    empty = [r.id for r in records if not r.candidates]
    if empty:
        raise ValueError(f"records without candidates: {', '.join(empty[:5])}")
    todo = [r for r in records if r.id not in job.sink.done_ids]
    if not todo:
        return
    from blender_core.threads import apply_thread_budget

    apply_thread_budget()  # LLM_BLENDER_KIT_TORCH_THREADS overrides it
    ranker = load_data_ranker(
        job.model,
        device=job.options["device"],
        dtype=job.options["dtype"],
        batch_tokens=job.options["batch_tokens"] or None,  # None: tuned for the device
    )
    top_k = job.options["top_k"]
    label = job.sink.strategy
    bar = _progress_bar(job.progress, total=len(todo))
    try:
        for start in range(0, len(todo), _LOCAL_CHUNK):
            chunk = todo[start : start + _LOCAL_CHUNK]
            rankings = rank_records(
                ranker,
                [r.instruction for r in chunk],
                [r.texts for r in chunk],
                [r.input for r in chunk],
                strategy=job.strategy,
                seed=job.seed,
                pairs=job.options["pairs"],
                top_k=top_k,
            )
            for record, ranking in zip(chunk, rankings, strict=True):
                pairs = None
                if job.sink.pairs_out is not None:
                    pairs = preference_pairs(
                        prompt_text(record.instruction, record.input),
                        record.texts,
                        ranking,
                        policy=job.policy,
                        models=record.models,
                        record_id=record.id,
                    )
                job.sink.add(ranking_row(record.id, ranking, record.models, label), pairs)
            job.sink.commit()
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(enabled: bool, total: int | None = None) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="rank", unit="record")


def _quiet_ray_data_console() -> None:
    """Ray Data's console lines (execution plans, "progress bars disabled") off; errors pass.

    Our own bar counts the records. Ray Data's log file (in the Ray session folder) keeps
    everything: only the console handler that Ray Data installs on import is raised to ERROR.
    """
    import logging

    import ray.data  # noqa: F401 - Ray Data installs its handlers when it is imported

    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setLevel(logging.ERROR)


def _run_ray(job: _RankJob, address: str | None, options: dict[str, Any]) -> None:
    from blender_core._optional import require
    from blender_core.distributed import RANKING_COLUMNS, pairs_of_row, rank_dataset, read_records

    ray = require("ray", "ray")
    started = False
    if not ray.is_initialized():
        if address is None:
            import logging

            # A private local instance, never someone else's cluster found on this machine.
            ray.init(
                address="local",
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                logging_level=logging.ERROR,
            )
        else:
            ray.init(address=address)
        started = True
    try:
        _quiet_ray_data_console()
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # rows come out in input order
        context.enable_progress_bars = False  # our own bar counts finished records
        context.raise_original_map_exception = True  # a bad record's own error, not a wrapper
        ds = read_records(job.files, limit=job.limit)
        done = frozenset(job.sink.done_ids)
        if done:
            ds = ds.filter(lambda row: row["id"] not in done)
        ranked = rank_dataset(
            ds,
            job.model,
            strategy=job.strategy,
            seed=job.seed,
            batch_size=options["batch_size"],
            concurrency=options["concurrency"],
            num_gpus=options["num_gpus"],
            pairs=job.options["pairs"],
            top_k=job.options["top_k"],
            device=job.options["device"],
            dtype=job.options["dtype"],
            batch_tokens=job.options["batch_tokens"],
        )
        label = job.sink.strategy
        if job.sink.pairs_out is None:
            ranked = ranked.select_columns(["id", *RANKING_COLUMNS])
        bar = _progress_bar(job.progress)
        try:
            batch: Any
            for batch in ranked.iter_batches(batch_size=None, batch_format="pyarrow"):
                for row in batch.to_pylist():
                    ranking = {name: row[name] for name in ("id", *RANKING_COLUMNS)}
                    ranking["strategy"] = label
                    pairs = (
                        pairs_of_row(row, job.policy) if job.sink.pairs_out is not None else None
                    )
                    job.sink.add(ranking, pairs)
                job.sink.commit()
                if bar is not None:
                    bar.update(batch.num_rows)
        finally:
            if bar is not None:
                bar.close()
    finally:
        if started:
            with contextlib.suppress(Exception):
                ray.shutdown()
