"""Training pairs for a PairRanker: which candidates of an instruction are compared.

The LLM-Blender recipe: drop duplicate candidates, then take a few pairs per instruction
(``random``: ``num_pairs`` random pairs out of the C(n, 2); ``top-bottom``: the i-th best
against the i-th worst; ``all``: every pair; ``informative``: ``num_pairs`` pairs drawn with
probability growing with the score gap and doubled for pairs with one of the two best
candidates, the decisions that choose the top-1), and swap each pair's order with probability 0.5 so
that the model cannot learn a position bias.

Example:
    .. code-block:: python

        import random
        from blender_core.training.pairs import sample_pairs

        rng = random.Random(0)
        sample_pairs([0.9, 0.1, 0.5, 0.1], mode="random", num_pairs=2, rng=rng)
        # e.g. [(2, 1), (0, 3)]: candidate indices (a, b) of each pair
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from blender_core.data import MixRecord

__all__ = [
    "PAIR_MODES",
    "CandidatePair",
    "PairMode",
    "build_pairs",
    "record_scores",
    "sample_pairs",
    "unique_candidate_indices",
]

PairMode = Literal["random", "top-bottom", "all", "informative"]
PAIR_MODES: tuple[str, ...] = ("random", "top-bottom", "all", "informative")

TOP_BONUS = 2.0
"""``informative`` sampling: weight factor of a pair that includes one of the two best."""


@dataclass(frozen=True)
class CandidatePair:
    """One ordered training pair of a record: candidate ``a`` (left) against ``b`` (right).

    Attributes:
        record_index: Position of the record in the list the pairs were built from.
        a: Index of the left candidate in ``record.candidates``.
        b: Index of the right candidate.
        scores_a: The left candidate's score for each metric (task).
        scores_b: The right candidate's score for each metric.
    """

    record_index: int
    a: int
    b: int
    scores_a: tuple[float, ...]
    scores_b: tuple[float, ...]


def unique_candidate_indices(texts: Sequence[str]) -> list[int]:
    """Indices of the first occurrence of each distinct text (exact match), in input order."""
    seen: set[str] = set()
    keep = []
    for i, text in enumerate(texts):
        if text not in seen:
            seen.add(text)
            keep.append(i)
    return keep


def _check_mode(mode: str, num_pairs: int) -> None:
    if mode not in PAIR_MODES:
        raise ValueError(f"unknown pair mode {mode!r}; choose one of {', '.join(PAIR_MODES)}")
    if mode != "all" and num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")


def sample_pairs(
    scores: Sequence[float],
    *,
    mode: str = "random",
    num_pairs: int = 5,
    rng: random.Random,
    candidates: Sequence[int] | None = None,
    include_ties: bool = False,
    min_gap: float = 0.0,
    swap: bool = True,
) -> list[tuple[int, int]]:
    """Choose the ordered pairs ``(a, b)`` of candidate indices to train on for one instruction.

    Args:
        scores: One score per candidate (higher is better).
        mode: ``"random"`` (``num_pairs`` random pairs out of all eligible ones), ``"top-bottom"``
            (the i-th best against the i-th worst, i < ``num_pairs``, each candidate used once),
            ``"all"`` (every eligible pair) or ``"informative"`` (``num_pairs`` eligible pairs
            drawn without replacement, each with weight ``gap x (2 if it has one of the two
            best candidates else 1)``: large gaps and near-the-top decisions first).
        num_pairs: Pairs per instruction for ``random`` and ``top-bottom``.
        rng: The random generator (seeded by the caller) for sampling and swapping.
        candidates: The candidate indices to use (e.g. after dropping duplicates); default all.
        include_ties: Keep pairs whose score gap is ``<= min_gap`` (they carry no signal for the
            instructgpt loss, so by default they are skipped rather than wasting compute).
        min_gap: Pairs whose absolute score gap is not larger than this count as ties. With a
            continuous judge probability, gaps like 1e-7 vs 2e-7 are noise, not preference.
        swap: Swap each pair's order with probability 0.5 (else the better one comes first).

    Returns:
        Ordered pairs of candidate indices; without swapping, ``a`` is the better candidate.
    """
    _check_mode(mode, num_pairs)
    if min_gap < 0:
        raise ValueError(f"min_gap must be >= 0, got {min_gap}")
    pool = list(range(len(scores))) if candidates is None else list(candidates)
    for i in pool:
        if not 0 <= i < len(scores):
            raise ValueError(f"candidate index {i} out of range for {len(scores)} scores")
    # Best first; equal scores keep input order so that sampling is deterministic.
    ranked = sorted(pool, key=lambda i: (-scores[i], i))

    def eligible(i: int, j: int) -> bool:
        return include_ties or abs(scores[i] - scores[j]) > min_gap

    pairs: list[tuple[int, int]]
    if mode == "top-bottom":
        pairs = []
        for k in range(min(num_pairs, len(ranked) // 2)):
            better, worse = ranked[k], ranked[len(ranked) - 1 - k]
            if eligible(better, worse):
                pairs.append((better, worse))
    else:
        all_pairs = [
            (ranked[x], ranked[y])
            for x in range(len(ranked))
            for y in range(x + 1, len(ranked))
            if eligible(ranked[x], ranked[y])
        ]
        if mode == "random" and len(all_pairs) > num_pairs:
            pairs = rng.sample(all_pairs, num_pairs)
        elif mode == "informative" and len(all_pairs) > num_pairs:
            top = set(ranked[:2])
            keyed = []
            for a, b in all_pairs:
                weight = abs(scores[a] - scores[b]) * (TOP_BONUS if a in top or b in top else 1.0)
                # Efraimidis-Spirakis: the num_pairs largest u^(1/w) are a weighted sample.
                u = rng.random()
                keyed.append((u ** (1.0 / weight) if weight > 0 else 0.0, a, b))
            keyed.sort(key=lambda t: -t[0])
            pairs = [(a, b) for _, a, b in keyed[:num_pairs]]
        else:
            pairs = all_pairs
    if swap:
        pairs = [(b, a) if rng.random() < 0.5 else (a, b) for a, b in pairs]
    return pairs


def record_scores(record: MixRecord, metrics: Sequence[str]) -> list[tuple[float, ...]]:
    """Each candidate's scores for ``metrics`` (one tuple per candidate); clear error if missing."""
    if not metrics:
        raise ValueError("at least one metric is needed")
    per_metric = [record.scores(m) for m in metrics]
    return [tuple(values) for values in zip(*per_metric, strict=True)]


