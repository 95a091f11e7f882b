"""Helpers shared by the evaluation tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from blender_core.evaluation.metrics import ReferenceMetric

__all__ = ["LengthRatio"]


class LengthRatio(ReferenceMetric):
    """A toy metric that records what it was asked to compute."""

    name = "ratio"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.calls: list[list[tuple[str, str]]] = []

    def config(self) -> Mapping[str, Any]:
        return {"metric": self.name}

    def _compute(
        self, candidates: Sequence[str], references: Sequence[str], *, show_progress: bool
    ) -> list[float]:
        self.calls.append(list(zip(candidates, references, strict=True)))
        return [len(c) / max(1, len(r)) for c, r in zip(candidates, references, strict=True)]
