"""The ranker's span: the core pipeline's ranking call as a LlamaIndex instrumentation span.

The span is named for the ranker (``"<Ranker>.rank-<uuid>"``), a child of the active span (the
LLM's, the synthesizer's), with the :class:`~blender_core.blend.RankStep` (ranker, N, strategy,
top-K, passes) as its bound arguments and tags; a :class:`RankEndEvent` carries the step and the
ranking's order.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.base import BaseEvent
from llama_index.core.instrumentation.span import active_span_id

from blender_core.blend import RankStep
from blender_core.ranking import Ranking

__all__ = ["RankEndEvent", "trace_ranking"]

dispatcher = get_dispatcher(__name__)


class RankEndEvent(BaseEvent):
    """The ranker ranked the candidates of a blend (emitted inside the ranker's span).

    Args:
        ranker: The ranker's name.
        n: Distinct candidates ranked.
        strategy: The strategy asked for (``None``: the ranker's default).
        top_k: How many of the best go to the fuser.
        passes: Pair comparisons made (a PairRanker), else ``None``.
        order: Candidate indices, best first.
    """

    ranker: str
    n: int
    strategy: str | None = None
    top_k: int
    passes: int | None = None
    order: list[int]

    @classmethod
    def class_name(cls) -> str:
        return "RankEndEvent"


def _rank(ranker: str, n: int, strategy: str | None, top_k: int, passes: int | None) -> None:
    """The signature the span's bound arguments follow (the step's fields)."""


class _RankerSpan:
    """Enter, exit or drop one ranker span (the dispatcher's public span calls)."""

    def __init__(self, step: RankStep) -> None:
        self.fields: dict[str, Any] = step.to_dict()
        self.bound = inspect.signature(_rank).bind(**self.fields)
        self.id_ = f"{step.ranker}.rank-{uuid.uuid4()}"
        self.token = active_span_id.set(self.id_)
        parent = None if self.token.old_value is self.token.MISSING else self.token.old_value
        dispatcher.span_enter(
            id_=self.id_, bound_args=self.bound, parent_id=parent, tags=self.fields
        )

    def exit(self, ranking: Ranking) -> Ranking:
        try:
            dispatcher.event(RankEndEvent(**self.fields, order=list(ranking.order)))
            dispatcher.span_exit(id_=self.id_, bound_args=self.bound, result=ranking)
        finally:
            active_span_id.reset(self.token)
        return ranking

    def drop(self, exc: BaseException) -> None:
        try:
            dispatcher.span_drop(id_=self.id_, bound_args=self.bound, err=exc)
        finally:
            active_span_id.reset(self.token)


async def trace_ranking(step: RankStep, rank: Callable[[], Awaitable[Ranking]]) -> Ranking:
    """The core pipeline's rank tracer for LlamaIndex: ``rank()`` inside the ranker's span."""
    span = _RankerSpan(step)
    try:
        ranking = await rank()
    except BaseException as exc:
        span.drop(exc)
        raise
    return span.exit(ranking)
