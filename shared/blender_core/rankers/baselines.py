"""Baseline pickers for evaluation: longest, each single model, the oracle, random (expected).

:class:`LongestRanker` is an ordinary :class:`~blender_core.ranking.Ranker` (it needs only the
texts). The others need what a ranker never sees (which model wrote each candidate, the judge's
stored scores), so they are *selectors*: they read whole MixInstruct records and return, per
record, a pick as weights over candidate indices. A deterministic pick has one weight of 1; the
random baseline's expected value is the uniform distribution (so its table row is an exact
expectation, not one random draw). :class:`RankerSelector` turns any ranker into a selector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from blender_core.data import MixRecord
from blender_core.ranking import BaseRanker, Ranker, Ranking, validate_rank_inputs

__all__ = [
    "FixedModelSelector",
    "LongestRanker",
    "OracleSelector",
    "Pick",
    "RankerSelector",
    "Selector",
    "UniformSelector",
    "best_single_model",
    "model_means",
    "record_prompt",
]

Pick = dict[int, float]
"""Weights over a record's candidate indices that sum to 1 (``{best: 1.0}`` for a plain pick)."""


def record_prompt(record: MixRecord) -> str:
    """The instruction a ranker sees: the instruction, plus a blank line and the input if any."""
    return record.instruction + ("\n\n" + record.input if record.input else "")


@runtime_checkable
class Selector(Protocol):
    """Picks one candidate (or a distribution over candidates) per MixInstruct record."""

    name: str

    def select(
        self, records: Sequence[MixRecord], *, show_progress: bool = False
    ) -> list[Pick]: ...


class LongestRanker(BaseRanker):
    """Ranks candidates by length in characters, longest first (ties: input order).

    Example:
        .. code-block:: python

            LongestRanker().rank("Say hi", ["hi", "hello there", "hey"]).best  # 1
    """

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        validate_rank_inputs(instructions, candidate_lists)
        return [
            Ranking.from_scores([float(len(c)) for c in candidates], strategy="longest")
            for candidates in candidate_lists
        ]


class RankerSelector:
    """Picks each record's best candidate by any :class:`~blender_core.ranking.Ranker`.

    Args:
        ranker: The ranker; it sees :func:`record_prompt` and the candidate texts.
        name: The row name in tables (default: the ranker's class name).
        batch_size: Records per ``rank_batch`` call (progress is reported per batch).

    Example:
        .. code-block:: python

            selector = RankerSelector(LongestRanker(), name="longest")
            picks = selector.select(records)  # [{3: 1.0}, {0: 1.0}, ...]
    """

    def __init__(self, ranker: Ranker, *, name: str | None = None, batch_size: int = 16) -> None:
        if not callable(getattr(ranker, "rank_batch", None)):
            raise TypeError(f"ranker must have rank_batch, got {type(ranker).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.ranker = ranker
        self.name = name or type(ranker).__name__
        self.batch_size = batch_size
        self.rankings: list[Ranking] = []
        self.ranked_for: Sequence[MixRecord] | None = None

    def select(self, records: Sequence[MixRecord], *, show_progress: bool = False) -> list[Pick]:
        """Rank every record's candidates; the rankings stay in :attr:`rankings`.

        :attr:`ranked_for` keeps the records they are for (rows that reuse the rankings, such
        as "ranker + priors", check it by identity).
        """
        from tqdm.auto import tqdm

        rankings: list[Ranking] = []
        with tqdm(total=len(records), desc=self.name, disable=not show_progress) as bar:
            for start in range(0, len(records), self.batch_size):
                chunk = records[start : start + self.batch_size]
                got = self.ranker.rank_batch(
                    [record_prompt(r) for r in chunk], [r.texts for r in chunk]
                )
                if len(got) != len(chunk):
                    raise RuntimeError(
                        f"{self.name}: rank_batch returned {len(got)} rankings for "
                        f"{len(chunk)} inputs"
                    )
                rankings.extend(got)
                bar.update(len(chunk))
        self.rankings = rankings
        self.ranked_for = records
        return [{ranking.best: 1.0} for ranking in rankings]


class OracleSelector:
    """Picks the candidate with the best stored score ``metric`` (ties: the first).

    Args:
        metric: A key of the candidates' ``scores`` (a stored judge score, or a computed metric
            that the evaluation runner wrote into the records).
        name: The row name (default ``"oracle (<metric>)"``).
    """

    def __init__(self, metric: str, *, name: str | None = None) -> None:
        self.metric = metric
        self.name = name or f"oracle ({metric})"

    def select(self, records: Sequence[MixRecord], *, show_progress: bool = False) -> list[Pick]:
        picks = []
        for record in records:
            scores = record.scores(self.metric)
            picks.append({scores.index(max(scores)): 1.0})
        return picks


class FixedModelSelector:
    """Always picks the answer of one model (the "single model" rows).

    Args:
        model: The model name, as in the candidates' ``model`` field.
        name: The row name (default: the model name).
    """

    def __init__(self, model: str, *, name: str | None = None) -> None:
        self.model = model
        self.name = name or model

    def select(self, records: Sequence[MixRecord], *, show_progress: bool = False) -> list[Pick]:
        picks = []
        for record in records:
            models = record.models
            if self.model not in models:
                raise KeyError(
                    f"record {record.id!r} has no candidate from model {self.model!r} "
                    f"(has {models})"
                )
            picks.append({models.index(self.model): 1.0})
        return picks


class UniformSelector:
    """The random baseline as an exact expectation: every candidate with weight ``1/N``."""

    def __init__(self, *, name: str = "random (expected)") -> None:
        self.name = name

    def select(self, records: Sequence[MixRecord], *, show_progress: bool = False) -> list[Pick]:
        return [{i: 1.0 / len(r.candidates) for i in range(len(r.candidates))} for r in records]


def model_means(records: Sequence[MixRecord], metric: str) -> dict[str, float]:
    """Each model's mean stored score ``metric`` over the records (models in first-seen order)."""
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for record in records:
        for candidate, score in zip(record.candidates, record.scores(metric), strict=True):
            totals[candidate.model] = totals.get(candidate.model, 0.0) + score
            counts[candidate.model] = counts.get(candidate.model, 0) + 1
    return {model: totals[model] / counts[model] for model in totals}


def best_single_model(records: Sequence[MixRecord], metric: str) -> str:
    """The model with the best mean stored score ``metric`` (first on ties)."""
    if not records:
        raise ValueError("no records to choose the best single model on")
    means: Mapping[str, float] = model_means(records, metric)
    return max(means, key=lambda m: means[m])
