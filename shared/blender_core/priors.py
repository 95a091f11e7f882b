"""Member priors: which member wrote a candidate is evidence too, next to the ranker's score.

A production ensemble always knows which member produced each candidate, and members differ a
lot (on alpaca-v2 two members win 66-71 % of their judgements, the other ten 2-17 %). A
:class:`MemberPriors` is a small logistic model fitted on labelled MixInstruct data, over the
pairs of candidates of the same instruction whose judge scores differ by more than a gap::

    P(a beats b) = sigmoid(scale * (s_a - s_b) + prior[member_a] - prior[member_b])

where ``s`` is any ranker's score of the candidate (its :class:`~blender_core.ranking.Ranking`
``scores``). Fitted without a ranker, only the priors are learned (a Bradley-Terry strength per
member). The priors are L2-regularised, which also centres them: ``0`` is the average member, and
members the file does not know get that neutral prior.

:class:`PriorRanker` wraps any ranker and ranks by ``scale * s + prior[member]``; the Blender and
the LangChain/LlamaIndex ensembles (which go through it) hand it the members of every candidate.

The fit is Newton's method on a dozen parameters in NumPy: scikit-learn is not a dependency of
the core package, and its ``LogisticRegression`` has no way to leave the scale unpenalised while
shrinking the priors, nor to drop the intercept that an antisymmetric pair model must not have.

Example:
    .. code-block:: python

        from blender_core.data import read_mixinstruct
        from blender_core.priors import MemberPriors, PriorRanker, fit_priors

        ranker = PairRanker.from_pretrained("runs/pairrm-mine")
        priors = fit_priors(read_mixinstruct("train.jsonl"), ranker, data_name="train.jsonl")
        priors.save("priors.json")
        ranked = PriorRanker(ranker, MemberPriors.load("priors.json"))
        ranked.rank("Say hi", ["hi", "hello"], members=["model-a", "model-b"]).best
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from blender_core.bridge import thread_twin
from blender_core.data import MixRecord, judge_metric
from blender_core.io import atomic_write_text, check_format, read_json_file
from blender_core.rankers.baselines import Pick, RankerSelector, record_prompt
from blender_core.ranking import (
    BaseRanker,
    Ranker,
    Ranking,
    rank_batch_with,
    validate_rank_inputs,
)

__all__ = [
    "PRIORS_FORMAT",
    "MemberPriors",
    "Members",
    "PriorRanker",
    "PriorSelector",
    "WithStrategy",
    "fit_logistic",
    "fit_priors",
]

PRIORS_FORMAT = "llm-blender-kit/member-priors@1"
"""The ``format`` field of a priors file."""

Members = str | Sequence[str] | None
"""The member(s) behind one candidate: a name, several (identical answers merged), or unknown."""


@dataclass(frozen=True)
class MemberPriors:
    """Per-member priors and the ranker's scale, in logit units of "beats".

    Attributes:
        priors: Member name -> additive prior (centred: 0 is the average member).
        scale: Weight of the ranker's score differences; ``None`` when fitted without a ranker
            (then the priors alone rank).
        neutral: The prior of a member the file does not know (0: the average member).
        metric: The judge score the pairs were labelled with.
        fitted_on: What the fit saw: data (name, sha256 of the record ids, records, pairs),
            ranker (its description and strategy), the settings and the fit's own numbers.
    """

    priors: Mapping[str, float]
    scale: float | None = None
    neutral: float = 0.0
    metric: str | None = None
    fitted_on: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in self.priors.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"member names must be non-empty strings, got {name!r}")
            if not math.isfinite(value):
                raise ValueError(f"the prior of {name!r} is not a finite number: {value!r}")
        if self.scale is not None and not math.isfinite(self.scale):
            raise ValueError(f"scale must be a finite number, got {self.scale!r}")
        if not math.isfinite(self.neutral):
            raise ValueError(f"neutral must be a finite number, got {self.neutral!r}")

    def prior(self, members: Members) -> float:
        """The prior of a candidate: its member's, the best of several, or the neutral one."""
        if members is None:
            return self.neutral
        if isinstance(members, str):
            return float(self.priors.get(members, self.neutral))
        values = [float(self.priors.get(m, self.neutral)) for m in members]
        return max(values) if values else self.neutral

    def combine(self, scores: Sequence[float] | None, members: Sequence[Members]) -> list[float]:
        """``scale * score + prior`` per candidate (the priors alone when ``scores`` is None)."""
        priors = [self.prior(m) for m in members]
        if scores is None:
            return priors
        if self.scale is None:
            raise ValueError(
                "these priors were fitted without a ranker (no scale): fit them with the ranker "
                "whose scores they should be added to, or use them alone"
            )
        if len(scores) != len(priors):
            raise ValueError(f"{len(scores)} scores for {len(priors)} candidates' members")
        return [self.scale * float(s) + p for s, p in zip(scores, priors, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (see :meth:`save`)."""
        return {
            "format": PRIORS_FORMAT,
            "metric": self.metric,
            "scale": self.scale,
            "neutral": self.neutral,
            "priors": dict(sorted(self.priors.items(), key=lambda kv: -kv[1])),
            "fitted_on": dict(self.fitted_on),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemberPriors:
        """Read :meth:`to_dict`'s form; a clear ``ValueError`` for anything else."""
        data = check_format(data, PRIORS_FORMAT, "member-priors")
        priors = data.get("priors")
        if not isinstance(priors, Mapping) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in priors.values()
        ):
            raise ValueError("'priors' must map member names to numbers")
        scale = data.get("scale")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int | float)):
            raise ValueError(f"'scale' must be a number or null, got {scale!r}")
        neutral = data.get("neutral", 0.0)
        if isinstance(neutral, bool) or not isinstance(neutral, int | float):
            raise ValueError(f"'neutral' must be a number, got {neutral!r}")
        return cls(
            priors={str(k): float(v) for k, v in priors.items()},
            scale=None if scale is None else float(scale),
            neutral=float(neutral),
            metric=data.get("metric"),
            fitted_on=dict(data.get("fitted_on") or {}),
        )

    def save(self, path: str | Path) -> Path:
        """Write the priors as JSON (atomically); returns the path."""
        target = Path(path)
        atomic_write_text(target, json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return target

    @classmethod
    def load(cls, path: str | Path) -> MemberPriors:
        """Read a file written by :meth:`save`."""
        return cls.from_dict(read_json_file(path, "priors file"))


def _ids_digest(records: Sequence[MixRecord]) -> str:
    digest = hashlib.sha256()
    for record in records:
        digest.update(str(record.id).encode("utf-8") + b"\n")
    return digest.hexdigest()


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    penalty: np.ndarray,
    *,
    offset: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-9,
) -> tuple[np.ndarray, int]:
    """Minimise ``sum log(1 + exp(-y_signed * (offset + x @ w))) + 0.5 * sum(penalty * w**2)``."""
    w = np.zeros(x.shape[1])
    sign = 2.0 * y - 1.0
    base = np.zeros(len(y)) if offset is None else offset

    def objective(v: np.ndarray) -> float:
        return float(
            np.logaddexp(0.0, -sign * (base + x @ v)).sum() + 0.5 * (penalty * v * v).sum()
        )

    current = objective(w)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        z = base + x @ w
        p = 1.0 / (1.0 + np.exp(-z))
        grad = x.T @ (p - y) + penalty * w
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + np.diag(penalty)
        hess += 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        rate = 1.0
        while rate > 1e-6:
            trial = w - rate * step
            value = objective(trial)
            if value <= current:
                break
            rate /= 2.0
        else:
            break
        w, improvement = trial, current - value
        current = value
        if improvement < tol * max(1.0, abs(current)):
            break
    return w, iterations


