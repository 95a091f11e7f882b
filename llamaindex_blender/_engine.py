"""The LlamaIndex side of the core engine: a LlamaIndex-LLM fuser, spans, the response metadata.

Everything beyond translating types is the core's :class:`blender_core.engine.Engine` (lazy
loading, ranking, fusion, tool-call selection, the sync bridge, the metadata schema).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from blender_core.engine import Engine
from blender_core.members import MemberResults
from llamaindex_blender._adapters import to_core_fuser
from llamaindex_blender._tracing import trace_ranking, trace_stage

if TYPE_CHECKING:
    from blender_core.blend import BlendResult, BlendStreamEvent

__all__ = ["aprimed", "blend_info", "make_engine", "primed", "with_texts"]


def make_engine(*, ranker: Any, fuser: Any, **options: Any) -> Engine:
    """The core engine of a LlamaIndex component: a LlamaIndex LLM as the fuser becomes a core
    generator; each ranking runs in a LlamaIndex span (``RankEndEvent``), and so does each
    stage of member calls (``StageEndEvent``; :meth:`Engine.acall_members
    <blender_core.engine.Engine.acall_members>`). Nothing loads here."""
    return Engine(
        ranker=ranker,
        fuser=to_core_fuser(fuser),
        rank_tracer=trace_ranking,
        stage_tracer=trace_stage,
        **options,
    )


def with_texts(
    candidates: Mapping[str, str], results: MemberResults[Any] | None
) -> MemberResults[str]:
    """``candidates`` with the failures, latencies and queueing of the members' run."""
    if results is None:
        return MemberResults(outputs=dict(candidates))
    return MemberResults(
        outputs=dict(candidates),
        failures=list(results.failures),
        latencies=dict(results.latencies),
        queueing=dict(results.queueing),
    )


def blend_info(result: BlendResult) -> dict[str, Any]:
    """The blend metadata of a LlamaIndex response (``additional_kwargs``,
    ``metadata["blend"]``): :meth:`~blender_core.blend.BlendResult.to_dict` (``blend_mode``
    ``"text"`` or ``"tool_calls"`` included), the schema LangChain answers carry too."""
    return result.to_dict()


def primed(events: Iterator[BlendStreamEvent]) -> Iterator[BlendStreamEvent]:
    """``events`` with the first one taken now: the members' answers are ranked (and an error
    raised) in the caller's span and call, not on the consumer's first ``next``."""
    return itertools.chain([next(events)], events)


async def aprimed(events: AsyncIterator[BlendStreamEvent]) -> AsyncIterator[BlendStreamEvent]:
    """Async :func:`primed`."""
    first = await anext(events)

    async def chained() -> AsyncIterator[BlendStreamEvent]:
        yield first
        async for event in events:
            yield event

    return chained()