def build_pairs(
    records: Sequence[MixRecord],
    metrics: Sequence[str],
    *,
    mode: str = "random",
    num_pairs: int = 5,
    seed: int = 0,
    include_ties: bool = False,
    min_gap: float = 0.0,
    swap: bool = True,
    dedupe: bool = True,
) -> list[CandidatePair]:
    """The training pairs of all records, reproducible from ``seed``.

    Candidates with the same text as an earlier one are dropped first (``dedupe``). Pairs are
    chosen on the mean of the metrics (the usual case is a single metric) and carry every
    metric's scores, one per task of the ranker.

    Raises:
        KeyError: A candidate lacks one of the metrics (names the record and the candidate).
        ValueError: Unknown mode or bad ``num_pairs`` / ``min_gap``.
    """
    _check_mode(mode, num_pairs)
    rng = random.Random(seed)
    out: list[CandidatePair] = []
    for index, record in enumerate(records):
        scores = record_scores(record, metrics)
        order_scores = [sum(s) / len(s) for s in scores]
        keep = unique_candidate_indices(record.texts) if dedupe else None
        for a, b in sample_pairs(
            order_scores,
            mode=mode,
            num_pairs=num_pairs,
            rng=rng,
            candidates=keep,
            include_ties=include_ties,
            min_gap=min_gap,
            swap=swap,
        ):
            out.append(CandidatePair(index, a, b, scores[a], scores[b]))
    return out