def fit_priors(
    records: Sequence[MixRecord],
    ranker: Ranker | None = None,
    *,
    metric: str | None = None,
    min_gap: float = 0.0,
    l2: float = 1.0,
    rankings: Sequence[Ranking] | None = None,
    strategy: str | None = None,
    data_name: str | None = None,
    ranker_name: str | None = None,
    batch_size: int = 16,
    show_progress: bool = False,
    fixed_priors: MemberPriors | None = None,
) -> MemberPriors:
    """Fit per-member priors (and the ranker's scale) on labelled MixInstruct records.

    Args:
        records: Labelled records; ``candidate.model`` names the member.
        ranker: The ranker whose scores the priors are added to; ``None`` fits priors alone.
        metric: The judge score that labels the pairs (default: the one every candidate has).
        min_gap: Pairs whose score gap is not larger are ties and skipped.
        l2: L2 penalty on the priors (the scale is not penalised): shrinks members seen in few
            pairs towards the neutral 0.
        rankings: The ranker's rankings of ``records``, if already computed (no ranking here).
        strategy: Passed to ``ranker.rank_batch(..., strategy=)`` (e.g. a PairRanker's); recorded.
        data_name: A name for the data (e.g. the file), recorded in :attr:`MemberPriors.fitted_on`.
        ranker_name: A description or spec of the ranker, recorded (default: its class name).
        batch_size: Records per ``rank_batch`` call.
        show_progress: A progress bar while ranking.
        fixed_priors: Keep these priors (e.g. fitted without a ranker on all labelled records)
            and fit only the ranker's scale on ``records`` (e.g. a held-out part the ranker never
            trained on): a few held-out records are enough for one number, not for a dozen
            priors. Needs a ranker or ``rankings``.

    Returns:
        The fitted priors; ``fitted_on`` records the data, the ranker and the fit's numbers.

    Raises:
        ValueError: No records, no untied pairs, bad settings, or rankings that do not match.
    """
    records = list(records)
    if not records:
        raise ValueError("no records to fit the priors on")
    if min_gap < 0:
        raise ValueError(f"min_gap must be >= 0, got {min_gap}")
    if not (l2 > 0 and math.isfinite(l2)):
        raise ValueError(f"l2 must be a positive number, got {l2}")
    metric = metric or judge_metric(records)
    if rankings is None and ranker is not None:
        used = ranker if strategy is None else WithStrategy(ranker, strategy)
        selector = RankerSelector(used, name="calibration ranking", batch_size=batch_size)
        selector.select(records, show_progress=show_progress)
        rankings = selector.rankings
    if rankings is not None:
        rankings = list(rankings)
        if len(rankings) != len(records):
            raise ValueError(f"{len(rankings)} rankings for {len(records)} records")
        for record, ranking in zip(records, rankings, strict=True):
            if len(ranking) != len(record.candidates):
                raise ValueError(
                    f"record {record.id!r}: ranking of {len(ranking)} candidates for "
                    f"{len(record.candidates)}"
                )
    if fixed_priors is not None and rankings is None:
        raise ValueError("fixed_priors: only the ranker's scale is fitted, so give a ranker")
    members = sorted({c.model for r in records for c in r.candidates})
    column = {m: k for k, m in enumerate(members)}
    with_scale = rankings is not None
    offset = 1 if with_scale else 0
    rows: list[np.ndarray] = []
    labels: list[float] = []
    pair_counts = dict.fromkeys(members, 0)
    for k, record in enumerate(records):
        scores = record.scores(metric)
        ranker_scores = rankings[k].scores if rankings is not None else None
        n = len(scores)
        for i in range(n):
            for j in range(i + 1, n):
                gap = scores[i] - scores[j]
                if abs(gap) <= min_gap:
                    continue
                mi, mj = record.candidates[i].model, record.candidates[j].model
                row = np.zeros(offset + len(members))
                if ranker_scores is not None:
                    row[0] = ranker_scores[i] - ranker_scores[j]
                row[offset + column[mi]] += 1.0
                row[offset + column[mj]] -= 1.0
                rows.append(row)
                labels.append(1.0 if gap > 0 else 0.0)
                pair_counts[mi] += 1
                pair_counts[mj] += 1
    if not rows:
        raise ValueError(f"no pairs with a {metric} gap above {min_gap}: nothing to fit")
    x = np.vstack(rows)
    y = np.asarray(labels)
    penalty = np.full(x.shape[1], float(l2))
    if with_scale:
        penalty[0] = 1e-6  # the scale is (practically) unpenalised
    if fixed_priors is not None:
        known = np.array([fixed_priors.prior(m) for m in members])
        prior_part = x[:, offset:] @ known
        w_scale, iterations = fit_logistic(x[:, :1], y, penalty[:1], offset=prior_part)
        w = np.concatenate([w_scale, known])
        z = x @ w
    else:
        w, iterations = fit_logistic(x, y, penalty)
        z = x @ w
    log_loss = float(np.logaddexp(0.0, -(2.0 * y - 1.0) * z).mean())
    accuracy = float(np.where(z == 0, 0.5, (z > 0) == (y > 0.5)).mean())
    fitted_on: dict[str, Any] = {
        "data": {
            "name": data_name,
            "records": len(records),
            "record_ids_sha256": _ids_digest(records),
        },
        "ranker": (ranker_name or (type(ranker).__name__ if ranker is not None else "precomputed"))
        if with_scale
        else None,
        "strategy": strategy if with_scale else None,
        "pairs": len(labels),
        "min_gap": min_gap,
        "l2": l2,
        "priors_fixed_from": (fixed_priors.fitted_on.get("data") if fixed_priors else None),
        "member_pairs": pair_counts,
        "fit": {"iterations": iterations, "log_loss": log_loss, "pairwise_accuracy": accuracy},
    }
    priors = {m: float(w[offset + column[m]]) for m in members}
    if fixed_priors is not None:
        priors = {**fixed_priors.priors, **priors}
    return MemberPriors(
        priors=priors,
        scale=float(w[0]) if with_scale else None,
        neutral=fixed_priors.neutral if fixed_priors is not None else 0.0,
        metric=metric,
        fitted_on=fitted_on,
    )


