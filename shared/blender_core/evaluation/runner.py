"""Run methods and metrics over MixInstruct records and collect the paper-style results.

A *method* is either a selector (picks candidates: see :mod:`blender_core.rankers.baselines`) or a
generating method such as :class:`BlendMethod` (rank + fuse: its text is new, so only
reference-based metrics and GPT-Rank can score it; the stored judge scores, "beats" by stored
scores, top-k shares and pick distributions are N/A for it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal, Protocol, runtime_checkable

from blender_core.data import MixRecord, detect_judge_metric
from blender_core.evaluation.gpt_rank import GPTRank
from blender_core.evaluation.metrics import ReferenceMetric
from blender_core.evaluation.results import EvalResults, MethodResult
from blender_core.evaluation.stats import PairedDifference, paired_bootstrap
from blender_core.rankers.baselines import Pick, Selector, model_means, record_prompt
from blender_core.ranking import Ranker, Ranking

__all__ = [
    "BlendMethod",
    "EvalResults",
    "GeneratingMethod",
    "MethodResult",
    "detect_judge_metric",
    "evaluate",
]


@runtime_checkable
class GeneratingMethod(Protocol):
    """A method that writes a new answer per record (not one of the candidates)."""

    name: str

    def generate(
        self, records: Sequence[MixRecord], *, show_progress: bool = False
    ) -> list[str]: ...


class BlendMethod:
    """The full Blender on stored candidates: rank them, keep the top k, fuse.

    Args:
        ranker: Any ranker (PairRanker, ConsensusRanker, ...).
        fuser: Any :class:`~blender_core.fusion.base.Fuser` (GenFuser, LLMFuser, SelectFuser).
        top_k: Candidates handed to the fuser, best first.
        name: The row name.
        fuse_kwargs: Extra keyword arguments of every ``fuse`` call (e.g. ``max_new_tokens``).

    Example:
        .. code-block:: python

            method = BlendMethod(ConsensusRanker(), GenFuser.from_pretrained(path), top_k=3)
            fused = method.generate(records)
    """

    def __init__(
        self,
        ranker: Ranker,
        fuser: Any,
        *,
        top_k: int = 3,
        name: str = "blender",
        fuse_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if not callable(getattr(fuser, "fuse", None)):
            raise TypeError(f"fuser must have fuse(), got {type(fuser).__name__}")
        self.ranker = ranker
        self.fuser = fuser
        self.top_k = top_k
        self.name = name
        self.fuse_kwargs = dict(fuse_kwargs or {})
        self.rankings: list[Ranking] = []

    def generate(self, records: Sequence[MixRecord], *, show_progress: bool = False) -> list[str]:
        from tqdm.auto import tqdm

        self.rankings = list(
            self.ranker.rank_batch([record_prompt(r) for r in records], [r.texts for r in records])
        )
        fused = []
        for record, ranking in tqdm(
            list(zip(records, self.rankings, strict=True)),
            desc=f"{self.name}: fusing",
            disable=not show_progress,
        ):
            top = [record.texts[i] for i in ranking.top_k(min(self.top_k, len(record.texts)))]
            text = self.fuser.fuse(record.instruction, top, input=record.input, **self.fuse_kwargs)
            if not isinstance(text, str):
                raise TypeError(f"the fuser returned {type(text).__name__}, not a string")
            fused.append(text)
        return fused


def _with_scores(
    records: Sequence[MixRecord], name: str, values: list[list[float]]
) -> list[MixRecord]:
    out = []
    for record, row in zip(records, values, strict=True):
        candidates = tuple(
            replace(c, scores={**c.scores, name: v})
            for c, v in zip(record.candidates, row, strict=True)
        )
        out.append(replace(record, candidates=candidates))
    return out


def _expect(pick: Pick, values: Sequence[float]) -> float:
    return sum(w * values[i] for i, w in pick.items())


def _beat(a: float, b: float) -> float:
    return 1.0 if a > b else 0.5 if a == b else 0.0


def evaluate(
    records: Sequence[MixRecord],
    methods: Sequence[Selector | GeneratingMethod],
    *,
    metrics: Sequence[ReferenceMetric] = (),
    judge_metric: str | None = "auto",
    beats_models: Sequence[str] | None = None,
    beats_reference: Sequence[MixRecord] | None = None,
    top_ks: Sequence[int] = (1, 3),
    gpt_rank: GPTRank | None = None,
    baseline: str | None = "auto",
    bootstrap_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    show_progress: bool = False,
) -> EvalResults:
    """Evaluate methods on MixInstruct records.

    Args:
        records: The evaluation records (every record must have the same candidate models for
            the per-model columns to be meaningful).
        methods: Selectors (oracle, random, longest, single models, any ranker through
            :class:`~blender_core.rankers.baselines.RankerSelector`) and generating methods
            (:class:`BlendMethod`), in row order. Names must be unique.
        metrics: Reference-based metrics (BERTScore, BARTScore, BLEURT), computed for every
            candidate (and generated text) against the record's ``output``; their values are
            also written into the candidates' ``scores`` so that ``OracleSelector("bertscore")``
            works.
        judge_metric: The stored score for the judge column, "beats" and top-k shares;
            ``"auto"`` takes the score every candidate has; ``None`` leaves those columns out.
        beats_models: Models of the "beats X %" columns; ``None``: the two models with the
            best mean judge score on ``beats_reference`` (or on ``records``).
        beats_reference: Records to choose the default ``beats_models`` on (e.g. train).
        top_ks: The k of the "top-k share" columns (share of picks whose judge score ranks
            within the best k; ties share the better rank).
        gpt_rank: A :class:`~blender_core.evaluation.gpt_rank.GPTRank` to add GPT-Rank and
            judge-based "beats" columns.
        baseline: The method every other method's judge score is compared with (paired
            bootstrap over the records: the mean difference, its confidence interval, and
            whether the interval excludes 0); ``"auto"``: the ``best single ...`` row if there
            is one; ``None``: no comparison.
        bootstrap_resamples: Resamples of the paired bootstrap.
        confidence: Coverage of its interval.
        seed: Seed of the bootstrap (the same inputs give the same intervals).
        show_progress: Progress bars.
    """
    from tqdm.auto import tqdm

    if not records:
        raise ValueError("no records to evaluate")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    if baseline not in (None, "auto") and baseline not in names:
        raise ValueError(f"baseline {baseline!r} is not one of the methods {names}")
    if any(k < 1 for k in top_ks):
        raise ValueError(f"top_ks must be >= 1, got {list(top_ks)}")
    records = list(records)
    if judge_metric == "auto":
        judge_metric = detect_judge_metric(records)
    elif judge_metric is not None:
        for record in records:
            record.scores(judge_metric)  # raises KeyError naming the record and candidate
    models = records[0].models
    notes: list[str] = []

    # 1. Generating methods first: their texts are scored by the metrics below.
    results: dict[str, MethodResult] = {}
    for method in methods:
        if isinstance(method, GeneratingMethod) and not isinstance(method, Selector):
            texts = method.generate(records, show_progress=show_progress)
            if len(texts) != len(records):
                raise RuntimeError(f"{method.name} produced {len(texts)} texts for {len(records)}")
            results[method.name] = MethodResult(method.name, "generated", texts=list(texts))

    # 2. Reference-based metrics for every candidate and generated text.
    generated_scores: dict[str, dict[str, list[float]]] = {}
    for metric in metrics:
        for record in records:
            if not record.output:
                raise ValueError(
                    f"record {record.id!r} has no reference output: {metric.name} needs one"
                )
        cands = [t for r in records for t in r.texts]
        refs = [r.output for r in records for _ in r.texts]
        for result in results.values():
            assert result.texts is not None
            cands += result.texts
            refs += [r.output for r in records]
        flat = metric.score_batch(cands, refs, show_progress=show_progress)
        per_record, offset = [], 0
        for record in records:
            per_record.append(flat[offset : offset + len(record.texts)])
            offset += len(record.texts)
        for name in results:
            generated_scores.setdefault(name, {})[metric.name] = flat[
                offset : offset + len(records)
            ]
            offset += len(records)
        records = _with_scores(records, metric.name, per_record)

    # 3. Selections, on records that now carry the computed metrics too.
    for method in tqdm(methods, desc="methods", disable=not show_progress):
        if method.name in results:
            continue
        picks = method.select(records, show_progress=show_progress)  # type: ignore[union-attr]
        if len(picks) != len(records):
            raise RuntimeError(f"{method.name} made {len(picks)} picks for {len(records)} records")
        for k, pick in enumerate(picks):
            if not pick or abs(sum(pick.values()) - 1.0) > 1e-6:
                raise ValueError(f"{method.name}: pick {k} is not a distribution: {pick}")
        kind: Literal["selection", "expected"] = (
            "selection" if all(len(p) == 1 for p in picks) else "expected"
        )
        results[method.name] = MethodResult(method.name, kind, picks=list(picks))
    ordered = [results[name] for name in names]

    # 4. Columns.
    if beats_models is None:
        if judge_metric is None:
            beats_models = []
        else:
            means = model_means(list(beats_reference or records), judge_metric)
            beats_models = sorted(means, key=lambda m: -means[m])[:2]
    beats_models = list(beats_models)
    for model in beats_models:
        if model not in models:
            raise ValueError(f"beats model {model!r} is not a candidate model ({models})")
    judge_values = [r.scores(judge_metric) for r in records] if judge_metric else None
    oracle_ranks = (
        [Ranking.from_scores(v).ranks for v in judge_values] if judge_values is not None else None
    )
    for result in ordered:
        n = len(records)
        if result.picks is None:
            assert result.texts is not None
            if judge_metric:
                result.values["judge"] = None
            for metric in metrics:
                values = generated_scores[result.name][metric.name]
                result.values[metric.name] = sum(values) / n
            for model in beats_models:
                result.values[f"beats:{model}"] = None
            for k in top_ks:
                result.values[f"top{k}"] = None
            continue
        picks = result.picks
        if judge_values is not None and oracle_ranks is not None:
            result.judge_values = [_expect(p, v) for p, v in zip(picks, judge_values, strict=True)]
            result.values["judge"] = sum(result.judge_values) / n
            for model in beats_models:
                share = 0.0
                for record, pick, values in zip(records, picks, judge_values, strict=True):
                    x = values[record.models.index(model)]
                    share += sum(w * _beat(values[i], x) for i, w in pick.items())
                result.values[f"beats:{model}"] = share / n
            for k in top_ks:
                share = sum(
                    sum(w for i, w in p.items() if ranks[i] <= k)
                    for p, ranks in zip(picks, oracle_ranks, strict=True)
                )
                result.values[f"top{k}"] = share / n
            width = max(len(r.candidates) for r in records)
            dist = [0.0] * width
            for pick, ranks in zip(picks, oracle_ranks, strict=True):
                for i, w in pick.items():
                    dist[ranks[i] - 1] += w / n
            result.rank_distribution = dist
        for metric in metrics:
            result.values[metric.name] = (
                sum(_expect(p, r.scores(metric.name)) for p, r in zip(picks, records, strict=True))
                / n
            )
        share_by_model: dict[str, float] = dict.fromkeys(models, 0.0)
        for record, pick in zip(records, picks, strict=True):
            for i, w in pick.items():
                model = record.candidates[i].model
                share_by_model[model] = share_by_model.get(model, 0.0) + w / n
        result.model_share = share_by_model

    # 5. GPT-Rank over all methods' outputs.
    gpt_result = None
    if gpt_rank is not None:
        outputs: dict[str, Sequence[Pick | str]] = {}
        for result in ordered:
            if result.picks is not None:
                outputs[result.name] = result.picks
            else:
                assert result.texts is not None
                outputs[result.name] = result.texts
        gpt_result = gpt_rank.evaluate(
            records, outputs, beats_models=beats_models, show_progress=show_progress
        )
        for result in ordered:
            result.values["gpt_rank"] = gpt_result.ranks[result.name]
            for model in beats_models:
                result.values[f"gpt_beats:{model}"] = gpt_result.beats[result.name][model]
        if gpt_result.invalid:
            notes.append(
                f"GPT-Rank: {gpt_result.invalid} of {gpt_result.calls} judge answers were "
                "unparseable (scored 0 for both; 0.5 in 'beats')."
            )
    # 6. Paired bootstrap of every method's judge score against the baseline.
    if baseline == "auto":
        baseline = next((m.name for m in ordered if m.name.startswith("best single")), None)
    comparisons: dict[str, PairedDifference] = {}
    if baseline is not None and judge_metric is not None:
        base_values = results[baseline].judge_values
        if base_values is None:
            raise ValueError(f"baseline {baseline!r} has no judge scores (a generated method)")
        for result in ordered:
            if result.name != baseline and result.judge_values is not None:
                comparisons[result.name] = paired_bootstrap(
                    result.judge_values,
                    base_values,
                    resamples=bootstrap_resamples,
                    confidence=confidence,
                    seed=seed,
                )
    elif baseline is not None:
        baseline = None
    return EvalResults(
        records=records,
        methods=ordered,
        judge_metric=judge_metric,
        metrics={m.name: m for m in metrics},
        beats_models=beats_models,
        top_ks=list(top_ks),
        models=models,
        gpt_rank=gpt_result,
        notes=notes,
        baseline=baseline,
        comparisons=comparisons,
    )
