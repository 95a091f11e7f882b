"""The core pipeline's steps as LlamaIndex instrumentation spans: rankings and member stages.

A ranking's span is named for the ranker (``"<Ranker>.rank-<uuid>"``), a child of the active span
(the LLM's, the synthesizer's), with the :class:`~blender_core.blend.RankStep` (ranker, N,
strategy, top-K, passes) as its bound arguments and tags; a :class:`RankEndEvent` carries the
step and the ranking's order.

A stage of member calls (:mod:`blender_core.staging`: the members a policy calls at once) has a
span named for the policy (``"<policy>.stage-<uuid>"``, e.g. ``"cascade.stage-..."``), a child of
the LLM's span and the parent of the members' own spans, with the
:class:`~blender_core.staging.StageStep` (stage index, members, policy, hedged) as its bound
arguments and tags; a :class:`StageEndEvent` adds who answered and who failed.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.base import BaseEvent
from llama_index.core.instrumentation.span import active_span_id

from blender_core.blend import RankStep
from blender_core.members import Outcome
from blender_core.ranking import Ranking
from blender_core.staging import StageStep

T = TypeVar("T")

__all__ = ["RankEndEvent", "StageEndEvent", "trace_ranking", "trace_stage"]

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


class StageEndEvent(BaseEvent):
    """A stage of member calls ended (emitted inside the stage's span).

    Args:
        stage: The stage's number, from 0.
        members: The members called in it.
        policy: The policy's name (``all``, ``cascade``, ``router``, ...).
        hedged: Whether it was started early, while the stage before still ran.
        answered: The members that answered.
        failed: The members that failed or timed out.
    """

    stage: int
    members: list[str]
    policy: str
    hedged: bool = False
    answered: list[str]
    failed: list[str]

    @classmethod
    def class_name(cls) -> str:
        return "StageEndEvent"


def _stage(stage: int, members: list[str], policy: str, hedged: bool) -> None:
    """The signature a stage span's bound arguments follow (the step's fields)."""


class _Span:
    """Enter, exit or drop one span (the dispatcher's public span calls), with ``fields`` as
    its bound arguments (following ``signature``) and tags."""

    def __init__(self, id_: str, fields: dict[str, Any], signature: Callable[..., None]) -> None:
        self.fields = fields
        self.bound = inspect.signature(signature).bind(**fields)
        self.id_ = id_
        self.token = active_span_id.set(self.id_)
        parent = None if self.token.old_value is self.token.MISSING else self.token.old_value
        dispatcher.span_enter(
            id_=self.id_, bound_args=self.bound, parent_id=parent, tags=self.fields
        )

    def exit(self, event: BaseEvent, result: Any) -> None:
        try:
            dispatcher.event(event)
            dispatcher.span_exit(id_=self.id_, bound_args=self.bound, result=result)
        finally:
            active_span_id.reset(self.token)

    def drop(self, exc: BaseException) -> None:
        try:
            dispatcher.span_drop(id_=self.id_, bound_args=self.bound, err=exc)
        finally:
            active_span_id.reset(self.token)


async def _in_span(
    name: str,
    fields: dict[str, Any],
    signature: Callable[..., None],
    work: Callable[[], Awaitable[T]],
    end_event: Callable[[T], BaseEvent],
) -> T:
    """``work()`` inside the span ``<name>-<uuid>``; ``end_event(result)`` emitted in it at the
    end, the span dropped when ``work`` raises."""
    span = _Span(f"{name}-{uuid.uuid4()}", fields, signature)
    try:
        result = await work()
    except BaseException as exc:
        span.drop(exc)
        raise
    span.exit(end_event(result), result)
    return result


async def trace_ranking(step: RankStep, rank: Callable[[], Awaitable[Ranking]]) -> Ranking:
    """The core pipeline's rank tracer for LlamaIndex: ``rank()`` inside the ranker's span."""
    fields = step.to_dict()
    return await _in_span(
        f"{step.ranker}.rank",
        fields,
        _rank,
        rank,
        lambda ranking: RankEndEvent(**fields, order=list(ranking.order)),
    )


async def trace_stage(
    step: StageStep, run: Callable[[], Awaitable[list[Outcome[Any]]]]
) -> list[Outcome[Any]]:
    """The core's stage tracer for LlamaIndex (:data:`~blender_core.staging.StageTracer`):
    ``run()`` (the stage's member calls) inside the stage's span, so that the members' spans
    nest under it."""
    fields = step.to_dict()

    def end(outcomes: list[Outcome[Any]]) -> StageEndEvent:
        answered = [o.name for o in outcomes if o.failure is None]
        failed = [o.name for o in outcomes if o.failure is not None]
        return StageEndEvent(**fields, answered=answered, failed=failed)

    # "-" ends a span's name in LlamaIndex span ids ("<name>-<uuid>")
    return await _in_span(f"{step.policy.replace('-', '_')}.stage", fields, _stage, run, end)
