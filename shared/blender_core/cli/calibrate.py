"""``blender calibrate DATA --ranker SPEC --out priors.json``: fit member priors on labelled data.

Example::

    blender calibrate ../shared/data/alpaca-v2/train.jsonl --ranker runs/pairrm-v2 \\
        --out runs/pairrm-v2/priors.json
    blender calibrate train.jsonl --ranker none --out priors-only.json   # priors alone

The file (see :class:`~blender_core.priors.MemberPriors`) records the data it was fitted on (file
name, its sha256, records, pairs), the ranker spec and strategy, and the fit's log-loss and
pairwise accuracy. Use it with ``Blender(..., priors="priors.json")``, ``PriorRanker`` or
``blender eval --rankers ...,priors:priors.json,ranker+priors:priors.json``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from blender_core.cli import app
from blender_core.cli._errors import cli_errors

__all__ = ["LabelledData", "calibrate_command", "file_sha256"]

#: DATA of the commands that fit on labelled records (``calibrate``, ``train-router``).
LabelledData = Annotated[
    Path,
    typer.Argument(
        help="Labelled MixInstruct JSONL (candidates' 'model' and judge 'scores').", exists=True
    ),
]


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@app.command("calibrate")
@cli_errors
def calibrate_command(
    data: LabelledData,
    ranker: str = typer.Option(
        ...,
        "--ranker",
        help="The ranker the priors are added to: a PairRanker checkpoint, 'consensus', "
        "'random', or 'none' for member priors alone.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The priors JSON file to write."),  # noqa: B008
    metric: str | None = typer.Option(
        None, "--metric", help="Judge score that labels the pairs (default: the common one)."
    ),
    min_gap: float = typer.Option(
        0.0, "--min-gap", help="Pairs whose score gap is not larger are ties (skipped).", min=0.0
    ),
    l2: float = typer.Option(1.0, "--l2", help="L2 penalty on the priors.", min=1e-9),
    strategy: str | None = typer.Option(
        None,
        "--strategy",
        help="PairRanker strategy (max_logits, max_wins, bubble; default its own).",
    ),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N records."),
    priors_from: Path | None = typer.Option(  # noqa: B008
        None,
        "--priors-from",
        help="Keep the priors of this file (e.g. --ranker none on all labelled data) and fit "
        "only the ranker's scale on DATA (e.g. records the ranker never trained on).",
        exists=True,
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, mps (default: auto)."),
) -> None:
    """Fit per-member priors and the ranker's scale (a logistic model on pairwise outcomes)."""
    from blender_core.data import read_mixinstruct
    from blender_core.io import check_output_file
    from blender_core.loading import load_ranker
    from blender_core.priors import MemberPriors, fit_priors

    started = time.perf_counter()
    check_output_file(out)
    records = read_mixinstruct(data, limit=limit)
    if not records:
        raise typer.BadParameter(f"{data} has no records", param_hint="DATA")
    spec = ranker.strip()
    loaded = None if spec.lower() == "none" else load_ranker(spec, device=device)
    typer.echo(
        f"calibrating on {len(records)} records of {data.name} "
        f"({'priors only' if loaded is None else f'ranker {spec}'})",
        err=True,
    )
    priors = fit_priors(
        records,
        loaded,
        metric=metric,
        min_gap=min_gap,
        l2=l2,
        strategy=strategy,
        data_name=data.name,
        ranker_name=None if loaded is None else spec,
        show_progress=True,
        fixed_priors=MemberPriors.load(priors_from) if priors_from is not None else None,
    )
    fitted = dict(priors.fitted_on)
    fitted["data"] = {**fitted["data"], "sha256": file_sha256(data), "limit": limit}
    fitted["seconds"] = round(time.perf_counter() - started, 1)
    priors = replace(priors, fitted_on=fitted)
    priors.save(out)
    fit = fitted["fit"]
    scale = "none (priors only)" if priors.scale is None else f"{priors.scale:.4g}"
    typer.echo(
        f"{fitted['pairs']} pairs, scale {scale}, log-loss {fit['log_loss']:.4f}, "
        f"pairwise accuracy {fit['pairwise_accuracy']:.1%}"
    )
    for name, value in sorted(priors.priors.items(), key=lambda kv: -kv[1]):
        typer.echo(f"  {value:+.3f}  {name}")
    typer.echo(f"wrote {out} in {fitted['seconds']:.0f} s", err=True)