class WithStrategy(BaseRanker):
    """A ranker whose ``rank_batch`` always gets ``strategy=`` (e.g. a PairRanker's ``bubble``).

    Args:
        ranker: A ranker whose ``rank_batch`` takes ``strategy=``.
        strategy: The strategy every call uses.
    """

    def __init__(self, ranker: Ranker, strategy: str) -> None:
        self.ranker = ranker
        self.strategy = strategy

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        return rank_batch_with(self.ranker, instructions, candidate_lists, strategy=self.strategy)


def _check_members(
    members: Sequence[Sequence[Members]] | None, candidate_lists: Sequence[Sequence[str]]
) -> list[list[Members]]:
    if members is None:
        return [[None] * len(c) for c in candidate_lists]
    if isinstance(members, str) or len(members) != len(candidate_lists):
        raise ValueError(
            f"members must give one list per input ({len(candidate_lists)}), got {members!r}"
        )
    out = []
    for k, (names, cands) in enumerate(zip(members, candidate_lists, strict=True)):
        if isinstance(names, str) or len(names) != len(cands):
            raise ValueError(
                f"members of input {k} must name the member(s) of each of its {len(cands)} "
                f"candidates, got {names!r}"
            )
        out.append(list(names))
    return out


class PriorRanker(BaseRanker):
    """Any ranker plus member priors: ranks by ``scale * score + prior[member]``.

    Args:
        ranker: The ranker whose scores the priors were fitted with; ``None`` ranks by the priors
            alone (the "priors only" baseline).
        priors: A :class:`MemberPriors` or the path of a priors file.
        strategy: Passed to ``ranker.rank_batch(..., strategy=)`` unless a call gives its own
            (default: the strategy the priors were fitted with, if any).

    Without ``members`` every candidate gets the neutral prior, so the order is the ranker's.
    A candidate given by several members (identical answers merged) gets the best of their
    priors.

    Example:
        .. code-block:: python

            ranker = PriorRanker(PairRanker.from_pretrained("runs/pairrm"), "priors.json")
            ranker.rank("Say hi", ["hi", "hello"], members=["llama", "qwen"]).best
            Blender(generators, ranker=ranker)  # the Blender passes each answer's members
    """

    accepts_members: ClassVar[bool] = True
    """The Blender passes ``members=`` (who wrote each candidate) to rankers that say so."""

    def __init__(
        self,
        ranker: Ranker | None,
        priors: MemberPriors | str | Path,
        *,
        strategy: str | None = None,
    ) -> None:
        if not isinstance(priors, MemberPriors):
            priors = MemberPriors.load(priors)
        if ranker is not None:
            if not callable(getattr(ranker, "rank_batch", None)):
                raise TypeError(f"ranker must have rank_batch, got {type(ranker).__name__}")
            if priors.scale is None:
                raise ValueError(
                    "these priors were fitted without a ranker (no scale): fit them with this "
                    "ranker (fit_priors(records, ranker) or `blender calibrate --ranker ...`), or "
                    "pass ranker=None to rank by the priors alone"
                )
        self.ranker = ranker
        self.priors = priors
        fitted = priors.fitted_on.get("strategy") if ranker is not None else None
        self.strategy = strategy if strategy is not None else fitted

    def rank_batch(
        self,
        instructions: Sequence[str],
        candidate_lists: Sequence[Sequence[str]],
        *,
        members: Sequence[Sequence[Members]] | None = None,
        strategy: str | None = None,
    ) -> list[Ranking]:
        """Rank each list; ``members[k][i]`` names the member(s) of candidate ``i`` of input k."""
        validate_rank_inputs(instructions, candidate_lists)
        names = _check_members(members, candidate_lists)
        if self.ranker is None:
            return [
                Ranking.from_scores(self.priors.combine(None, m), strategy="priors") for m in names
            ]
        use = strategy if strategy is not None else self.strategy
        inner = rank_batch_with(self.ranker, instructions, candidate_lists, strategy=use)
        return self.rerank(inner, names)

    def rerank(
        self, rankings: Sequence[Ranking], members: Sequence[Sequence[Members]]
    ) -> list[Ranking]:
        """Add the priors to rankings the wrapped ranker already made."""
        if len(rankings) != len(members):
            raise ValueError(f"{len(rankings)} rankings for {len(members)} member lists")
        out = []
        for ranking, names in zip(rankings, members, strict=True):
            scores = None if self.ranker is None else list(ranking.scores)
            combined = self.priors.combine(scores, names)
            label = f"{ranking.strategy or 'ranker'}+priors" if scores is not None else "priors"
            out.append(Ranking.from_scores(combined, matrix=ranking.matrix, strategy=label))
        return out

    def rank(
        self,
        instruction: str,
        candidates: Sequence[str],
        *,
        members: Sequence[Members] | None = None,
        strategy: str | None = None,
    ) -> Ranking:
        """Rank ``candidates``; ``members[i]`` names the member(s) of candidate ``i``."""
        if isinstance(candidates, str):
            raise TypeError("candidates must be a list of strings, not a single string")
        batch = None if members is None else [members]
        return self.rank_batch([instruction], [candidates], members=batch, strategy=strategy)[0]

    # Built under its own name first: type checkers then take the twin's signature from
    # ``rank`` (``members``, ``strategy``) rather than from ``BaseRanker.arank``.
    _arank = thread_twin(rank, name="arank", doc="Async :meth:`rank`, in a worker thread.")
    arank = _arank

    def __repr__(self) -> str:
        inner = type(self.ranker).__name__ if self.ranker is not None else None
        return f"PriorRanker(ranker={inner}, members={len(self.priors.priors)})"


