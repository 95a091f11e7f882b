"""Policies on stored candidate sets: judge score against members called, with the curve.

A member's candidate exists only once the policy calls it: each policy is replayed record by
record through its :class:`~blender_core.policies.PolicyRun`, and only the called members'
candidates are ranked. The ranker's pair matrix over *all* candidates of a record is computed once
(:func:`compute_pair_cache`, cached on disk) and every policy and threshold scores its subsets
from it, so no forward pass is repeated across thresholds:

- a consensus ranker's matrix holds cosine similarities; a subset's score of ``i`` is its mean
  similarity to the other called candidates (exactly what the ranker gives on the subset);
- a PairRanker's matrix holds pair logits; a subset's score is ``max_logits`` over the subset
  (``mean_j M[i][j] - M[j][i]``), the pairs being the same whoever else is in the set.

:func:`evaluate_policies` reports, per policy and threshold, the mean judge score, members
called, cost, and paired bootstrap intervals against the best single model and against ``all``;
:func:`curve_summary` gives RouteLLM's summary numbers (calls to reach 50 % / 80 % of the gain of
``all`` over the best single model, and the average gain recovered); :func:`plot_cost_quality`
draws the curves.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from blender_core.data import MixRecord
from blender_core.evaluation.stats import PairedDifference, paired_bootstrap
from blender_core.io import atomic_open, atomic_write_bytes
from blender_core.policies import (
    AllPolicy,
    CascadePolicy,
    CascadeRun,
    MemberCost,
    Observation,
    Policy,
    PolicyRun,
    RouterPolicy,
    Stop,
    StopCalibration,
    estimate_tokens,
)
from blender_core.priors import MemberPriors, fit_logistic
from blender_core.rankers.baselines import record_prompt
from blender_core.ranking import Ranker, Ranking

__all__ = [
    "CurveSummary",
    "Outcome",
    "PairCache",
    "PolicyPoint",
    "PolicyReport",
    "cache_key",
    "compute_pair_cache",
    "curve_summary",
    "evaluate_policies",
    "fit_stop_calibration",
    "plot_cost_quality",
    "replay",
]

ScoreMode = Literal["consensus", "pairwise"]


@dataclass
class PairCache:
    """The ranker's pair matrix over every candidate of every record, computed once.

    Attributes:
        ids: Record ids, in order.
        matrices: One ``(n, n)`` matrix per record.
        mode: How a subset is scored from the matrix (``consensus`` or ``pairwise``).
        ranker: A description of the ranker (recorded; checked when a cache is reused).
        embeddings: Optional prompt embeddings ``(records, dim)`` for routers.
    """

    ids: list[str]
    matrices: list[np.ndarray]
    mode: ScoreMode
    ranker: str = ""
    embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.matrices):
            raise ValueError(f"{len(self.ids)} ids for {len(self.matrices)} matrices")
        if self.mode not in ("consensus", "pairwise"):
            raise ValueError(f"mode must be 'consensus' or 'pairwise', got {self.mode!r}")
        for rid, m in zip(self.ids, self.matrices, strict=True):
            if m.ndim != 2 or m.shape[0] != m.shape[1]:
                raise ValueError(f"record {rid!r}: the pair matrix must be square, got {m.shape}")

    def subset_scores(self, record: int, subset: Sequence[int]) -> np.ndarray:
        """The ranker's scores of the candidates ``subset`` of record ``record``, ranked alone."""
        m = self.matrices[record]
        idx = np.asarray(subset, dtype=np.intp)
        sub = m[np.ix_(idx, idx)]
        k = len(idx)
        if self.mode == "consensus":
            if k == 1:
                return np.zeros(1)
            return (sub.sum(axis=1) - np.diagonal(sub)) / (k - 1)
        return (sub - sub.T).sum(axis=1) / k

    def check(self, records: Sequence[MixRecord]) -> None:
        """Raise ``ValueError`` unless the cache is for exactly these records."""
        ids = [str(r.id) for r in records]
        if ids != self.ids:
            raise ValueError(
                f"the pair cache is for {len(self.ids)} other records (ids differ): recompute it"
            )
        for record, m in zip(records, self.matrices, strict=True):
            if m.shape[0] != len(record.candidates):
                raise ValueError(
                    f"record {record.id!r}: cached matrix {m.shape} for "
                    f"{len(record.candidates)} candidates"
                )

    def save(self, path: str | Path) -> Path:
        """Write the cache as a compressed ``.npz`` (atomically)."""
        sizes = np.array([m.shape[0] for m in self.matrices], dtype=np.int64)
        flat = np.concatenate([m.ravel() for m in self.matrices]) if self.matrices else np.zeros(0)
        arrays: dict[str, Any] = {
            "ids": np.array(self.ids, dtype=str),
            "sizes": sizes,
            "flat": flat.astype(np.float32),
            "mode": np.array(self.mode),
            "ranker": np.array(self.ranker),
        }
        if self.embeddings is not None:
            arrays["embeddings"] = np.asarray(self.embeddings, dtype=np.float32)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        target = Path(path)
        atomic_write_bytes(target, buffer.getvalue())
        return target

    @classmethod
    def load(cls, path: str | Path) -> PairCache:
        """Read a file written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as data:
            sizes = data["sizes"]
            flat = data["flat"].astype(np.float64)
            matrices, start = [], 0
            for n in sizes.tolist():
                matrices.append(flat[start : start + n * n].reshape(n, n))
                start += n * n
            return cls(
                ids=[str(i) for i in data["ids"].tolist()],
                matrices=matrices,
                mode=str(data["mode"]),  # type: ignore[arg-type]
                ranker=str(data["ranker"]),
                embeddings=data["embeddings"] if "embeddings" in data.files else None,
            )


def _mode_of(ranking: Ranking) -> ScoreMode:
    return "consensus" if ranking.strategy == "consensus" else "pairwise"


def compute_pair_cache(
    records: Sequence[MixRecord],
    ranker: Ranker,
    *,
    ranker_name: str | None = None,
    batch_size: int = 16,
    mode: ScoreMode | None = None,
    show_progress: bool = False,
) -> PairCache:
    """Rank every record's full candidate list once and keep the pair matrices.

    Args:
        records: The records.
        ranker: A ranker whose rankings carry ``matrix`` (consensus, PairRanker all-pairs).
        ranker_name: Recorded in the cache.
        batch_size: Records per ``rank_batch`` call.
        mode: How subsets are scored (default: ``consensus`` for the consensus ranker's
            rankings, else ``pairwise``).
        show_progress: A progress bar.

    Raises:
        ValueError: A ranking has no pair matrix (e.g. a bubble strategy).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    records = list(records)
    matrices: list[np.ndarray] = []
    found: ScoreMode | None = mode
    steps = range(0, len(records), batch_size)
    if show_progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="pair matrices", unit="batch")  # type: ignore[assignment]
    for start in steps:
        batch = records[start : start + batch_size]
        rankings = ranker.rank_batch([record_prompt(r) for r in batch], [r.texts for r in batch])
        for record, ranking in zip(batch, rankings, strict=True):
            if ranking.matrix is None:
                raise ValueError(
                    f"record {record.id!r}: the ranker gave no pair matrix (strategy "
                    f"{ranking.strategy!r}); use a consensus ranker or an all-pairs strategy"
                )
            found = found or _mode_of(ranking)
            matrices.append(np.asarray(ranking.matrix, dtype=np.float64))
    return PairCache(
        ids=[str(r.id) for r in records],
        matrices=matrices,
        mode=found or "pairwise",
        ranker=ranker_name or type(ranker).__name__,
    )


