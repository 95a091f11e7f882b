"""Rank whole data sets on Ray Data: a pool of actors, each holding one ranker.

Needs the ``ray`` extra (``pip install 'llm-blender-kit[ray]'``); Ray is imported on first use.
:func:`rank_dataset` maps batches of records through a pool of stateful actors
(:class:`ray.data.ActorPoolStrategy`); each actor loads the checkpoint once and ranks every batch
it is given. Ray Data restarts an actor that dies and reruns the batch it held, so every record
comes out exactly once. :func:`read_records` reads MixInstruct JSONL or Parquet (a file, a folder
or a glob) with Ray Data's readers and checks every record, naming the file and line of a bad one.

Example:
    .. code-block:: python

        import ray
        from blender_core.distributed import preference_dataset, rank_dataset, read_records

        ray.init()
        ranked = rank_dataset(read_records("data/*.jsonl"), "llm-blender/PairRM", concurrency=4,
                              num_gpus=1)
        ranked.write_parquet("ranked/")  # lazy: every consumer reruns the ranking, so write once
        preference_dataset(ray.data.read_parquet("ranked/"), policy="best-worst").write_json(
            "prefs/"
        )
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blender_core._optional import require
from blender_core.aggregation import STRATEGIES
from blender_core.data import MixInstructError, parse_record
from blender_core.preferences import PairPolicy, parse_pair_policy, preference_pairs, prompt_text
from blender_core.ranking import Ranker, Ranking

if TYPE_CHECKING:
    import pyarrow
    import ray.data

__all__ = [
    "CORE_RANKERS",
    "RANKING_COLUMNS",
    "check_cluster_resources",
    "check_ranker_options",
    "load_data_ranker",
    "pairs_of_row",
    "parquet_row",
    "preference_dataset",
    "rank_dataset",
    "rank_records",
    "ranking_of",
    "read_records",
    "resolve_input_files",
]

#: Ranker names that need no checkpoint (:func:`blender_core.loading.load_ranker`): they rank
#: offline, without strategies, one-way pairs or top-K selection (PairRanker options).
CORE_RANKERS = ("consensus", "random")

#: Columns :func:`rank_dataset` adds to each record.
RANKING_COLUMNS = ("order", "ranks", "scores", "best", "best_model")

_JSONL_SUFFIXES = (".jsonl", ".json")
_PARQUET_SUFFIXES = (".parquet",)
_ROWS_PER_BLOCK = 256
_READ_CHUNK = 1 << 20
# Reading and checking records is light next to ranking them: the read tasks reserve no CPU,
# so that a pool with one actor per core does not starve them (and hang).
_READ_CPUS = 0


def _ray() -> Any:
    return require("ray", "ray")


# ---- reading ------------------------------------------------------------------------------


def resolve_input_files(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> tuple[list[str], str]:
    """Expand files, folders and globs into a sorted file list and its format.

    Folders contribute their ``*.jsonl``/``*.json``/``*.parquet`` files (recursively); URIs
    (``s3://...``) are passed through as they are.

    Returns:
        ``(files, fmt)`` with ``fmt`` ``"jsonl"`` or ``"parquet"``.

    Raises:
        FileNotFoundError: A path or glob matches nothing.
        ValueError: The files mix formats, or a suffix is neither JSONL nor Parquet.
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    files: list[str] = []
    for item in items:
        text = os.fspath(item)
        if "://" in text:
            files.append(text)
        elif glob.has_magic(text):
            matched = sorted(glob.glob(text, recursive=True))
            if not matched:
                raise FileNotFoundError(f"{text}: no file matches")
            files.extend(m for m in matched if Path(m).is_file())
        elif Path(text).is_dir():
            found = sorted(
                str(p)
                for p in Path(text).rglob("*")
                if p.is_file()
                and p.suffix.lower() in _JSONL_SUFFIXES + _PARQUET_SUFFIXES
                and not p.name.startswith(".")
            )
            if not found:
                raise FileNotFoundError(f"{text}: no *.jsonl or *.parquet file in this folder")
            files.extend(found)
        elif Path(text).is_file():
            files.append(text)
        else:
            raise FileNotFoundError(f"{text}: no such file or folder")
    formats = set()
    for name in files:
        suffix = Path(name.split("?")[0]).suffix.lower()
        if suffix in _JSONL_SUFFIXES:
            formats.add("jsonl")
        elif suffix in _PARQUET_SUFFIXES:
            formats.add("parquet")
        else:
            raise ValueError(f"{name}: unknown input format: use *.jsonl or *.parquet files")
    if len(formats) > 1:
        raise ValueError("the inputs mix JSONL and Parquet files: rank them separately")
    return files, formats.pop()


def _normalize(obj: Any, where: str) -> dict[str, Any]:
    """One checked record as the reader's row: id, instruction, input, candidates (model, text)."""
    record = parse_record(obj, where)
    if not record.candidates:
        raise MixInstructError(f"{where}: no candidates to rank")
    return {
        "id": record.id,
        "instruction": record.instruction,
        "input": record.input,
        "candidates": [{"model": c.model, "text": c.text} for c in record.candidates],
    }


def _table(rows: list[dict[str, Any]]) -> pyarrow.Table:
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=_record_schema())