class PriorSelector:
    """An evaluation row: pick each record's best candidate by ranker + priors (or priors alone).

    Args:
        priors: The fitted priors.
        base: A :class:`~blender_core.rankers.baselines.RankerSelector` of the ranker the priors
            were fitted with (its rankings are reused when it already ranked the same records,
            e.g. as an earlier row), or ``None`` for the priors alone.
        name: The row name (default ``"priors only"`` / ``"ranker + priors"``).
    """

    def __init__(
        self,
        priors: MemberPriors,
        base: RankerSelector | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self.priors = priors
        self.base = base
        self.name = name or ("priors only" if base is None else "ranker + priors")
        self.prior_ranker = PriorRanker(None if base is None else base.ranker, priors)
        self.rankings: list[Ranking] = []

    def select(self, records: Sequence[MixRecord], *, show_progress: bool = False) -> list[Pick]:
        members: list[list[Members]] = [[c.model for c in r.candidates] for r in records]
        if self.base is None:
            self.rankings = self.prior_ranker.rank_batch(
                [record_prompt(r) for r in records], [r.texts for r in records], members=members
            )
        else:
            if getattr(self.base, "ranked_for", None) is not records or len(
                self.base.rankings
            ) != len(records):
                self.base.select(records, show_progress=show_progress)
            self.rankings = self.prior_ranker.rerank(self.base.rankings, members)
        return [{ranking.best: 1.0} for ranking in self.rankings]