# -- replay -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One policy's result on one record.

    Attributes:
        called: Indices of the candidates whose members were called.
        pick: Index of the chosen candidate.
        cost: The cost of the calls (from the price table; 1 per call without one).
        stop: The reason the policy stopped.
    """

    called: tuple[int, ...]
    pick: int
    cost: float
    stop: str


def _combined(
    cache: PairCache, r: int, idx: list[int], members: list[str], priors: MemberPriors | None
) -> np.ndarray:
    scores = cache.subset_scores(r, idx)
    if priors is None:
        return scores
    names = [members[i] for i in idx]
    if priors.scale is None:
        return np.asarray(priors.combine(None, names))
    return np.asarray(priors.combine(scores.tolist(), names))


def _call_cost(
    record: MixRecord, i: int, costs: Mapping[str, MemberCost] | None, prompt_tokens: int
) -> float:
    if not costs:
        return 1.0
    cost = costs.get(record.candidates[i].model)
    if cost is None:
        raise ValueError(f"the price table has no member {record.candidates[i].model!r}")
    return cost.cost(prompt_tokens, estimate_tokens(record.candidates[i].text))


def replay(
    policy: Policy,
    record: MixRecord,
    r: int,
    cache: PairCache,
    *,
    priors: MemberPriors | None = None,
    costs: Mapping[str, MemberCost] | None = None,
    embedding: np.ndarray | None = None,
    on_observation: Callable[[PolicyRun, Observation], None] | None = None,
) -> Outcome:
    """Replay ``policy`` on record ``record`` (index ``r`` of ``cache``).

    Args:
        policy: The policy.
        record: The stored candidate set; a candidate is seen only once its member is called.
        r: The record's index in ``cache``.
        cache: The pair matrices.
        priors: Member priors added to the ranker's scores (as the Blender does).
        costs: Member price table (default: each call costs 1).
        embedding: The prompt's embedding for routers.
        on_observation: Called with each observation before the policy decides (calibration).
    """
    members = record.models
    position = {m: k for k, m in enumerate(members)}
    prompt = record_prompt(record)
    prompt_tokens = estimate_tokens(prompt)
    run = policy.start(prompt, members, embedding=embedding)
    called: list[int] = []
    spent = 0.0
    stage = run.first_stage()
    while True:
        for name in stage:
            called.append(position[name])
            spent += _call_cost(record, position[name], costs, prompt_tokens)
        combined = _combined(cache, r, called, members, priors)
        observation = Observation(
            members=[members[i] for i in called], scores=combined.tolist(), spent=spent
        )
        if on_observation is not None:
            on_observation(run, observation)
        decision = run.next_stage(observation)
        if isinstance(decision, Stop):
            break
        stage = decision
    pick = called[int(np.argmax(combined))]
    return Outcome(tuple(called), pick, spent, decision.reason)


def fit_stop_calibration(
    records: Sequence[MixRecord],
    cache: PairCache,
    *,
    priors: MemberPriors | None,
    metric: str,
    stage_sizes: tuple[int, ...] = (1,),
    order: Any = None,
    l2: float = 1e-3,
    tie: float = 1e-9,
    data_name: str | None = None,
) -> StopCalibration:
    """Fit the cascade's stop confidence on labelled records.

    Each record is replayed with a cascade that never stops early; after every stage but the last
    one row is kept: the :data:`~blender_core.policies.STOP_FEATURES` and the label "the current
    best's judge score is at least that of every member not called yet" (stopping loses nothing).

    Raises:
        ValueError: No rows (every record has a single member) or one label only.
    """
    cache.check(records)
    all_scores = [
        cache.subset_scores(r, list(range(len(rec.candidates)))) for r, rec in enumerate(records)
    ]
    mean_score = float(np.mean(np.concatenate(all_scores)))
    probe = CascadePolicy(
        threshold=1.0,
        calibration=StopCalibration((0.0, 0.0, 0.0, -60.0), mean_score=mean_score),
        priors=priors,
        order=order,
        stage_sizes=stage_sizes,
    )
    rows: list[list[float]] = []
    labels: list[float] = []
    for r, record in enumerate(records):
        judge = np.asarray(record.scores(metric))
        position = {m: k for k, m in enumerate(record.models)}

        def keep(
            run: PolicyRun,
            obs: Observation,
            judge: np.ndarray = judge,
            position: dict[str, int] = position,
        ) -> None:
            assert isinstance(run, CascadeRun)
            rest = [position[m] for m in run.order if m not in obs.members]
            if not rest:
                return
            best = position[obs.members[int(np.argmax(obs.scores))]]
            rows.append(run.features(obs))
            labels.append(1.0 if judge[best] >= judge[rest].max() - tie else 0.0)

        replay(probe, record, r, cache, priors=priors, on_observation=keep)
    if not rows:
        raise ValueError("no cascade stages to calibrate on (records with one member only?)")
    y = np.asarray(labels)
    if y.min() == y.max():
        raise ValueError(f"every stop label is {y[0]:.0f}: nothing to calibrate")
    x = np.asarray(rows)
    w, iterations = fit_logistic(x, y, np.full(x.shape[1], l2))
    z = x @ w
    fitted_on = {
        "data": {"name": data_name, "records": len(records)},
        "rows": len(rows),
        "safe_stop_rate": float(y.mean()),
        "log_loss": float(np.logaddexp(0.0, -(2 * y - 1) * z).mean()),
        "iterations": iterations,
        "stage_sizes": list(stage_sizes),
    }
    return StopCalibration(tuple(float(v) for v in w), mean_score=mean_score, fitted_on=fitted_on)


# -- evaluation ---------------------------------------------------------------------------------


@dataclass
class PolicyPoint:
    """One policy at one setting, over the records.

    Attributes:
        family: The curve it belongs to (``cascade``, ``router top-m``, ...).
        setting: The threshold or count, as shown in tables.
        x: The setting's numeric value (for sorting).
        scores: The judge score of each record's pick.
        calls: Members called per record.
        costs: Cost per record.
        stops: How often each stop reason occurred.
    """

    family: str
    setting: str
    x: float
    scores: np.ndarray
    calls: np.ndarray
    costs: np.ndarray
    stops: dict[str, int] = field(default_factory=dict)
    vs_best_single: PairedDifference | None = None
    vs_all: PairedDifference | None = None

    @property
    def score(self) -> float:
        """Mean judge score."""
        return float(self.scores.mean())

    @property
    def mean_calls(self) -> float:
        """Mean members called."""
        return float(self.calls.mean())

    @property
    def mean_cost(self) -> float:
        """Mean cost."""
        return float(self.costs.mean())


@dataclass(frozen=True)
class CurveSummary:
    """RouteLLM's summary of one curve (calls in members per record).

    Attributes:
        family: The curve.
        cpt50: Fewest mean calls of a point reaching 50 % of the gain of ``all`` over the best
            single model (``None``: never reached).
        cpt80: The same for 80 %.
        apgr: Average performance gap recovered: the mean, over call budgets from 1 to all
            members, of the gain fraction ``(score - best single) / (all - best single)`` on
            the curve's upper envelope (linearly interpolated, anchored at the best single
            model's 1 call and ``all``'s N calls, each fraction clipped to [0, 1]).
        crosses_best_single: Fewest mean calls of a point at or above the best single model.
    """

    family: str
    cpt50: float | None
    cpt80: float | None
    apgr: float
    crosses_best_single: float | None


@dataclass
class PolicyReport:
    """Everything :func:`evaluate_policies` measured."""

    points: list[PolicyPoint]
    summaries: list[CurveSummary]
    best_single: str
    members: int
    metric: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    def point(self, family: str) -> PolicyPoint:
        """The first point of ``family``."""
        for p in self.points:
            if p.family == family:
                return p
        raise KeyError(family)

    def to_markdown(self, *, cost_label: str = "cost") -> str:
        """The table of all points and the summary of each curve."""
        lines = [
            f"| policy | setting | judge % | members called | % of members | {cost_label} | "
            "vs best single (CI) | vs all (CI) | stops |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for p in self.points:
            single = p.vs_best_single.format() if p.vs_best_single else ""
            if p.vs_best_single:
                single += f" {p.vs_best_single.verdict}"
            versus = p.vs_all.format() if p.vs_all else ""
            if p.vs_all:
                versus += f" {p.vs_all.verdict}"
            stops = ", ".join(f"{k} {v}" for k, v in sorted(p.stops.items()))
            lines.append(
                f"| {p.family} | {p.setting} | {100 * p.score:.1f} | {p.mean_calls:.2f} | "
                f"{100 * p.mean_calls / self.members:.0f} | {p.mean_cost:.3g} | {single} | "
                f"{versus} | {stops} |"
            )
        lines += [
            "",
            "| curve | CPT(50%) calls | CPT(80%) calls | APGR | reaches best single at |",
            "|---|---|---|---|---|",
        ]

        def fmt(v: float | None) -> str:
            return "never" if v is None else f"{v:.2f}"

        for s in self.summaries:
            lines.append(
                f"| {s.family} | {fmt(s.cpt50)} | {fmt(s.cpt80)} | {s.apgr:.2f} | "
                f"{fmt(s.crosses_best_single)} |"
            )
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe results."""
        return {
            "best_single": self.best_single,
            "members": self.members,
            "metric": self.metric,
            "seconds": self.seconds,
            "notes": self.notes,
            "points": [
                {
                    "family": p.family,
                    "setting": p.setting,
                    "judge": p.score,
                    "mean_calls": p.mean_calls,
                    "mean_cost": p.mean_cost,
                    "stops": p.stops,
                    "vs_best_single": p.vs_best_single.to_dict() if p.vs_best_single else None,
                    "vs_all": p.vs_all.to_dict() if p.vs_all else None,
                }
                for p in self.points
            ],
            "summaries": [s.__dict__ for s in self.summaries],
        }


