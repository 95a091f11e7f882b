"""Ranker evaluation numbers: pairwise accuracy, mean metric of the top-1 pick, baselines.

Pure Python (no torch), so that reports and tests can use them anywhere.

Example:
    .. code-block:: python

        from blender_core.training.metrics import pairwise_accuracy

        pairwise_accuracy([1.2, -0.3, 0.5], [0.9, 0.1, 0.5], [0.1, 0.8, 0.5])
        # 1.0: the tied third pair does not count
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from blender_core.data import MixRecord

__all__ = [
    "mean",
    "pairwise_accuracy",
    "selection_baselines",
    "top1_mean",
]


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean; ``nan`` for no values."""
    return sum(values) / len(values) if values else float("nan")


def pairwise_accuracy(
    logits: Sequence[float], scores_a: Sequence[float], scores_b: Sequence[float]
) -> float:
    """Share of pairs with different scores whose logit has the right sign.

    ``logits[k] > 0`` means the model prefers candidate a of pair k. Tied pairs are left out;
    a zero logit on an untied pair counts as half right. ``nan`` when no pair is untied.
    """
    if not len(logits) == len(scores_a) == len(scores_b):
        raise ValueError(
            f"logits ({len(logits)}), scores_a ({len(scores_a)}) and scores_b "
            f"({len(scores_b)}) must have the same length"
        )
    right = 0.0
    counted = 0
    for logit, sa, sb in zip(logits, scores_a, scores_b, strict=True):
        if sa == sb:
            continue
        counted += 1
        if logit == 0:
            right += 0.5
        elif (logit > 0) == (sa > sb):
            right += 1.0
    return right / counted if counted else float("nan")


def top1_mean(records: Sequence[MixRecord], picks: Sequence[int], metric: str) -> float:
    """Mean ``metric`` of the picked candidate of each record (``picks[i]`` indexes record i)."""
    if len(records) != len(picks):
        raise ValueError(f"records ({len(records)}) and picks ({len(picks)}) differ in length")
    return mean([record.scores(metric)[pick] for record, pick in zip(records, picks, strict=True)])


def selection_baselines(
    records: Sequence[MixRecord],
    metric: str,
    *,
    train_records: Sequence[MixRecord] | None = None,
) -> dict[str, Any]:
    """Mean ``metric`` of simple selection rules on ``records`` (the numbers a ranker must beat).

    Returns a dict with ``best_single`` (the model with the best mean on ``train_records``, or
    on ``records`` when none are given; ``best_single_model`` names it), ``longest`` (longest
    text, first on ties), ``random`` (the exact expected value of a uniform pick) and
    ``oracle`` (best candidate). Records where the chosen model did not answer count the
    record's mean instead.
    """
    if not records:
        raise ValueError("no records to compute baselines on")
    chooser = train_records if train_records else records
    totals: dict[str, list[float]] = {}
    for record in chooser:
        for model, score in zip(record.models, record.scores(metric), strict=True):
            totals.setdefault(model, []).append(score)
    best_model = max(sorted(totals), key=lambda m: mean(totals[m]))
    best, longest, rand, oracle = [], [], [], []
    for record in records:
        scores = record.scores(metric)
        models = record.models
        rand.append(mean(scores))
        oracle.append(max(scores))
        lengths = [len(t) for t in record.texts]
        longest.append(scores[lengths.index(max(lengths))])
        best.append(scores[models.index(best_model)] if best_model in models else mean(scores))
    return {
        "metric": metric,
        "records": len(records),
        "best_single_model": best_model,
        "best_single": mean(best),
        "longest": mean(longest),
        "random": mean(rand),
        "oracle": mean(oracle),
    }