def _record_schema() -> pyarrow.Schema:
    import pyarrow as pa

    candidate = pa.struct([("model", pa.string()), ("text", pa.string())])
    return pa.schema(
        [
            ("id", pa.string()),
            ("instruction", pa.string()),
            ("input", pa.string()),
            ("candidates", pa.list_(candidate)),
        ]
    )


def _jsonl_datasource(files: list[str]) -> Any:
    from ray.data.datasource import FileBasedDatasource

    class MixInstructJsonlDatasource(FileBasedDatasource):
        """MixInstruct JSONL, streamed line by line; errors name the file and line."""

        _FILE_EXTENSIONS = ["jsonl", "json"]  # noqa: RUF012

        def _read_stream(self, f: pyarrow.NativeFile, path: str) -> Iterator[pyarrow.Table]:
            rows: list[dict[str, Any]] = []
            number = 0
            rest = b""
            while True:
                chunk = f.read(_READ_CHUNK)
                data = rest + chunk
                lines = data.split(b"\n")
                rest = lines.pop() if chunk else b""
                for raw in lines:
                    number += 1
                    if not raw.strip():
                        continue
                    where = f"{path}:{number}"
                    try:
                        obj = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
                        raise MixInstructError(f"{where}: invalid JSON ({reason})") from exc
                    rows.append(_normalize(obj, where))
                    if len(rows) >= _ROWS_PER_BLOCK:
                        yield _table(rows)
                        rows = []
                if not chunk:
                    break
            if rows:
                yield _table(rows)

    return MixInstructJsonlDatasource(files)


def parquet_row(row: dict[str, Any]) -> dict[str, Any]:
    """A Parquet row as a MixInstruct record object: a null is a missing field."""
    obj = {k: v for k, v in row.items() if v is not None}
    if isinstance(obj.get("candidates"), list):
        obj["candidates"] = [
            {k: v for k, v in c.items() if v is not None} if isinstance(c, dict) else c
            for c in obj["candidates"]
        ]
    return obj