def curve_summary(
    family: str, points: Sequence[PolicyPoint], *, single: float, everyone: float, members: int
) -> CurveSummary:
    """RouteLLM's CPT(50 %), CPT(80 %) and APGR of one curve against best single and ``all``."""
    gap = everyone - single
    ordered = sorted(points, key=lambda p: p.mean_calls)

    def cpt(fraction: float) -> float | None:
        for p in ordered:
            if gap > 0 and p.score >= single + fraction * gap - 1e-12:
                return p.mean_calls
        return None

    crosses = next((p.mean_calls for p in ordered if p.score >= single - 1e-12), None)
    if gap <= 0:
        apgr = float("nan")
    else:
        # The upper envelope through the anchors (1 call: best single, PGR 0) and (all members:
        # all, PGR 1), linearly interpolated, averaged over call budgets from 1 to all members.
        xs = [1.0] + [p.mean_calls for p in ordered] + [float(members)]
        ys = [0.0] + [(p.score - single) / gap for p in ordered] + [1.0]
        order = np.argsort(xs, kind="stable")
        env_x = np.asarray(xs)[order]
        env_y = np.maximum.accumulate(np.clip(np.asarray(ys)[order], 0.0, 1.0))
        budgets = np.linspace(1.0, float(members), 400)
        apgr = float(np.mean(np.interp(budgets, env_x, env_y)))
    return CurveSummary(family, cpt(0.5), cpt(0.8), apgr, crosses)


