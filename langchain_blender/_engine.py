"""The LangChain side of the core engine: translate the members' messages, trace in LangChain.

Everything beyond translating types is the core's :class:`blender_core.engine.Engine`: lazy
loading, ranking, fusion, tool-call selection (:mod:`blender_core.tool_calls`), the sync bridge
and the metadata schema. This module turns members' messages into candidates or
:class:`~blender_core.tool_calls.ToolProposal` s, runs the ranker and the fuser under the
ensemble's LangChain run (context variables, see ``_callbacks``), and turns the result back into
an ``AIMessage``.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.messages import AIMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.runnables import Runnable, RunnableConfig

from blender_core.blend import BlendResult, BlendStreamEvent
from blender_core.bridge import iterate_sync, run_sync
from blender_core.engine import Engine as CoreEngine
from blender_core.members import MemberResults
from blender_core.ranking import Ranker
from blender_core.staging import CallReport
from blender_core.tool_calls import ToolCall, ToolProposal
from langchain_blender._adapters import (
    LangChainGenerator,
    has_tool_calls,
    message_text,
    set_call_config,
)
from langchain_blender._callbacks import (
    FUSER_TAG,
    ChildCallbacks,
    UsageCollector,
    child_config,
    set_rank_callbacks,
    trace_ranking,
    trace_stage,
    with_handler,
)
from langchain_blender._members import MemberOutcome

__all__ = ["Blended", "Engine", "answer_text", "answer_usage", "blend_metadata", "to_proposal"]

T = TypeVar("T")


@dataclass
class Blended:
    """The ensemble's answer: the message to return and what the caller should report."""

    message: AIMessage
    metadata: dict[str, Any]
    usage: UsageMetadata | None = None
    result: BlendResult | None = field(default=None, repr=False)


def blend_metadata(result: BlendResult) -> dict[str, Any]:
    """The blend metadata of a LangChain answer: :meth:`BlendResult.to_dict` (``blend_mode``
    included; the schema LlamaIndex answers and the gateway's ``blend`` object carry too).

    ``ranking["texts"]`` and ``ranking["models"]`` repeat the top-level ``texts`` and
    ``models_by_text`` for one release (deprecated: read the top-level keys).
    """
    metadata = result.to_dict()
    metadata["ranking"] = {
        **metadata["ranking"],
        "texts": metadata["texts"],
        "models": metadata["models_by_text"],
    }
    return metadata


def to_proposal(output: Any) -> ToolProposal:
    """A member's answer as a tool-call proposal (its text and its calls; ``raw``: the message)."""
    calls: tuple[ToolCall, ...] = ()
    if isinstance(output, AIMessage):
        calls = tuple(
            ToolCall(c["name"], c.get("args") or {}, c.get("id")) for c in output.tool_calls
        )
    return ToolProposal(text=message_text(output), tool_calls=calls, raw=output)


def answer_text(output: Any) -> str:
    """A member answer's text as the ranker reads it: the message text, or for an answer that
    calls tools the rendering of its proposal (what tool-call selection ranks)."""
    if has_tool_calls(output):
        return to_proposal(output).render()
    return message_text(output)


def answer_usage(output: Any) -> tuple[int, int] | None:
    """A member answer's reported ``(input_tokens, output_tokens)`` (an ``AIMessage``'s
    ``usage_metadata``), or ``None``."""
    usage = output.usage_metadata if isinstance(output, AIMessage) else None
    if not usage:
        return None
    return usage["input_tokens"], usage["output_tokens"]


def _selected_message(chosen: Any) -> AIMessage:
    if not isinstance(chosen, AIMessage):
        return AIMessage(content=message_text(chosen))
    return AIMessage(
        content=chosen.content,
        tool_calls=chosen.tool_calls,
        invalid_tool_calls=chosen.invalid_tool_calls,
        additional_kwargs=dict(chosen.additional_kwargs),
    )