def _parquet_datasource(files: list[str]) -> Any:
    from ray.data.datasource import FileBasedDatasource

    class MixInstructParquetDatasource(FileBasedDatasource):
        """MixInstruct Parquet, streamed by record batches; errors name the file and row."""

        _FILE_EXTENSIONS = ["parquet"]  # noqa: RUF012

        def _open_input_source(
            self, filesystem: Any, path: str, **open_args: Any
        ) -> pyarrow.NativeFile:
            return filesystem.open_input_file(path)  # Parquet needs random access

        def _read_stream(self, f: pyarrow.NativeFile, path: str) -> Iterator[pyarrow.Table]:
            import pyarrow.parquet as pq

            number = 0
            for batch in pq.ParquetFile(f).iter_batches(batch_size=_ROWS_PER_BLOCK):
                rows = []
                for row in batch.to_pylist():
                    number += 1
                    rows.append(_normalize(parquet_row(row), f"{path}: row {number}"))
                if rows:
                    yield _table(rows)

    return MixInstructParquetDatasource(files)


def read_records(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    limit: int | None = None,
) -> ray.data.Dataset:
    """Read MixInstruct records (JSONL or Parquet; files, folders or globs) as a Ray Dataset.

    Rows have ``id``, ``instruction``, ``input`` and ``candidates`` (a list of ``{model, text}``).
    Every record is checked as :func:`blender_core.data.parse_record` does; a bad one fails the
    run with a :class:`~blender_core.data.MixInstructError` naming its file and line (JSONL) or
    file and row (Parquet, counted from 1).

    Args:
        paths: A path, folder, glob or URI, or a list of them.
        limit: Keep only the first ``limit`` records.
    """
    ray = _ray()
    files, fmt = resolve_input_files(paths)
    source = _jsonl_datasource(files) if fmt == "jsonl" else _parquet_datasource(files)
    ds = ray.data.read_datasource(source, num_cpus=_READ_CPUS)
    return ds.limit(limit) if limit is not None else ds


# ---- ranking ------------------------------------------------------------------------------