def _point(
    family: str,
    setting: str,
    x: float,
    outcomes: Sequence[Outcome],
    records: Sequence[MixRecord],
    metric: str,
) -> PolicyPoint:
    scores = np.array(
        [rec.candidates[o.pick].scores[metric] for o, rec in zip(outcomes, records, strict=True)]
    )
    stops: dict[str, int] = {}
    for o in outcomes:
        stops[o.stop] = stops.get(o.stop, 0) + 1
    return PolicyPoint(
        family,
        setting,
        x,
        scores.astype(np.float64),
        np.array([len(o.called) for o in outcomes], dtype=np.float64),
        np.array([o.cost for o in outcomes], dtype=np.float64),
        stops,
    )


def _stage_configs(
    stage_sizes: Sequence[int] | Sequence[Sequence[int]],
) -> list[tuple[int, ...]]:
    items = list(stage_sizes)
    if not items:
        raise ValueError("stage_sizes must name at least one configuration")
    if all(isinstance(v, int) for v in items):
        return [tuple(items)]  # type: ignore[arg-type]
    return [tuple(v) for v in items]  # type: ignore[arg-type]


def evaluate_policies(
    records: Sequence[MixRecord],
    cache: PairCache,
    *,
    metric: str,
    best_single: str,
    priors: MemberPriors | None = None,
    calibration: StopCalibration | Mapping[tuple[int, ...], StopCalibration] | None = None,
    router: Any = None,
    costs: Mapping[str, MemberCost] | None = None,
    thresholds: Sequence[float] = (0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98),
    router_masses: Sequence[float] = (0.5, 0.7, 0.8, 0.9, 0.95),
    max_router_m: int | None = None,
    stage_sizes: Sequence[int] | Sequence[Sequence[int]] = (1,),
    bootstrap: int = 10_000,
    seed: int = 0,
) -> PolicyReport:
    """Replay ``all``, the best single model, the cascade and the router on ``records``.

    Args:
        records: The stored candidate sets (same members in every record is not required).
        cache: Their pair matrices (:func:`compute_pair_cache`); embeddings needed for routers.
        metric: The judge score.
        best_single: The best single member (chosen on training data).
        priors: Member priors (added to the ranker's scores; order the cascade).
        calibration: The cascade's stop confidence (:func:`fit_stop_calibration`), or one per
            stage-size configuration (keyed by the sizes tuple).
        router: A :class:`~blender_core.routing.RouterModel`: router curves (top-m and mass) and
            a cascade in the router's per-prompt order.
        costs: Member price table (default: a call costs 1).
        thresholds: The cascade's confidence thresholds.
        router_masses: The router's probability masses.
        max_router_m: Largest top-m of the router (default: all members).
        stage_sizes: The cascade's stage sizes, or several configurations (one curve each).
        bootstrap: Paired bootstrap resamples.
        seed: The bootstrap's seed.

    Returns:
        A :class:`PolicyReport` (points in curve order, then the curve summaries).
    """
    started = time.perf_counter()
    records = list(records)
    if not records:
        raise ValueError("no records to evaluate the policies on")
    cache.check(records)
    if router is not None and cache.embeddings is None:
        raise ValueError("a router needs the prompts' embeddings in the pair cache")
    members = max(len(r.candidates) for r in records)
    points: list[PolicyPoint] = []

    def run(policy: Policy, family: str, setting: str, x: float) -> PolicyPoint:
        outcomes = [
            replay(
                policy,
                rec,
                r,
                cache,
                priors=priors,
                costs=costs,
                embedding=None if cache.embeddings is None else cache.embeddings[r],
            )
            for r, rec in enumerate(records)
        ]
        point = _point(family, setting, x, outcomes, records, metric)
        points.append(point)
        return point

    if any(best_single not in r.models for r in records):
        raise ValueError(f"the best single member {best_single!r} is missing from some records")
    single = run(
        CascadePolicy(threshold=0.0, order=[best_single], max_members=1),
        "best single",
        best_single,
        1,
    )
    everyone = run(AllPolicy(), "all", "all members", members)
    families: dict[str, list[PolicyPoint]] = {}
    configs = _stage_configs(stage_sizes)

    def cascades(order: Any, label: str) -> None:
        for sizes in configs:
            shown = "+".join(str(s) for s in sizes)
            family = label if len(configs) == 1 else f"{label} [{shown}]"
            cal = calibration.get(sizes) if isinstance(calibration, Mapping) else calibration
            for t in thresholds:
                policy = CascadePolicy(
                    threshold=t,
                    calibration=cal or StopCalibration(),
                    priors=priors,
                    costs=costs or {},
                    stage_sizes=sizes,
                    order=order,
                )
                families.setdefault(family, []).append(run(policy, family, f"t={t:g}", t))

    cascades(None, "cascade")
    if router is not None:
        top = max_router_m or members
        for m in range(1, top + 1):
            families.setdefault("router top-m", []).append(
                run(RouterPolicy(router, top_m=m), "router top-m", f"m={m}", m)
            )
        for mass in router_masses:
            families.setdefault("router mass", []).append(
                run(RouterPolicy(router, mass=mass), "router mass", f"p={mass:g}", mass)
            )
        embedded: dict[str, np.ndarray] = {
            record_prompt(rec): cache.embeddings[r]  # type: ignore[index]
            for r, rec in enumerate(records)
        }

        def router_order(prompt: str, names: Sequence[str]) -> list[str]:
            probs = router.probabilities(embedded[prompt][None, :], members=list(names))[0]
            return [names[k] for k in np.argsort(-probs, kind="stable")]

        cascades(router_order, "cascade (router order)")
    for p in points:
        p.vs_best_single = paired_bootstrap(
            p.scores.tolist(), single.scores.tolist(), resamples=bootstrap, seed=seed
        )
        p.vs_all = paired_bootstrap(
            p.scores.tolist(), everyone.scores.tolist(), resamples=bootstrap, seed=seed
        )
    summaries = [
        curve_summary(name, pts, single=single.score, everyone=everyone.score, members=members)
        for name, pts in families.items()
    ]
    notes = []
    if everyone.score <= single.score:
        notes.append("'all' does not beat the best single model here: CPT and APGR are undefined")
    return PolicyReport(
        points, summaries, best_single, members, metric, time.perf_counter() - started, notes
    )