class Engine:
    """The core engine of one ensemble, with LangChain tracing and a LangChain-model fuser.

    Args:
        ranker: A Ranker or a spec for ``load_ranker``.
        fuser: A Fuser, a core Generator, a LangChain runnable (an LLM fuser over it), or a spec
            for ``load_fuser``.
        **options: The core :class:`~blender_core.engine.Engine`'s options (``top_k``,
            ``timeout``, ``min_candidates``, ``strategy``, ``priors``, ``device``, ``policy``,
            ``policy_options``, ``costs``).

    Rankings and stages of member calls run as child runs of the ensemble's run (the tracers
    ``trace_ranking`` and ``trace_stage`` of ``langchain_blender._callbacks``).
    """

    def __init__(self, *, ranker: Any, fuser: Any, **options: Any) -> None:
        if isinstance(fuser, Runnable):
            fuser = LangChainGenerator(fuser, name="fuser")
        self.core = CoreEngine(
            ranker=ranker,
            fuser=fuser,
            rank_tracer=trace_ranking,
            stage_tracer=trace_stage,
            **options,
        )

    @property
    def ranker(self) -> Ranker:
        """The ranker (loaded on first access)."""
        return self.core.ranker

    # -- context: the fuser's and the ranker's runs nest under the ensemble's run --------------
    # The configs travel in context variables; a generator cannot set one across its yields
    # (its consumer may resume it in another context), so each call runs in a context of its own.

    @staticmethod
    def _context(callbacks: ChildCallbacks) -> tuple[contextvars.Context, UsageCollector]:
        collector = UsageCollector()
        config: RunnableConfig = child_config(
            with_handler(callbacks, collector), "fuser", FUSER_TAG
        )
        context = contextvars.copy_context()
        context.run(set_call_config, config)
        context.run(set_rank_callbacks, callbacks)
        return context, collector

    @staticmethod
    def _proposals(outcomes: Sequence[MemberOutcome]) -> dict[str, ToolProposal] | None:
        answers = {o.name: o.output for o in outcomes if o.failure is None}
        if not any(has_tool_calls(a) for a in answers.values()):
            return None
        return {name: to_proposal(answer) for name, answer in answers.items()}

    @staticmethod
    def _text_result(result: BlendResult, usage: UsageMetadata | None) -> Blended:
        return Blended(
            message=AIMessage(content=result.text),
            metadata=blend_metadata(result),
            usage=usage,
            result=result,
        )

    # -- the members: called as the policy decides ---------------------------------------------

    async def acall_members(
        self,
        instruction: str,
        calls: Mapping[str, Callable[[], Awaitable[Any]]],
        *,
        callbacks: ChildCallbacks = None,
        input: str = "",
        retries: int = 0,
    ) -> tuple[list[MemberOutcome], CallReport]:
        """Call the members as the policy decides (the core :meth:`Engine.acall_members
        <blender_core.engine.Engine.acall_members>`: stages, each member within the engine's
        ``timeout``, ``retries`` each). Each stage is a child run of ``callbacks``' run (the
        members' runs nest under it), as is a cascade's ranking between stages.

        Returns:
            The called members' outcomes and the report to hand to :meth:`ablend` /
            :meth:`astream` as ``calls``.
        """
        context, _ = self._context(callbacks)
        return await asyncio.create_task(
            self.core.acall_members(
                instruction,
                calls,
                input=input,
                retries=retries,
                text_of=answer_text,
                usage_of=answer_usage,
            ),
            context=context,
        )

    # -- one answer -------------------------------------------------------------------------

    async def ablend(
        self,
        instruction: str,
        outcomes: Sequence[MemberOutcome],
        *,
        callbacks: ChildCallbacks = None,
        input: str = "",
        calls: CallReport | None = None,
    ) -> Blended:
        """Rank and fuse the members' answers; when any calls tools, select the best proposal
        (``calls``: :meth:`acall_members`' report, the metadata's ``calls``)."""
        context, collector = self._context(callbacks)
        results: MemberResults[Any] = MemberResults.from_outcomes(outcomes)
        proposals = self._proposals(outcomes)
        if proposals is not None:
            selection = await asyncio.create_task(
                self.core.aselect(
                    instruction, proposals, results=results, input=input, calls=calls
                ),
                context=context,
            )
            return Blended(
                message=_selected_message(selection.proposal.raw),
                metadata=blend_metadata(selection.result),
                result=selection.result,
            )
        texts = _texts(results)
        result = await asyncio.create_task(
            self.core.ablend(instruction, texts, input=input, calls=calls), context=context
        )
        return self._text_result(result, collector.usage)

    def blend(self, instruction: str, outcomes: Sequence[MemberOutcome], **options: Any) -> Blended:
        """Sync :meth:`ablend` (through the core's one bridge; the same keywords)."""
        return run_sync(lambda: self.ablend(instruction, outcomes, **options))

    # -- streaming: the fused answer as it is written ---------------------------------------

    async def astream(
        self,
        instruction: str,
        outcomes: Sequence[MemberOutcome],
        *,
        callbacks: ChildCallbacks = None,
        input: str = "",
        calls: CallReport | None = None,
    ) -> AsyncIterator[str | Blended]:
        """:meth:`ablend`, yielding the fused text's deltas (an LLM fuser's tokens as generated;
        other fusers: one delta), then the :class:`Blended` answer. Tool calls: the answer only.
        """
        if self._proposals(outcomes) is not None:
            yield await self.ablend(
                instruction, outcomes, callbacks=callbacks, input=input, calls=calls
            )
            return
        context, collector = self._context(callbacks)
        texts = _texts(MemberResults.from_outcomes(outcomes))
        events = context.run(self.core.astream, instruction, texts, input=input, calls=calls)
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    event = await loop.create_task(_next_event(events), context=context)
                except StopAsyncIteration:
                    return
                if event.kind == "delta":
                    yield event.text
                elif event.result is not None:
                    yield self._text_result(event.result, collector.usage)
        finally:
            await loop.create_task(_close(events), context=context)

    def stream(
        self, instruction: str, outcomes: Sequence[MemberOutcome], **options: Any
    ) -> Iterator[str | Blended]:
        """Sync :meth:`astream` (through the core's one bridge; the same keywords)."""
        return iterate_sync(lambda: self.astream(instruction, outcomes, **options))

    # -- the stages alone (the LCEL steps) ------------------------------------------------------

    async def run_in(
        self, callbacks: ChildCallbacks, call: Callable[[CoreEngine], Coroutine[Any, Any, T]]
    ) -> T:
        """``call(core engine)`` with the ranker's and the fuser's runs nested under
        ``callbacks`` (e.g. ``lambda core: core.arank(instruction, texts)``)."""
        context, _ = self._context(callbacks)
        return await asyncio.create_task(call(self.core), context=context)


def _texts(results: MemberResults[Any]) -> MemberResults[str]:
    return MemberResults(
        outputs={name: message_text(output) for name, output in results.outputs.items()},
        failures=results.failures,
        latencies=results.latencies,
        queueing=results.queueing,
    )


async def _next_event(events: AsyncIterator[BlendStreamEvent]) -> BlendStreamEvent:
    return await anext(events)


async def _close(events: AsyncIterator[BlendStreamEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
