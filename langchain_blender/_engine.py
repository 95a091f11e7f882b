"""The ranking and fusing side of a LangChain ensemble: :class:`Engine` over the core pipeline.

The members' outcomes become candidates, and the core pipeline ranks and fuses them. Tool-call
answers are ranked over a text rendering of the calls and the best is selected, never fused.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.messages import AIMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.runnables import Runnable, RunnableConfig

from blender_core.blend import Blender as CoreBlender
from blender_core.blend import BlendError, BlendResult, BlendStreamEvent, RankStep
from blender_core.lazy import Lazy
from blender_core.loading import load_fuser, load_ranker
from blender_core.members import MemberResults
from blender_core.ranking import Ranker, Ranking
from langchain_blender._adapters import (
    LangChainGenerator,
    has_tool_calls,
    message_text,
    render_tool_calls,
    set_call_config,
    use_call_config,
)
from langchain_blender._callbacks import (
    FUSER_TAG,
    ChildCallbacks,
    UsageCollector,
    child_config,
    run_sync,
    set_rank_callbacks,
    trace_ranking,
    trace_ranking_sync,
    use_rank_callbacks,
    with_handler,
)
from langchain_blender._members import MemberOutcome

__all__ = ["Blended", "Engine"]


@dataclass
class Blended:
    """The ensemble's answer: the message to return and what the caller should report."""

    message: AIMessage
    metadata: dict[str, Any]
    usage: UsageMetadata | None = None
    result: BlendResult | None = field(default=None, repr=False)


def blend_metadata(result: BlendResult, mode: str) -> dict[str, Any]:
    """The blend metadata of a LangChain answer: ``blend_mode`` and
    :meth:`~blender_core.blend.BlendResult.to_dict` (the schema LlamaIndex answers carry too).

    ``ranking["texts"]`` and ``ranking["models"]`` repeat the top-level ``texts`` and
    ``models_by_text`` for one release (deprecated: read the top-level keys).
    """
    metadata = {"blend_mode": mode, **result.to_dict()}
    metadata["ranking"] = {
        **metadata["ranking"],
        "texts": metadata["texts"],
        "models": metadata["models_by_text"],
    }
    return metadata


