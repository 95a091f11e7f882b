"""The metric interface: reference-based scores computed in batches and cached by content.

A :class:`ReferenceMetric` scores a candidate text against a reference text (higher is better).
Subclasses implement :meth:`ReferenceMetric._compute` on the pairs that are not cached yet;
:meth:`ReferenceMetric.score_batch` deduplicates, looks up the cache, computes the rest in one call
and fills the cache.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from blender_core.evaluation.cache import ScoreCache, content_key

__all__ = ["ReferenceMetric", "check_pairs"]


def check_pairs(candidates: Sequence[str], references: Sequence[str]) -> None:
    """Raise a clear ``TypeError``/``ValueError`` unless both are equally long lists of strings."""
    for name, texts in (("candidates", candidates), ("references", references)):
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"{name} must be a list of strings, got {type(texts).__name__}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{name}[{i}] must be a string, got {type(text).__name__}")
    if len(candidates) != len(references):
        raise ValueError(
            f"candidates ({len(candidates)}) and references ({len(references)}) "
            "must have the same length"
        )


class ReferenceMetric(ABC):
    """Base class of metrics that score a candidate against a reference (higher is better).

    Args:
        cache: A :class:`ScoreCache`, a JSONL path for one, or ``None`` for an in-memory cache.

    Subclasses set :attr:`name`, implement :meth:`config` (everything that changes the score:
    it is part of the cache key) and :meth:`_compute`.
    """

    name: str = "metric"
    #: How the table prints it: multiply by this before formatting.
    display_scale: float = 1.0

    def __init__(self, *, cache: ScoreCache | str | Path | None = None) -> None:
        self.cache = cache if isinstance(cache, ScoreCache) else ScoreCache(cache)

    @abstractmethod
    def config(self) -> Mapping[str, Any]:
        """The settings that determine the score (metric name, model, layers, ...)."""

    @abstractmethod
    def _compute(
        self, candidates: Sequence[str], references: Sequence[str], *, show_progress: bool
    ) -> list[float]:
        """Score the pairs (all uncached and distinct)."""

    def score(self, candidate: str, reference: str) -> float:
        """Score one candidate against one reference."""
        return self.score_batch([candidate], [reference])[0]

    def score_batch(
        self,
        candidates: Sequence[str],
        references: Sequence[str],
        *,
        show_progress: bool = False,
    ) -> list[float]:
        """Score each candidate against the reference at the same position.

        Pairs already in the cache (by content) are not recomputed; repeated pairs are computed
        once.
        """
        check_pairs(candidates, references)
        config = self.config()
        keys = [content_key(config, c, r) for c, r in zip(candidates, references, strict=True)]
        todo: dict[str, tuple[str, str]] = {}
        for key, cand, ref in zip(keys, candidates, references, strict=True):
            if key not in self.cache and key not in todo:
                todo[key] = (cand, ref)
        if todo:
            pairs = list(todo.values())
            values = self._compute(
                [c for c, _ in pairs], [r for _, r in pairs], show_progress=show_progress
            )
            if len(values) != len(pairs):
                raise RuntimeError(
                    f"{type(self).__name__} returned {len(values)} scores for {len(pairs)} pairs"
                )
            self.cache.update(dict(zip(todo, (float(v) for v in values), strict=True)))
        out = []
        for key in keys:
            value = self.cache.get(key)
            assert value is not None
            out.append(value)
        return out

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "metric")
        return f"{type(self).__name__}({settings})"