def plot_cost_quality(
    report: PolicyReport, path: str | Path, *, title: str = "", use_cost: bool = False
) -> Path:
    """The cost-quality plot: each curve, the best single model and ``all`` marked (PNG)."""
    from blender_core.evaluation.plots import _figure

    figure = _figure(9.0, 4.6)
    axes = figure.add_subplot(1, 1, 1)

    def xs(p: PolicyPoint) -> float:
        return p.mean_cost if use_cost else p.mean_calls

    by_family: dict[str, list[PolicyPoint]] = {}
    for p in report.points:
        by_family.setdefault(p.family, []).append(p)
    markers = iter("os^vDP")
    for family, pts in by_family.items():
        if family in ("best single", "all"):
            continue
        pts = sorted(pts, key=xs)
        axes.plot(
            [xs(p) for p in pts],
            [100 * p.score for p in pts],
            marker=next(markers, "o"),
            markersize=4,
            linewidth=1.3,
            label=family,
        )
    single, everyone = report.point("best single"), report.point("all")
    axes.axhline(100 * single.score, color="grey", linestyle="--", linewidth=0.9)
    for point, label, style in (
        (
            single,
            f"best single ({report.best_single})",
            {"color": "black", "marker": "*", "s": 120},
        ),
        (everyone, "all members", {"color": "red", "marker": "X", "s": 90}),
    ):
        axes.scatter([xs(point)], [100 * point.score], zorder=5, label=label, **style)
    axes.set_xlabel("mean cost per prompt" if use_cost else "members called per prompt (mean)")
    axes.set_ylabel(f"judge score ({report.metric}, %)")
    if title:
        axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # never over a curve
    figure.tight_layout()
    target = Path(path)
    with atomic_open(target, "wb") as handle:
        figure.savefig(handle, format="png")
    return target


def cache_key(data: Path, ranker: str) -> str:
    """A file name for the pair cache of ``data`` ranked by ``ranker`` (content-addressed)."""
    digest = hashlib.sha256(data.read_bytes()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in ranker)[:40]
    return f"{data.stem}-{digest}-{safe}.npz"