class Engine:
    """Ranker, fuser and core pipeline of one ensemble, loaded once on first use (thread-safe).

    Args:
        member_names: The members' names (the core pipeline's generator names).
        ranker: A Ranker or a spec for ``load_ranker``.
        fuser: A Fuser, a core Generator, a LangChain runnable (an LLM fuser over it), or a spec
            for ``load_fuser``.
        top_k, timeout, min_candidates, strategy: As for the core ``Blender``.
    """

    def __init__(
        self,
        member_names: Sequence[str],
        *,
        ranker: Any,
        fuser: Any,
        top_k: int,
        timeout: float | None,
        min_candidates: int,
        strategy: str | None,
    ) -> None:
        self.member_names = list(member_names)
        self._ranker_spec = ranker
        self._fuser_spec = fuser
        self.top_k = top_k
        self.timeout = timeout
        self.min_candidates = min_candidates
        self.strategy = strategy
        self._core: Lazy[CoreBlender] = Lazy(self._build)

    @property
    def core(self) -> CoreBlender:
        """The core pipeline (loads the ranker and the fuser on first access)."""
        return self._core.get()

    @property
    def ranker(self) -> Ranker:
        return self.core.ranker

    def _build(self) -> CoreBlender:
        fuser = self._fuser_spec
        if isinstance(fuser, Runnable):
            fuser = LangChainGenerator(fuser, name="fuser")
        # Members are called here (for tracing), so the core pipeline only ranks and fuses.
        return CoreBlender(
            ranker=load_ranker(self._ranker_spec),
            fuser=load_fuser(fuser),
            top_k=self.top_k,
            timeout=self.timeout,
            min_candidates=self.min_candidates,
            strategy=self.strategy,
            rank_tracer=trace_ranking,
        )

    # -- tool calls: rank, select the best --------------------------------------------------

    def _tool_inputs(
        self, outcomes: Sequence[MemberOutcome]
    ) -> tuple[list[MemberOutcome], list[str]] | None:
        calls = [o for o in outcomes if o.failure is None and has_tool_calls(o.output)]
        if not calls:
            return None
        return calls, [render_tool_calls(cast(AIMessage, o.output)) for o in calls]

    def _rank_step(self, texts: list[str]) -> RankStep:
        return RankStep.of(self.ranker, len(texts), strategy=self.strategy, top_k=1)

    def _rank_untraced(self, instruction: str, texts: list[str]) -> Ranking:
        if self.strategy is not None:
            return self.ranker.rank(instruction, texts, strategy=self.strategy)  # type: ignore[call-arg]
        return self.ranker.rank(instruction, texts)

    def _rank_sync(self, instruction: str, texts: list[str], callbacks: ChildCallbacks) -> Ranking:
        if len(texts) == 1:
            return Ranking.from_scores([0.0])
        with use_rank_callbacks(callbacks):
            return trace_ranking_sync(
                self._rank_step(texts), lambda: self._rank_untraced(instruction, texts)
            )

    async def _rank_async(
        self, instruction: str, texts: list[str], callbacks: ChildCallbacks
    ) -> Ranking:
        if len(texts) == 1:
            return Ranking.from_scores([0.0])

        async def rank() -> Ranking:
            if self.strategy is not None:
                return await asyncio.to_thread(self._rank_untraced, instruction, texts)
            return await self.ranker.arank(instruction, texts)

        with use_rank_callbacks(callbacks):
            return await trace_ranking(self._rank_step(texts), rank)

    def _tool_result(
        self,
        instruction: str,
        outcomes: Sequence[MemberOutcome],
        calls: Sequence[MemberOutcome],
        texts: Sequence[str],
        ranking: Ranking,
        rank_latency: float,
    ) -> Blended:
        best = calls[ranking.best]
        chosen = best.output
        assert isinstance(chosen, AIMessage)
        message = AIMessage(
            content=chosen.content,
            tool_calls=chosen.tool_calls,
            invalid_tool_calls=chosen.invalid_tool_calls,
            additional_kwargs=dict(chosen.additional_kwargs),
        )
        result = BlendResult(
            text=texts[ranking.best],
            instruction=instruction,
            input="",
            candidates=self._candidate_texts(outcomes),
            texts=tuple(texts),
            models_by_text=tuple((o.name,) for o in calls),
            ranking=ranking,
            top_k=(texts[ranking.best],),
            latencies={o.name: o.latency for o in outcomes},
            rank_latency=rank_latency,
            fuse_latency=0.0,
            failures=tuple(o.failure for o in outcomes if o.failure is not None),
            queueing={o.name: o.queued for o in outcomes if o.queued},
        )
        metadata = blend_metadata(result, "tool_calls")
        return Blended(message=message, metadata=metadata)

    @staticmethod
    def _candidate_texts(outcomes: Sequence[MemberOutcome]) -> dict[str, str]:
        out = {}
        for o in outcomes:
            if o.failure is None:
                out[o.name] = (
                    render_tool_calls(cast(AIMessage, o.output))
                    if has_tool_calls(o.output)
                    else message_text(o.output)
                )
        return out

    def _check_enough(self, outcomes: Sequence[MemberOutcome]) -> None:
        answered = [o for o in outcomes if o.failure is None]
        if len(answered) < self.min_candidates:
            failures = [o.failure for o in outcomes if o.failure is not None]
            raise BlendError(
                f"only {len(answered)} of {len(outcomes)} model(s) answered, "
                f"min_candidates={self.min_candidates}; {len(failures)} failed: "
                + "; ".join(str(f) for f in failures),
                failures,
            )

    # -- text answers: the core pipeline ----------------------------------------------------

    @staticmethod
    def _text_result(result: BlendResult, usage: UsageMetadata | None) -> Blended:
        metadata = blend_metadata(result, "text")
        return Blended(
            message=AIMessage(content=result.text), metadata=metadata, usage=usage, result=result
        )

    def _fuse_config(self, callbacks: ChildCallbacks) -> tuple[RunnableConfig, UsageCollector]:
        collector = UsageCollector()
        return child_config(with_handler(callbacks, collector), "fuser", FUSER_TAG), collector

    def blend(
        self,
        instruction: str,
        outcomes: Sequence[MemberOutcome],
        *,
        callbacks: ChildCallbacks = None,
        input: str = "",
    ) -> Blended:
        """Rank and fuse (or, for tool calls, select) the members' answers."""
        self._check_enough(outcomes)
        tools = self._tool_inputs(outcomes)
        if tools is not None:
            calls, texts = tools
            start = time.perf_counter()
            ranking = run_sync(lambda: self._rank_sync(instruction, texts, callbacks))
            return self._tool_result(
                instruction, outcomes, calls, texts, ranking, time.perf_counter() - start
            )
        members: MemberResults[str] = MemberResults.from_outcomes(outcomes, message_text)
        config, collector = self._fuse_config(callbacks)

        def blend_candidates() -> BlendResult:
            with use_call_config(config), use_rank_callbacks(callbacks):
                return self.core.blend_candidates(
                    instruction,
                    members.outputs,
                    input=input,
                    failures=members.failures,
                    latencies=members.latencies,
                    queueing=members.queueing,
                )

        result = run_sync(blend_candidates)
        return self._text_result(result, collector.usage)

    async def ablend(
        self,
        instruction: str,
        outcomes: Sequence[MemberOutcome],
        *,
        callbacks: ChildCallbacks = None,
        input: str = "",
    ) -> Blended:
        """Async :meth:`blend`."""
        self._check_enough(outcomes)
        tools = self._tool_inputs(outcomes)
        if tools is not None:
            calls, texts = tools
            start = time.perf_counter()
            ranking = await self._rank_async(instruction, texts, callbacks)
            return self._tool_result(
                instruction, outcomes, calls, texts, ranking, time.perf_counter() - start
            )
        members: MemberResults[str] = MemberResults.from_outcomes(outcomes, message_text)
        config, collector = self._fuse_config(callbacks)
        core = await self._core.aget()  # a first load (model weights) runs off the event loop
        with use_call_config(config), use_rank_callbacks(callbacks):
            result = await core.ablend_candidates(
                instruction,
                members.outputs,
                input=input,
                failures=members.failures,
                latencies=members.latencies,
                queueing=members.queueing,
            )
        return self._text_result(result, collector.usage)

    # -- streaming: the fused answer as it is written -----------------------------------------
    # The fuser's and ranker's configs travel in context variables; a generator cannot set one
    # across its yields (its consumer may resume it in another context), so the core stream runs
    # in a context of its own, one step at a time.

    @staticmethod
    def _stream_context(config: RunnableConfig, callbacks: ChildCallbacks) -> contextvars.Context:
        context = contextvars.copy_context()
        context.run(set_call_config, config)
        context.run(set_rank_callbacks, callbacks)
        return context

    def stream(
        self,
        instruction: str,
        outcomes: Sequence[MemberOutcome],
        *,
        callbacks: ChildCallbacks = None,
        input: str = "",
    ) -> Iterator[str | Blended]:
        """:meth:`blend`, yielding the fused text's deltas (an LLM fuser's tokens as generated;
        other fusers: one delta), then the :class:`Blended` answer. Tool calls: the answer only.
        """
        self._check_enough(outcomes)
        try:
            asyncio.get_running_loop()
            in_loop = True
        except RuntimeError:
            in_loop = False
        if in_loop or self._tool_inputs(outcomes) is not None:
            # The core's sync stream runs its own loop, which cannot nest: one piece then.
            yield self.blend(instruction, outcomes, callbacks=callbacks, input=input)
            return
        members: MemberResults[str] = MemberResults.from_outcomes(outcomes, message_text)
        config, collector = self._fuse_config(callbacks)
        context = self._stream_context(config, callbacks)
        events = context.run(
            self.core.stream_candidates,
            instruction,
            members.outputs,
            input=input,
            failures=members.failures,
            latencies=members.latencies,
            queueing=members.queueing,
        )
        try:
            while (event := context.run(next, events, None)) is not None:
                if event.kind == "delta":
                    yield event.text
                elif event.result is not None:
                    yield self._text_result(event.result, collector.usage)
        finally:
            context.run(events.close)  # type: ignore[attr-defined]

    async def astream(
        self,
        instruction: str,
        outcomes: Sequence[MemberOutcome],
        *,
        callbacks: ChildCallbacks = None,
        input: str = "",
    ) -> AsyncIterator[str | Blended]:
        """Async :meth:`stream`."""
        self._check_enough(outcomes)
        if self._tool_inputs(outcomes) is not None:
            yield await self.ablend(instruction, outcomes, callbacks=callbacks, input=input)
            return
        members: MemberResults[str] = MemberResults.from_outcomes(outcomes, message_text)
        config, collector = self._fuse_config(callbacks)
        core = await self._core.aget()
        context = self._stream_context(config, callbacks)
        events = context.run(
            core.astream_candidates,
            instruction,
            members.outputs,
            input=input,
            failures=members.failures,
            latencies=members.latencies,
            queueing=members.queueing,
        )
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
            await loop.create_task(events.aclose(), context=context)  # type: ignore[attr-defined]


async def _next_event(events: AsyncIterator[BlendStreamEvent]) -> BlendStreamEvent:
    return await anext(events)
