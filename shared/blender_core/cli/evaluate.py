"""``blender eval DATA.jsonl``: the paper's results table, CSV and plots on MixInstruct data.

Example::

    blender eval ../shared/data/alpaca-v1/dev.jsonl --train ../shared/data/alpaca-v1/train.jsonl \\
        --rankers oracle,random,longest,single,consensus,mlm,simcls --metrics judge,bertscore \\
        --out results/alpaca-v1-dev

writes ``table.md``, ``table.csv``, ``results.json``, ``scored.jsonl`` (the records with the
computed metric scores added to each candidate), ``rank_distribution.png``, ``model_share.png``,
``metrics.png`` and a score cache under ``cache/`` (reused by later runs with the same ``--out``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from blender_core.cli import app
from blender_core.cli._errors import cli_errors

__all__ = ["evaluate_command", "load_judge"]


def load_judge(spec: str, *, device: Any = None, seed: int = 0) -> Any:
    """A judge Generator from a spec: ``smollm2``, ``openai:MODEL`` or a local/hub model path."""
    if spec == "smollm2":
        from blender_core.generators.huggingface import HuggingFaceGenerator

        return HuggingFaceGenerator.smollm2(
            name="smollm2-judge", max_new_tokens=16, do_sample=False, seed=seed, device=device
        )
    if spec.startswith("openai:"):
        from blender_core.generators.openai_compatible import OpenAICompatibleGenerator

        return OpenAICompatibleGenerator(spec.split(":", 1)[1], temperature=0.0, max_tokens=16)
    from blender_core.generators.huggingface import HuggingFaceGenerator

    return HuggingFaceGenerator(spec, max_new_tokens=16, do_sample=False, seed=seed, device=device)


@app.command("eval")
@cli_errors
def evaluate_command(
    data: Path = typer.Argument(  # noqa: B008 - typer's declaration style
        ..., help="MixInstruct JSONL file to evaluate.", exists=True
    ),
    rankers: str = typer.Option(
        "oracle,random,longest,single,consensus,mlm,simcls",
        "--rankers",
        "-r",
        help="Comma-separated methods (rows): oracle[:METRIC], random, random-draw[:SEED], "
        "longest, best-single, models, single, model:NAME, consensus[:PATH], mlm[:PATH], "
        "simcls[:PATH], pairrm:PATH, blender[:RANKER], priors[:FILE] (member priors alone; "
        "fitted on --train without a file), ranker+priors:FILE (a `blender calibrate` file).",
        show_default="oracle, random, longest, single, consensus, mlm, simcls",  # wraps at 80
    ),
    metrics: str = typer.Option(
        "judge,bertscore",
        "--metrics",
        "-m",
        help="Comma-separated metrics: judge (stored scores), bertscore[:MODEL], "
        "bartscore[:MODEL], bleurt:CHECKPOINT.",
    ),
    out: Path = typer.Option(  # noqa: B008
        Path("eval-results"), "--out", "-o", help="Output directory."
    ),
    train: Path | None = typer.Option(  # noqa: B008
        None, "--train", help="Records to choose the best single model and 'beats' models on."
    ),
    limit: int | None = typer.Option(None, "--limit", help="Evaluate only the first N records."),
    seed: int = typer.Option(0, "--seed", help="Seed of random draws and GPT-Rank positions."),
    judge_metric: str | None = typer.Option(
        None, "--judge-metric", help="Stored score to use (default: the one every candidate has)."
    ),
    beats: list[str] = typer.Option(  # noqa: B008
        [], "--beats", help="Model of a 'Beats X %' column (repeatable; default: the best two)."
    ),
    fuser: str | None = typer.Option(
        None, "--fuser", help="Fuser of the 'blender' row: a GenFuser path/id or 'select'."
    ),
    top_k: int = typer.Option(3, "--top-k", help="Candidates fused by the 'blender' row."),
    judge: str | None = typer.Option(
        None,
        "--judge",
        help="LLM judge for GPT-Rank: smollm2, openai:MODEL, or a model path/hub id.",
    ),
    max_length: int | None = typer.Option(
        None, "--max-length", help="Tokens kept per text by BERTScore/BARTScore (default: 512)."
    ),
    encoder_max_length: int | None = typer.Option(
        None,
        "--encoder-max-length",
        help="Tokens kept per text by the consensus/SimCLS encoders (default: their own, 256).",
    ),
    mlm_passes: int = typer.Option(
        4, "--mlm-passes", help="Strided masked copies per candidate for MLM-scoring (0: exact)."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, mps (default: auto)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the PNG plots."),
    bootstrap: int = typer.Option(
        10_000,
        "--bootstrap",
        help="Paired bootstrap resamples of each row's judge score minus the best single "
        "model's (the table's CI and 'beats it?' columns; seeded by --seed).",
        min=1,
    ),
) -> None:
    """Evaluate rankers and fusers on MixInstruct data: table (Markdown, CSV) and plots."""
    from blender_core.data import read_mixinstruct, write_mixinstruct
    from blender_core.evaluation.gpt_rank import GPTRank
    from blender_core.evaluation.plots import plot_all
    from blender_core.evaluation.runner import detect_judge_metric, evaluate
    from blender_core.evaluation.specs import build_methods, build_metrics
    from blender_core.io import (
        atomic_write_text,
        check_output_dir,
        check_output_dir_creatable,
        dumps_json,
    )

    started = time.perf_counter()
    check_output_dir_creatable(out)  # a bad --out fails now, before reading or any work
    records = read_mixinstruct(data, limit=limit)
    if not records:
        raise typer.BadParameter(f"{data} has no records", param_hint="DATA")
    train_records = read_mixinstruct(train) if train is not None else None
    check_output_dir(out)  # created only once the input is known to be good
    metric_name = judge_metric or detect_judge_metric(records)
    try:
        methods = build_methods(
            rankers,
            records,
            judge_metric=metric_name,
            train_records=train_records,
            fuser=fuser,
            top_k=top_k,
            device=device,
            max_length=encoder_max_length,
            mlm_passes=mlm_passes or None,
        )
        metric_objs = build_metrics(
            metrics, cache_dir=out / "cache", device=device, max_length=max_length
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    gpt_rank = GPTRank(load_judge(judge, device=device, seed=seed), seed=seed) if judge else None
    typer.echo(
        f"evaluating {len(methods)} methods on {len(records)} records of {data.name} "
        f"(metrics: {', '.join(m.name for m in metric_objs) or 'stored only'}"
        f"{', GPT-Rank' if gpt_rank else ''})",
        err=True,
    )
    results = evaluate(
        records,
        methods,
        metrics=metric_objs,
        judge_metric=metric_name,
        beats_models=beats or None,
        beats_reference=train_records,
        gpt_rank=gpt_rank,
        bootstrap_resamples=bootstrap,
        seed=seed,
        show_progress=True,
    )
    table = results.table()
    markdown = table.to_markdown()
    atomic_write_text(out / "table.md", markdown)
    table.to_csv(out / "table.csv")
    write_mixinstruct(out / "scored.jsonl", results.records)
    written = plot_all(results, out) if plots else []
    elapsed = time.perf_counter() - started
    payload = {
        "data": data.name,
        "records": len(records),
        "judge_metric": results.judge_metric,
        "beats_models": results.beats_models,
        "table": table.to_dict(),
        "methods": [
            {
                "name": m.name,
                "kind": m.kind,
                "picks": [{str(k): v for k, v in p.items()} for p in m.picks] if m.picks else None,
                "texts": m.texts,
                "rank_distribution": m.rank_distribution,
                "model_share": m.model_share,
            }
            for m in results.methods
        ],
        "notes": results.notes,
        "seconds": round(elapsed, 1),
    }
    atomic_write_text(out / "results.json", dumps_json(payload, indent=1, default=str))
    typer.echo(markdown)
    for note in results.notes:
        typer.echo(f"note: {note}", err=True)
    files = ["table.md", "table.csv", "results.json", "scored.jsonl", *(p.name for p in written)]
    typer.echo(f"wrote {', '.join(files)} to {out} in {elapsed:.0f} s", err=True)
