"""Build methods and metrics from short command-line specs (``oracle``, ``mlm:PATH``, ...).

Method specs (comma-separated on the command line):

==========================  ===================================================================
``oracle[:METRIC]``          best candidate by the stored judge score (or a computed metric)
``random``                   the random pick's exact expectation (mean over candidates)
``random-draw[:SEED]``       one seeded random pick per record (``RandomRanker``)
``longest``                  the longest candidate (characters; ties: first)
``best-single``              the model with the best mean judge score on ``--train`` (else on
                             the evaluated data)
``models``                   one row per candidate model
``single``                   ``best-single`` and ``models``
``model:NAME``               one model's answers
``consensus[:PATH]``         :class:`~blender_core.rankers.consensus.ConsensusRanker`
``mlm[:PATH]``               :class:`~blender_core.rankers.mlm_scoring.MLMScoringRanker`
``simcls[:PATH]``            :class:`~blender_core.rankers.simcls.SimCLSRanker`
``pairrm:PATH``              :class:`~blender_core.pair_ranker.PairRanker` from any checkpoint
``blender[:RANKER]``         rank (default ``consensus``; any ``load_ranker`` spec) + fuse
                             (``fuser=``, any ``load_fuser`` spec) the top ``top_k``
``priors[:FILE]``            "priors only": the member priors of a ``blender calibrate`` file, or
                             without a file fitted here on ``--train`` (no ranker)
``ranker+priors:FILE``       "ranker + priors": the ranker the file was calibrated with (its
                             ``fitted_on.ranker`` spec) plus its priors; reuses the rankings of
                             an earlier row of the same ranker (``pairrm:PATH``) when there is one
==========================  ===================================================================

Metric specs: ``bertscore[:MODEL]``, ``bartscore[:MODEL]``, ``bleurt:CHECKPOINT``, and
``judge`` (the stored judge score; always included when the data has one).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blender_core.data import MixRecord
from blender_core.evaluation.metrics import ReferenceMetric
from blender_core.evaluation.runner import BlendMethod, GeneratingMethod
from blender_core.rankers.baselines import (
    FixedModelSelector,
    LongestRanker,
    OracleSelector,
    RankerSelector,
    Selector,
    UniformSelector,
    best_single_model,
)

__all__ = ["DEFAULT_METHODS", "DEFAULT_METRICS", "build_methods", "build_metrics", "split_specs"]

DEFAULT_METHODS = "oracle,random,longest,single,consensus,mlm,simcls"
DEFAULT_METRICS = "judge,bertscore"


def split_specs(text: str | Sequence[str]) -> list[str]:
    """``"a,b:c, d"`` or ``["a,b", "c"]`` -> ``["a", "b:c", "d"]``."""
    parts = [text] if isinstance(text, str) else list(text)
    return [s.strip() for part in parts for s in part.split(",") if s.strip()]


def _arg(spec: str) -> tuple[str, str | None]:
    name, _, arg = spec.partition(":")
    return name.strip().lower(), (arg.strip() or None)


def build_methods(
    specs: str | Sequence[str],
    records: Sequence[MixRecord],
    *,
    judge_metric: str | None,
    train_records: Sequence[MixRecord] | None = None,
    fuser: Any = None,
    top_k: int = 3,
    device: Any = None,
    max_length: int | None = None,
    mlm_passes: int | None = 4,
) -> list[Selector | GeneratingMethod]:
    """Turn method specs (see the module doc) into selectors and generating methods.

    ``max_length`` caps the tokens per text of the encoder rankers (consensus, SimCLS; ``None``:
    their defaults); ``mlm_passes`` is MLM-scoring's number of strided masked copies (``None``:
    exact PLL).
    """
    methods: list[Selector | GeneratingMethod] = []
    models = records[0].models if records else []

    def best_single() -> Selector:
        if judge_metric is None:
            raise ValueError("best-single needs a stored judge score in the data")
        on = train_records if train_records else records
        best = best_single_model(on, judge_metric)
        where = "train" if train_records else "eval data"
        return FixedModelSelector(best, name=f"best single: {best} (on {where})")

    rankers_by_spec: dict[str, RankerSelector] = {}
    for spec in split_specs(specs):
        name, arg = _arg(spec)
        if name == "oracle":
            metric = arg or judge_metric
            if metric is None:
                raise ValueError("oracle needs a metric: the data has no stored judge score")
            methods.append(OracleSelector(metric))
        elif name == "random":
            methods.append(UniformSelector())
        elif name == "random-draw":
            from blender_core.rankers.random import RandomRanker

            seed = int(arg) if arg else 0
            methods.append(RankerSelector(RandomRanker(seed), name=f"random (seed {seed})"))
        elif name == "longest":
            methods.append(RankerSelector(LongestRanker(), name="longest"))
        elif name == "best-single":
            methods.append(best_single())
        elif name in ("models", "single"):
            if name == "single":
                methods.append(best_single())
            methods.extend(FixedModelSelector(m) for m in models)
        elif name == "model":
            if not arg:
                raise ValueError("model: needs a model name, e.g. model:vicuna-13b")
            methods.append(FixedModelSelector(arg))
        elif name == "consensus":
            from blender_core.rankers.consensus import ConsensusRanker

            methods.append(
                RankerSelector(
                    ConsensusRanker(arg, device=device, max_length=max_length), name="consensus"
                )
            )
        elif name == "mlm":
            from blender_core.rankers.mlm_scoring import MLMScoringRanker

            methods.append(
                RankerSelector(
                    MLMScoringRanker(arg, device=device, passes=mlm_passes), name="mlm-scoring"
                )
            )
        elif name == "simcls":
            from blender_core.rankers.simcls import SimCLSRanker

            dev = None if device is None else str(device)
            methods.append(
                RankerSelector(SimCLSRanker(arg, device=dev, max_length=max_length), name="simcls")
            )
        elif name == "pairrm":
            if not arg:
                raise ValueError("pairrm: needs a checkpoint, e.g. pairrm:llm-blender/PairRM")
            from blender_core.loading import load_ranker

            label = Path(arg).name or arg
            selector = RankerSelector(load_ranker(arg, device=device), name=f"pairrm ({label})")
            rankers_by_spec[arg] = selector
            methods.append(selector)
        elif name == "priors":
            from blender_core.priors import MemberPriors, PriorSelector, fit_priors

            if arg:
                methods.append(PriorSelector(MemberPriors.load(arg)))
            else:
                if not train_records:
                    raise ValueError(
                        "priors (without a file) are fitted on --train records: pass --train, or "
                        "priors:FILE from `blender calibrate`"
                    )
                fitted = fit_priors(train_records, metric=judge_metric, data_name="--train")
                methods.append(PriorSelector(fitted, name="priors only (fitted on train)"))
        elif name == "ranker+priors":
            if not arg:
                raise ValueError("ranker+priors: needs a priors file from `blender calibrate`")
            from blender_core.loading import load_ranker
            from blender_core.priors import MemberPriors, PriorSelector, WithStrategy

            priors = MemberPriors.load(arg)
            ranker_spec = priors.fitted_on.get("ranker")
            if priors.scale is None or not isinstance(ranker_spec, str):
                raise ValueError(
                    f"{arg} was calibrated without a ranker spec: run `blender calibrate DATA "
                    "--ranker SPEC` (or use priors:FILE for the priors alone)"
                )
            strategy = priors.fitted_on.get("strategy")
            base = rankers_by_spec.get(ranker_spec) if strategy in (None, "max_logits") else None
            if base is None:
                loaded: Any = load_ranker(ranker_spec, device=device)
                if strategy is not None:
                    loaded = WithStrategy(loaded, strategy)
                base = RankerSelector(loaded, name=f"ranker of {Path(arg).name}")
            methods.append(PriorSelector(priors, base, name="ranker + priors"))
        elif name == "blender":
            from blender_core.loading import load_fuser, load_ranker

            ranker_spec = arg or "consensus"
            fuser_obj = load_fuser(fuser, device=device)
            label = (
                f"blender ({Path(ranker_spec).name or ranker_spec} + {_label(fuser)}, top {top_k})"
            )
            methods.append(
                BlendMethod(
                    load_ranker(ranker_spec, device=device), fuser_obj, top_k=top_k, name=label
                )
            )
        else:
            raise ValueError(
                f"unknown method spec {spec!r}: use oracle[:METRIC], random, random-draw[:SEED], "
                "longest, best-single, models, single, model:NAME, consensus[:PATH], mlm[:PATH], "
                "simcls[:PATH], pairrm:PATH, blender[:RANKER], priors[:FILE], ranker+priors:FILE"
            )
    names = [m.name for m in methods]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"methods listed twice: {dupes}")
    return methods


def _label(spec: Any) -> str:
    if spec is None:
        return "select"
    if isinstance(spec, str):
        return Path(spec).name or spec
    return str(getattr(spec, "name", type(spec).__name__))


def build_metrics(
    specs: str | Sequence[str],
    *,
    cache_dir: str | Path | None = None,
    device: Any = None,
    max_length: int | None = None,
) -> list[ReferenceMetric]:
    """Turn metric specs (see the module doc) into metrics; ``judge`` adds nothing here."""
    metrics: list[ReferenceMetric] = []

    def cache(name: str) -> Path | None:
        return Path(cache_dir) / f"{name}.jsonl" if cache_dir is not None else None

    for spec in split_specs(specs):
        name, arg = _arg(spec)
        if name == "judge":
            continue
        if name == "bertscore":
            from blender_core.evaluation.bertscore import BERTScoreMetric

            metrics.append(
                BERTScoreMetric(
                    arg,
                    max_length=max_length,
                    device=None if device is None else str(device),
                    cache=cache("bertscore"),
                )
            )
        elif name == "bartscore":
            from blender_core.evaluation.bartscore import PAPER_BARTSCORE_MODEL, BARTScoreMetric

            metrics.append(
                BARTScoreMetric(
                    arg or PAPER_BARTSCORE_MODEL,
                    device=device,
                    max_length=max_length or 1024,
                    cache=cache("bartscore"),
                )
            )
        elif name == "bleurt":
            if not arg:
                raise ValueError("bleurt: needs a checkpoint, e.g. bleurt:path/to/BLEURT-20-D12")
            from blender_core.evaluation.bleurt import BLEURTMetric

            metrics.append(BLEURTMetric(arg, device=device, cache=cache("bleurt")))
        else:
            raise ValueError(
                f"unknown metric spec {spec!r}: use judge, bertscore[:MODEL], "
                "bartscore[:MODEL], bleurt:CHECKPOINT"
            )
    return metrics
