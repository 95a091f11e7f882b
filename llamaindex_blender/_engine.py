"""Lazy, thread-safe construction of the core ``Blender`` behind the LlamaIndex components."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from llama_index.core.llms import LLM

from blender_core.generators.base import Generator
from blender_core.lazy import Lazy
from blender_core.members import MemberResults
from llamaindex_blender._adapters import LlamaIndexGenerator, to_core_fuser
from llamaindex_blender._tracing import trace_ranking

if TYPE_CHECKING:
    from blender_core.blend import Blender, BlendResult, BlendStreamEvent
    from blender_core.ranking import Ranker

__all__ = ["BlendEngine", "aprimed", "blend_info", "primed"]


class BlendEngine:
    """Loads the ranker and fuser on first use (once, under a lock) and builds two Blenders.

    ``blender`` ranks and fuses with the configured fuser; ``selector`` ranks and selects the
    best candidate (``SelectFuser``, top-1), for tool-call proposals that must never be fused.
    Both share the one loaded ranker.
    """

    def __init__(
        self,
        members: Mapping[str, LLM],
        *,
        ranker: Any,
        fuser: Any,
        top_k: int,
        strategy: str | None = None,
        device: str | None = None,
    ) -> None:
        self._members = dict(members)
        self._ranker_spec = ranker
        self._fuser_spec = fuser
        self._top_k = top_k
        self._strategy = strategy
        self._device = device
        self._ranker: Lazy[Ranker] = Lazy(self._load_ranker)
        self._blender: Lazy[Blender] = Lazy(lambda: self._build(select_only=False))
        self._selector: Lazy[Blender] = Lazy(lambda: self._build(select_only=True))

    @property
    def loaded(self) -> bool:
        """Whether the ranker is loaded."""
        return self._ranker.loaded

    def _load_ranker(self) -> Ranker:
        from blender_core.loading import load_ranker

        return load_ranker(self._ranker_spec, device=self._device)

    def _build(self, select_only: bool) -> Blender:
        from blender_core.blend import Blender
        from blender_core.loading import load_fuser

        generators: dict[str, Generator] = {
            name: LlamaIndexGenerator(llm, name=name) for name, llm in self._members.items()
        }
        if select_only:
            fuser = load_fuser("select")
            return Blender(
                generators,
                self._ranker.get(),
                fuser,
                top_k=1,
                strategy=self._strategy,
                rank_tracer=trace_ranking,
            )
        fuser = load_fuser(to_core_fuser(self._fuser_spec), device=self._device)
        return Blender(
            generators,
            self._ranker.get(),
            fuser,
            top_k=self._top_k,
            strategy=self._strategy,
            rank_tracer=trace_ranking,
        )

    def blender(self, *, select_only: bool = False) -> Blender:
        """The Blender (built on first call, once, under a lock)."""
        return (self._selector if select_only else self._blender).get()

    async def ablender(self, *, select_only: bool = False) -> Blender:
        """:meth:`blender`, building in a worker thread so that the event loop never blocks."""
        return await (self._selector if select_only else self._blender).aget()

    def blend(
        self,
        instruction: str,
        candidates: Mapping[str, str],
        *,
        results: MemberResults[Any] | None = None,
        select_only: bool = False,
        input: str = "",
    ) -> BlendResult:
        """Rank and fuse ``candidates``; ``results`` (the members' run) adds their failures,
        latencies and queueing to the blend."""
        blender = self.blender(select_only=select_only)

        def run() -> BlendResult:
            return blender.blend_candidates(instruction, candidates, input=input, **_run(results))

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return run()
        # A sync call from inside a running event loop (e.g. a sync query in a notebook): the
        # core's sync API runs its own loop, which cannot nest, so it runs in a worker thread.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="blender-sync") as executor:
            return executor.submit(contextvars.copy_context().run, run).result()

    async def ablend(
        self,
        instruction: str,
        candidates: Mapping[str, str],
        *,
        results: MemberResults[Any] | None = None,
        select_only: bool = False,
        input: str = "",
    ) -> BlendResult:
        """Async :meth:`blend`."""
        blender = await self.ablender(select_only=select_only)
        return await blender.ablend_candidates(
            instruction, candidates, input=input, **_run(results)
        )

    def stream(
        self,
        instruction: str,
        candidates: Mapping[str, str],
        *,
        results: MemberResults[Any] | None = None,
        input: str = "",
    ) -> Iterator[BlendStreamEvent] | None:
        """:meth:`blend`'s events (:meth:`Blender.stream_candidates`: the fused answer's deltas,
        an LLM fuser's tokens as generated, then the result); ``None`` inside a running event
        loop, where the core's sync stream cannot run (use :meth:`blend` then)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.blender().stream_candidates(
                instruction, candidates, input=input, **_run(results)
            )
        return None

    async def astream(
        self,
        instruction: str,
        candidates: Mapping[str, str],
        *,
        results: MemberResults[Any] | None = None,
        input: str = "",
    ) -> AsyncIterator[BlendStreamEvent]:
        """Async :meth:`stream`."""
        blender = await self.ablender()
        async for event in blender.astream_candidates(
            instruction, candidates, input=input, **_run(results)
        ):
            yield event


def _run(results: MemberResults[Any] | None) -> dict[str, Any]:
    if results is None:
        return {}
    return {
        "failures": results.failures,
        "latencies": results.latencies,
        "queueing": results.queueing,
    }


def blend_info(result: BlendResult, mode: str = "text") -> dict[str, Any]:
    """The blend metadata of a LlamaIndex response (``additional_kwargs``,
    ``metadata["blend"]``): ``blend_mode`` (``"text"`` or ``"tool_calls"``) and
    :meth:`~blender_core.blend.BlendResult.to_dict`, the schema LangChain answers carry too."""
    return {"blend_mode": mode, **result.to_dict()}


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
