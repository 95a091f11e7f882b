"""``blender train-router`` and ``blender eval-policies``: blend for a fraction of the calls.

Examples::

    blender train-router ../shared/data/alpaca-v2/train.jsonl --out runs/router-v2.json
    blender eval-policies ../shared/data/alpaca-v2/dev.jsonl \\
        --train ../shared/data/alpaca-v2/train.jsonl --ranker consensus --out results/policies-v2

``eval-policies`` ranks every record's full candidate list once (cached under ``OUT/cache``),
fits the member priors, the cascade's stop calibration and (without ``--router``) a router on
``--train``, then replays ``all``, the best single model, the cascade at each threshold and the
router at each ``m`` and probability mass on DATA. It writes ``table.md``, ``results.json`` and
``cost-quality.png`` (plus the fitted ``priors.json``, ``calibration.json`` and ``router.json``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from blender_core.cli import app
from blender_core.cli._errors import cli_errors
from blender_core.cli.calibrate import LabelledData

__all__ = ["eval_policies_command", "load_costs", "train_router_command"]


def load_costs(path: Path) -> dict[str, Any]:
    """A member price table: JSON mapping member -> MemberCost fields, or a price per call."""
    from blender_core.policies import MemberCost

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{path} is not JSON: {exc}", param_hint="--costs") from exc
    if not isinstance(data, dict):
        raise typer.BadParameter(
            "the price table must map member names to costs", param_hint="--costs"
        )
    try:
        return {str(k): MemberCost.from_value(v) for k, v in data.items()}
    except (TypeError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--costs") from exc


def _floats(text: str, name: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is not a comma-separated list of numbers", param_hint=name
        ) from exc
    if not values:
        raise typer.BadParameter("give at least one value", param_hint=name)
    return values


@app.command("train-router")
@cli_errors
def train_router_command(
    data: LabelledData,
    out: Path = typer.Option(..., "--out", "-o", help="The router JSON file to write."),  # noqa: B008
    kind: str = typer.Option(
        "auto",
        "--kind",
        help="softmax, mf (RouteLLM's matrix factorisation) or auto (measure "
        "both on a held-out part and keep the better).",
    ),
    metric: str | None = typer.Option(None, "--metric", help="Judge score (default: common)."),
    steps: int = typer.Option(400, "--steps", help="Full-batch Adam steps.", min=1),
    l2: float = typer.Option(1e-3, "--l2", help="L2 penalty on the weights.", min=0.0),
    rank: int = typer.Option(16, "--rank", help="Rank of the mf head.", min=1),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out split and mf init."),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N records."),
    device: str | None = typer.Option(None, "--device", help="Encoder device (default: cpu)."),
) -> None:
    """Train a router: each member's chance of the best answer, from the prompt's embedding."""
    from dataclasses import replace

    from blender_core.cli.calibrate import file_sha256
    from blender_core.data import read_mixinstruct
    from blender_core.io import check_output_file
    from blender_core.rankers.consensus import ConsensusRanker
    from blender_core.routing import embed_prompts, fit_router

    started = time.perf_counter()
    check_output_file(out)
    if kind not in ("auto", "softmax", "mf"):
        raise typer.BadParameter(f"{kind!r}: use softmax, mf or auto", param_hint="--kind")
    records = read_mixinstruct(data, limit=limit)
    if not records:
        raise typer.BadParameter(f"{data} has no records", param_hint="DATA")
    typer.echo(f"embedding {len(records)} prompts of {data.name}", err=True)
    embeddings = embed_prompts(records, encoder=ConsensusRanker(device=device or "cpu"))
    model = fit_router(
        embeddings,
        records,
        kind=kind,  # type: ignore[arg-type]
        metric=metric,
        steps=steps,
        l2=l2,
        rank=rank,
        seed=seed,
        data_name=data.name,
    )
    fitted = dict(model.fitted_on)
    fitted["data"] = {**fitted["data"], "sha256": file_sha256(data), "limit": limit}
    fitted["seconds"] = round(time.perf_counter() - started, 1)
    model = replace(model, fitted_on=fitted)
    model.save(out)
    held = ", ".join(f"{k} {100 * v:.1f}" for k, v in fitted["heldout_top1_judge"].items())
    single = fitted.get("heldout_best_single_judge")
    versus = "" if single is None else f"; best single member {100 * single:.1f}"
    typer.echo(
        f"kind {model.kind} (held-out top-1 judge %: {held}{versus}); {len(model.members)} members"
    )
    typer.echo(f"wrote {out} in {fitted['seconds']:.0f} s", err=True)


def _stage_configs(text: str) -> list[tuple[int, ...]]:
    configs = []
    for part in text.split(";"):
        try:
            sizes = tuple(int(v) for v in part.split(",") if v.strip())
        except ValueError as exc:
            raise typer.BadParameter(
                f"{part!r} is not a comma-separated list of integers", param_hint="--stage-sizes"
            ) from exc
        if not sizes or min(sizes) < 1:
            raise typer.BadParameter(
                f"{part!r}: stage sizes must be integers >= 1", param_hint="--stage-sizes"
            )
        configs.append(sizes)
    return configs


def _cached(
    records: list[Any],
    data: Path,
    ranker_spec: str,
    cache_dir: Path,
    *,
    device: str | None,
    embed: bool,
    state: dict[str, Any],
) -> Any:
    from blender_core.evaluation.policies import PairCache, cache_key, compute_pair_cache
    from blender_core.routing import embed_prompts

    path = cache_dir / cache_key(data, ranker_spec)
    cache = PairCache.load(path) if path.is_file() else None
    if cache is not None:
        try:
            cache.check(records)
        except ValueError:
            cache = None
    changed = False
    if cache is None:
        if "ranker" not in state:
            from blender_core.loading import load_ranker

            state["ranker"] = load_ranker(ranker_spec, device=device)
        typer.echo(f"ranking the {len(records)} records of {data.name} once", err=True)
        cache = compute_pair_cache(
            records, state["ranker"], ranker_name=ranker_spec, show_progress=True
        )
        changed = True
    if embed and cache.embeddings is None:
        encoder = state.get("ranker")
        if not callable(getattr(encoder, "embed", None)):
            from blender_core.rankers.consensus import ConsensusRanker

            encoder = state.setdefault("encoder", ConsensusRanker(device=device or "cpu"))
        cache.embeddings = embed_prompts(records, encoder=encoder)
        changed = True
    if changed:
        cache.save(path)
    return cache


def _input_file(flag: str, help: str) -> Any:
    """An optional ``flag FILE`` option whose file must exist."""
    return typer.Option(None, flag, help=help, exists=True)


@app.command("eval-policies")
@cli_errors
def eval_policies_command(
    data: Path = typer.Argument(..., help="MixInstruct JSONL to evaluate on.", exists=True),  # noqa: B008
    train: Path = typer.Option(  # noqa: B008
        ...,
        "--train",
        help="Labelled records for the priors, stop calibration, router and the best single model.",
        exists=True,
    ),
    ranker: str = typer.Option(
        "consensus", "--ranker", help="consensus, or a PairRanker checkpoint (all-pairs strategy)."
    ),
    out: Path = typer.Option(Path("policy-results"), "--out", "-o", help="Output directory."),  # noqa: B008
    priors_file: Path | None = _input_file(  # noqa: B008
        "--priors", "A `blender calibrate` file for this ranker (default: fit on --train)."
    ),
    no_priors: bool = typer.Option(False, "--no-priors", help="Rank without member priors."),
    router_file: Path | None = _input_file(  # noqa: B008
        "--router", "A `blender train-router` file (default: trained on --train)."
    ),
    no_router: bool = typer.Option(False, "--no-router", help="Skip the router curves."),
    costs_file: Path | None = _input_file(  # noqa: B008
        "--costs", "Member price table (JSON); default: each call costs 1."
    ),
    thresholds: str = typer.Option(
        "0.3,0.5,0.6,0.7,0.8,0.85,0.9,0.95,0.98", "--thresholds", help="Cascade thresholds."
    ),
    masses: str = typer.Option("0.5,0.7,0.8,0.9,0.95", "--masses", help="Router masses."),
    stage_sizes: str = typer.Option(
        "1;1,2",
        "--stage-sizes",
        help="Cascade stage sizes, e.g. '1,2' (one, then two at a time); several "
        "configurations separated by ';' give one curve each.",
    ),
    metric: str | None = typer.Option(None, "--metric", help="Judge score (default: common)."),
    best_single: str | None = typer.Option(
        None,
        "--best-single",
        help="The member to compare with (default: the best mean judge score on --train), e.g. "
        "the one chosen on all labelled data when --train holds only records the ranker never "
        "saw.",
    ),
    bootstrap: int = typer.Option(10_000, "--bootstrap", help="Bootstrap resamples.", min=1),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    limit: int | None = typer.Option(None, "--limit", help="Evaluate only the first N records."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, mps (default: auto)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write cost-quality.png."),
) -> None:
    """Replay all / best single / cascade / router on stored candidates: judge vs calls."""
    from blender_core.data import read_mixinstruct
    from blender_core.evaluation.policies import (
        evaluate_policies,
        fit_stop_calibration,
        plot_cost_quality,
    )
    from blender_core.evaluation.runner import detect_judge_metric
    from blender_core.io import atomic_write_text, check_output_dir, dumps_json
    from blender_core.priors import MemberPriors, fit_priors
    from blender_core.rankers.baselines import best_single_model
    from blender_core.ranking import Ranking
    from blender_core.routing import RouterModel, fit_router

    started = time.perf_counter()
    check_output_dir(out)
    configs = _stage_configs(stage_sizes)
    records = read_mixinstruct(data, limit=limit)
    train_records = read_mixinstruct(train)
    if not records or not train_records:
        raise typer.BadParameter("DATA and --train must have records")
    metric_name = metric or detect_judge_metric(records)
    if metric_name is None:
        raise typer.BadParameter(
            "the records have no judge score every candidate has", param_hint="--metric"
        )
    if best_single is not None and not any(best_single in r.models for r in records):
        raise typer.BadParameter(
            f"{best_single!r} answers none of the records of {data.name}",
            param_hint="--best-single",
        )
    costs = load_costs(costs_file) if costs_file is not None else None
    use_router = not no_router
    state: dict[str, Any] = {}
    cache_dir = out / "cache"
    cache_dir.mkdir(exist_ok=True)
    cache = _cached(records, data, ranker, cache_dir, device=device, embed=use_router, state=state)
    train_cache = _cached(
        train_records,
        train,
        ranker,
        cache_dir,
        device=device,
        embed=use_router and router_file is None,
        state=state,
    )
    ranked = time.perf_counter()
    priors = None
    if not no_priors:
        if priors_file is not None:
            priors = MemberPriors.load(priors_file)
        else:
            rankings = [
                Ranking.from_scores(train_cache.subset_scores(r, range(len(rec.candidates))))
                for r, rec in enumerate(train_records)
            ]
            priors = fit_priors(
                train_records,
                rankings=rankings,
                metric=metric_name,
                data_name=train.name,
                ranker_name=ranker,
            )
        priors.save(out / "priors.json")
    calibrations = {
        sizes: fit_stop_calibration(
            train_records,
            train_cache,
            priors=priors,
            metric=metric_name,
            stage_sizes=sizes,
            data_name=train.name,
        )
        for sizes in configs
    }
    atomic_write_text(
        out / "calibration.json",
        dumps_json({"+".join(map(str, k)): v.to_dict() for k, v in calibrations.items()}, indent=1),
    )
    router = None
    if use_router:
        if router_file is not None:
            router = RouterModel.load(router_file)
        else:
            router = fit_router(
                train_cache.embeddings, train_records, metric=metric_name, data_name=train.name
            )
        router.save(out / "router.json")
    fitted = time.perf_counter()
    report = evaluate_policies(
        records,
        cache,
        metric=metric_name,
        best_single=best_single or best_single_model(train_records, metric_name),
        priors=priors,
        calibration=calibrations,
        router=router,
        costs=costs,
        thresholds=_floats(thresholds, "--thresholds"),
        router_masses=_floats(masses, "--masses"),
        stage_sizes=configs,
        bootstrap=bootstrap,
        seed=seed,
    )
    report.notes.append(
        f"ranker {ranker}; rank/embed (or cache load) {ranked - started:.1f} s, fits "
        f"{fitted - ranked:.1f} s, all policies and thresholds {report.seconds:.1f} s"
    )
    markdown = report.to_markdown(cost_label="cost" if costs else "calls")
    atomic_write_text(out / "table.md", markdown)
    atomic_write_text(
        out / "results.json",
        dumps_json(
            {
                "data": data.name,
                "train": train.name,
                "records": len(records),
                "ranker": ranker,
                "router_kind": router.kind if router else None,
                **report.to_dict(),
            },
            indent=1,
        ),
    )
    if plots:
        plot_cost_quality(
            report,
            out / "cost-quality.png",
            title=f"{data.parent.name}/{data.name}: {ranker} ranker",
        )
    typer.echo(markdown)
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(
        f"wrote table.md, results.json{', cost-quality.png' if plots else ''} to {out} "
        f"in {time.perf_counter() - started:.0f} s",
        err=True,
    )
