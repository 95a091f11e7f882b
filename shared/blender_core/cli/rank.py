"""``blender rank``: rank the candidates of a MixInstruct JSONL file with a PairRanker.

Example:
    .. code-block:: console

        $ blender rank data.jsonl --model llm-blender/PairRM --out ranked.jsonl

Each output line: ``{"id", "order", "ranks", "scores", "best", "best_model", "strategy"}`` where
``order`` lists candidate indices best first and ``ranks`` gives each candidate's rank (1 = best).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from blender_core.cli import app
from blender_core.cli._errors import cli_errors

__all__ = ["rank_command"]


@app.command("rank")
@cli_errors
def rank_command(
    data: Annotated[
        Path, typer.Argument(help="MixInstruct JSONL file (id, instruction, input, candidates).")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output JSONL file (default: stdout).")
    ] = None,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Hub id or local PairRanker checkpoint.")
    ] = "llm-blender/PairRM",
    strategy: Annotated[str, typer.Option(help="max_logits, max_wins or bubble.")] = "max_logits",
    batch_tokens: Annotated[
        int | None, typer.Option(help="Padded tokens per forward pass (default 8192).")
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
    """Rank each record's candidates; write one JSON line per record."""
    from blender_core.aggregation import STRATEGIES
    from blender_core.batching import DEFAULT_BATCH_TOKENS
    from blender_core.data import MixInstructError, read_mixinstruct
    from blender_core.io import check_output_file
    from blender_core.pair_ranker import PairRanker

    if strategy not in STRATEGIES:
        raise typer.BadParameter(f"use one of {', '.join(STRATEGIES)}", param_hint="--strategy")
    if limit is not None and limit < 1:
        raise typer.BadParameter("must be >= 1", param_hint="--limit")
    try:
        records = read_mixinstruct(data, limit=limit)
    except (OSError, MixInstructError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if out is not None:
        check_output_file(out)  # before the work, not after it
    empty = [r.id for r in records if not r.candidates]
    if empty:
        typer.echo(f"error: records without candidates: {', '.join(empty[:5])}", err=True)
        raise typer.Exit(2)

    from blender_core.threads import apply_thread_budget

    apply_thread_budget()  # LLM_BLENDER_KIT_TORCH_THREADS overrides it
    ranker = PairRanker.from_pretrained(
        model, device=device, dtype=dtype, batch_tokens=batch_tokens or DEFAULT_BATCH_TOKENS
    )
    rankings = ranker.rank_batch(
        [r.instruction for r in records],
        [r.texts for r in records],
        inputs=[r.input for r in records],
        strategy=strategy,  # type: ignore[arg-type]
        seed=seed,
        show_progress=progress,
    )
    stream = out.open("w", encoding="utf-8") if out is not None else sys.stdout
    try:
        for record, ranking in zip(records, rankings, strict=True):
            line = {
                "id": record.id,
                "order": list(ranking.order),
                "ranks": list(ranking.ranks),
                "scores": list(ranking.scores),
                "best": ranking.best,
                "best_model": record.models[ranking.best],
                "strategy": strategy,
            }
            stream.write(json.dumps(line, ensure_ascii=False) + "\n")
    finally:
        if out is not None:
            stream.close()
    if out is not None:
        typer.echo(f"ranked {len(records)} records -> {out}", err=True)