def _texts_of(row: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Candidate texts and model names of a row (candidates as dicts with ``text`` or strings)."""
    raw: Any = row.get("candidates")
    if hasattr(raw, "tolist"):  # numpy arrays from Ray's row views
        raw = raw.tolist()
    where = f"record {row.get('id', '?')!r}"
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{where}: 'candidates' must be a non-empty list")
    texts, models = [], []
    for k, cand in enumerate(raw):
        if isinstance(cand, str):
            texts.append(cand)
            models.append(f"candidate_{k}")
        elif isinstance(cand, dict) and isinstance(cand.get("text"), str):
            texts.append(cand["text"])
            models.append(str(cand.get("model") or f"candidate_{k}"))
        else:
            raise ValueError(f"{where}: candidates[{k}] must be a string or have a 'text' string")
    return texts, models


def load_data_ranker(
    model: str | os.PathLike[str],
    *,
    device: str | None = None,
    dtype: str | None = None,
    batch_tokens: int | None = None,
) -> Ranker:
    """The ranker of ``blender rank`` and :func:`rank_dataset`, built by the one factory.

    ``model`` is whatever :func:`blender_core.loading.load_ranker` takes: ``"consensus"``,
    ``"random"``, or a PairRanker checkpoint (hub id or directory); ``batch_tokens`` applies to
    a PairRanker only.
    """
    from blender_core.loading import load_ranker
    from blender_core.pair_ranker import PairRanker

    ranker = load_ranker(os.fspath(model), device=device, dtype=dtype)
    if batch_tokens is not None and isinstance(ranker, PairRanker):
        ranker.batch_tokens = batch_tokens
    return ranker


def check_ranker_options(model: str, *, strategy: str, pairs: str, top_k: int | None) -> None:
    """Refuse PairRanker-only options (strategy, one-way pairs, top-K) with a core ranker.

    Raises:
        ValueError: Naming the option and the ranker.
    """
    if model.strip().lower() not in CORE_RANKERS:
        return
    used = [
        name
        for name, on in (
            (f"strategy {strategy!r}", strategy != "max_logits"),
            (f"pairs {pairs!r}", pairs != "all"),
            (f"top_k {top_k}", top_k is not None),
        )
        if on
    ]
    if used:
        raise ValueError(
            f"{', '.join(used)}: PairRanker options, which the {model.strip().lower()!r} ranker "
            "does not take"
        )


def rank_records(
    ranker: Ranker,
    instructions: Sequence[str],
    texts: Sequence[Sequence[str]],
    inputs: Sequence[str],
    *,
    strategy: str = "max_logits",
    seed: int | None = None,
    pairs: str = "all",
    top_k: int | None = None,
) -> list[Ranking]:
    """Rank a batch of records with any ranker.

    A :class:`~blender_core.pair_ranker.PairRanker` reads instruction and input apart and
    honours ``strategy``, ``seed``, ``pairs`` and ``top_k``; any other ranker gets the prompt
    text (instruction, then input) and ranks in its own way.
    """
    from blender_core.pair_ranker import PairRanker

    if isinstance(ranker, PairRanker):
        if top_k is not None:
            return ranker.select_top_k(
                list(instructions), [list(t) for t in texts], top_k, inputs=list(inputs), seed=seed
            )
        return ranker.rank_batch(
            list(instructions),
            [list(t) for t in texts],
            inputs=list(inputs),
            strategy=strategy,  # type: ignore[arg-type]
            seed=seed,
            pairs=pairs,  # type: ignore[arg-type]
        )
    prompts = [prompt_text(i, x) for i, x in zip(instructions, inputs, strict=True)]
    return list(ranker.rank_batch(prompts, [list(t) for t in texts]))


class _RankActor:
    """A Ray Data actor: loads one ranker and ranks the batches it is given."""

    def __init__(
        self,
        model: str,
        strategy: str,
        rank_kwargs: dict[str, Any],
        ranker_kwargs: dict[str, Any],
        num_threads: int | None,
    ) -> None:
        import torch

        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.ranker = load_data_ranker(model, **ranker_kwargs)
        device = getattr(self.ranker, "device", None)
        if num_threads is None and getattr(device, "type", "cpu") == "cpu":
            # Actors share the node's cores: one intra-op thread each avoids oversubscription.
            torch.set_num_threads(1)
        self.strategy = strategy
        self.rank_kwargs = rank_kwargs

    def __call__(self, batch: pyarrow.Table) -> pyarrow.Table:
        import pyarrow as pa

        rows = batch.to_pylist()
        for row in rows:
            if not isinstance(row.get("instruction"), str):
                raise ValueError(f"record {row.get('id', '?')!r}: 'instruction' must be a string")
        texts, models = zip(*(_texts_of(row) for row in rows), strict=True) if rows else ((), ())
        instructions = [row["instruction"] for row in rows]
        inputs = [row.get("input") or "" for row in rows]
        rankings = rank_records(
            self.ranker,
            instructions,
            list(texts),
            inputs,
            strategy=self.strategy,
            **self.rank_kwargs,
        )
        columns = {
            "order": pa.array([list(r.order) for r in rankings], pa.list_(pa.int64())),
            "ranks": pa.array([list(r.ranks) for r in rankings], pa.list_(pa.int64())),
            "scores": pa.array([list(r.scores) for r in rankings], pa.list_(pa.float64())),
            "best": pa.array([r.best for r in rankings], pa.int64()),
            "best_model": pa.array(
                [names[r.best] for names, r in zip(models, rankings, strict=True)], pa.string()
            ),
        }
        for name, column in columns.items():
            if name in batch.column_names:
                batch = batch.drop_columns([name])
            batch = batch.append_column(name, column)
        return batch


def rank_dataset(
    ds: ray.data.Dataset,
    model: str | os.PathLike[str],
    *,
    strategy: str = "max_logits",
    pairs: str = "all",
    top_k: int | None = None,
    seed: int | None = None,
    batch_size: int = 16,
    concurrency: int = 1,
    num_gpus: float = 0,
    num_cpus: float | None = None,
    num_threads: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    batch_tokens: int | None = None,
    max_restarts: int = -1,
    check_resources: bool = True,
) -> ray.data.Dataset:
    """Rank every record of ``ds`` with a pool of PairRanker actors.

    Each row needs ``instruction`` (a string), ``candidates`` (a list of strings, or of dicts
    with ``text`` and optionally ``model``), optionally ``input``, and an ``id`` that the output
    keeps. The result has every input column plus :data:`RANKING_COLUMNS` (``order``, best
    first; ``ranks``, 1 = best; ``scores``; ``best``; ``best_model``), one row per input row.
    Nothing runs until the dataset is consumed (``iter_batches``, ``write_parquet``...).

    An actor that dies (its process killed, its node lost) is restarted and the batches it held
    are run again, so every record still comes out exactly once.

    Args:
        ds: The records.
        model: Hub id or local PairRanker checkpoint path, readable from every node, or a
            core ranker (``"consensus"``, ``"random"``: no strategies, pairs or top_k).
        strategy: ``"max_logits"``, ``"max_wins"`` or ``"bubble"``.
        pairs: ``"all"`` (every ordered pair, N(N-1) forward passes per record) or
            ``"one-way"`` (each unordered pair once, N(N-1)/2), as in
            :meth:`PairRanker.rank_batch`.
        top_k: Select the best ``top_k`` by a knockout instead of a full order
            (:meth:`PairRanker.select_top_k`; ``max_logits`` only; ``scores`` are then
            positions, not logits).
        seed: Seed of the bubble permutation, the one-way directions and the knockout draw.
        batch_size: Records per actor call.
        concurrency: Number of actors (each loads the model once).
        num_gpus: GPUs per actor (``0``: CPU).
        num_cpus: CPUs reserved per actor (default 1).
        num_threads: Torch intra-op threads per actor (default: 1 on CPU, torch's default on a
            GPU).
        device: Passed to :meth:`PairRanker.from_pretrained` (default: CUDA when the actor has a
            GPU, else CPU).
        dtype: Passed to :meth:`PairRanker.from_pretrained`.
        batch_tokens: Padded tokens per forward pass.
        max_restarts: Restarts allowed per actor (``-1``: no limit); a restarted actor's
            unfinished batches are retried without limit. ``0`` fails the run on an actor's death.
            Values other than ``-1`` go through Ray's deprecated ``ray_remote_args``.
        check_resources: With Ray initialised, check now that the cluster can hold the pool
            (:func:`check_cluster_resources`) instead of waiting forever; turn it off for an
            autoscaling cluster that adds nodes on demand.

    Example:
        .. code-block:: python

            ranked = rank_dataset(ray.data.read_json("data.jsonl"), "llm-blender/PairRM",
                                  concurrency=2)
            for row in ranked.iter_rows():
                print(row["id"], row["best_model"])
    """
    ray = _ray()
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if num_gpus < 0:
        raise ValueError(f"num_gpus must be >= 0, got {num_gpus!r}")
    if pairs not in ("all", "one-way"):
        raise ValueError(f"pairs must be 'all' or 'one-way', got {pairs!r}")
    if not isinstance(max_restarts, int) or max_restarts < -1:
        raise ValueError(f"max_restarts must be an int >= -1, got {max_restarts!r}")
    check_ranker_options(os.fspath(model), strategy=strategy, pairs=pairs, top_k=top_k)
    rank_kwargs: dict[str, Any] = {"seed": seed}
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        if strategy != "max_logits":
            raise ValueError(f"top_k works with strategy='max_logits', not {strategy!r}")
        if pairs != "all":
            raise ValueError("top_k plays each match both ways: leave pairs='all'")
        rank_kwargs["top_k"] = top_k
    else:
        rank_kwargs["pairs"] = pairs
    ranker_kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
    if batch_tokens is not None:
        ranker_kwargs["batch_tokens"] = batch_tokens
    actor_cpus = 1 if num_cpus is None else num_cpus
    if check_resources and ray.is_initialized():
        check_cluster_resources(concurrency=concurrency, num_gpus=num_gpus, num_cpus=actor_cpus)
    # Actor restarts, and retries of the batches a dead actor held: Ray Data's defaults
    # (max_restarts=-1, max_task_retries=-1) give that guarantee. Only another value goes
    # through ``ray_remote_args``, which Ray deprecates (no named parameter replaces it yet).
    remote_args: dict[str, Any] = {}
    if max_restarts != -1:
        remote_args["max_restarts"] = max_restarts
        if max_restarts != 0:
            remote_args["max_task_retries"] = -1
    return ds.map_batches(
        _RankActor,
        fn_constructor_kwargs={
            "model": os.fspath(model),
            "strategy": strategy,
            "rank_kwargs": rank_kwargs,
            "ranker_kwargs": ranker_kwargs,
            "num_threads": num_threads,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_gpus=num_gpus or None,
        num_cpus=actor_cpus,
        **remote_args,
    )


def check_cluster_resources(*, concurrency: int, num_gpus: float, num_cpus: float) -> None:
    """Fail now when no node of the connected Ray cluster can hold even one actor of the pool.

    Ray Data starts as many of the ``concurrency`` actors as fit (4 actors on a 2-CPU machine
    run two at a time), but an actor that fits nowhere (``--num-gpus 1`` on a CPU-only
    machine) is waited for forever: Ray only warns after a minute that "the job may hang
    forever". This checks each actor's ``num_gpus`` and ``num_cpus`` against the largest alive
    node.

    Raises:
        ValueError: One line naming what is missing and what the cluster has.
    """
    ray = _ray()
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", False)]
    problems = []
    for key, each, flag in (("GPU", num_gpus, "--num-gpus"), ("CPU", num_cpus, "num_cpus")):
        largest = max((float(n.get(key, 0.0)) for n in nodes), default=0.0)
        if each and each > largest:
            total = sum(float(n.get(key, 0.0)) for n in nodes)
            problems.append(
                f"each of the {concurrency} ranking actor(s) needs {each:g} {key} ({flag} "
                f"{each:g}) but no node of the Ray cluster has that many ({len(nodes)} node(s), "
                f"{total:g} {key} in all)"
            )
    if problems:
        hint = "use --num-gpus 0 to rank on CPUs" if num_gpus else "ask for fewer per actor"
        raise ValueError("; ".join(problems) + f": {hint}")


# ---- preference pairs ---------------------------------------------------------------------


def ranking_of(row: dict[str, Any]) -> Ranking:
    """The :class:`~blender_core.ranking.Ranking` stored in a row of :func:`rank_dataset`."""
    return Ranking(
        order=tuple(int(i) for i in row["order"]),
        ranks=tuple(int(r) for r in row["ranks"]),
        scores=tuple(float(s) for s in row["scores"]),
    )


def pairs_of_row(row: dict[str, Any], policy: str | PairPolicy) -> list[dict[str, Any]]:
    """The preference pairs of one ranked row (see :mod:`blender_core.preferences`)."""
    texts, models = _texts_of(row)
    return preference_pairs(
        prompt_text(row["instruction"], row.get("input") or ""),
        texts,
        ranking_of(row),
        policy=policy,
        models=models,
        record_id=None if row.get("id") is None else str(row["id"]),
    )


def preference_dataset(
    ranked: ray.data.Dataset, *, policy: str | PairPolicy = "best-worst"
) -> ray.data.Dataset:
    """Preference pairs (``prompt``, ``chosen``, ``rejected``, scores...) of a ranked dataset.

    Args:
        ranked: The output of :func:`rank_dataset`.
        policy: ``"best-worst"``, ``"all"`` or ``"margin=X"``.
    """
    rule = parse_pair_policy(policy)
    return ranked.flat_map(lambda row: pairs_of_row(row, rule))
