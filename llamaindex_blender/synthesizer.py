"""``FusionSynthesizer``: several LLMs answer over the retrieved context; answers are blended."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from llama_index.core.base.response.schema import RESPONSE_TYPE
from llama_index.core.callbacks import CallbackManager
from llama_index.core.indices.prompt_helper import PromptHelper
from llama_index.core.llms import LLM, MockLLM
from llama_index.core.prompts import BasePromptTemplate
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.response_synthesizers import (
    BaseSynthesizer,
    ResponseMode,
    get_response_synthesizer,
)
from llama_index.core.response_synthesizers.base import QueryTextType
from llama_index.core.schema import NodeWithScore
from llama_index.core.types import RESPONSE_TEXT_TYPE

from blender_core.loading import DEFAULT_RANKER
from llamaindex_blender._adapters import member_names
from llamaindex_blender._engine import aprimed, blend_info, make_engine, primed, with_texts
from llamaindex_blender._members import MemberResults, acall_members, call_members

if TYPE_CHECKING:
    from blender_core.blend import BlendStreamEvent

__all__ = ["FusionSynthesizer"]

# The blend metadata of the current synthesize() call, for the Response's metadata. Streaming
# puts an empty dict here that the stream fills in once it has been consumed.
_current_blend: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "llamaindex_blender_current_blend", default=None
)


class FusionSynthesizer(BaseSynthesizer):
    """Several LLMs answer the query over the retrieved context; the answers are ranked and fused.

    Each member answers with LlamaIndex's own synthesizer for ``response_mode`` (default
    ``"compact"``: the chunks packed into the text-QA prompt, refined over several calls when they
    do not fit the member's context window), all members at once. The distinct answers are
    ranked against the query (PairRM by default) and the ``top_k`` best are fused by ``fuser``
    (``None``/``"select"`` keeps the best; a GenFuser checkpoint, a core Fuser, or a LlamaIndex
    LLM). The ranker and fuser see the query only, not the context. A failing member is
    reported and skipped; if all fail, ``blender_core.blend.BlendError`` names each one.

    Without ``llms`` the text chunks themselves are the candidate answers: that is the shape of
    ``RouterQueryEngine``'s ``summarizer``, which hands over the answers of the selected query
    engines, so ``FusionSynthesizer(ranker=..., fuser=...)`` ranks and fuses those.

    ``synthesize``/``asynthesize`` (query engines) put the blend in ``response.metadata["blend"]``
    (candidates, ranking, failures, latencies). With ``streaming=True`` the members answer and are
    ranked when the query runs, then the fused answer streams: an LLM fuser's tokens as it
    generates them, another fuser's answer as one chunk; ``metadata["blend"]`` is filled in once
    ``response_gen`` has been consumed.

    Args:
        llms: The members (a list, or a mapping of name to LLM); ``None`` to blend the chunks.
        ranker: A core ranker or its spec (``load_ranker``).
        fuser: A fuser spec (``load_fuser``), a core Fuser/Generator, or a LlamaIndex LLM.
        top_k: How many of the best answers the fuser sees.
        timeout: Seconds each member may take (``None``: no limit).
        strategy: The ranker's aggregation strategy (``None``: its default).
        device: Where the ranker/fuser models load.
        response_mode: How each member answers over the chunks (a ``ResponseMode``).
        text_qa_template: The question-answering prompt (default: LlamaIndex's text-QA prompt).
        refine_template: The refine prompt (default: LlamaIndex's).

    Example:
        .. code-block:: python

            from llamaindex_blender import FusionSynthesizer

            synth = FusionSynthesizer([llm_a, llm_b, llm_c], ranker="llm-blender/PairRM")
            engine = index.as_query_engine(response_synthesizer=synth)
            response = engine.query("What is PairRM?")
            response.metadata["blend"]["ranking"]

            # Fuse the answers of several query engines:
            router = RouterQueryEngine(
                selector=LLMMultiSelector.from_defaults(llm=llm),
                query_engine_tools=tools,
                summarizer=FusionSynthesizer(ranker="llm-blender/PairRM"),
            )
    """

    def __init__(
        self,
        llms: Sequence[LLM] | Mapping[str, LLM] | None = None,
        *,
        ranker: Any = DEFAULT_RANKER,
        fuser: Any = None,
        top_k: int = 3,
        timeout: float | None = 60.0,
        strategy: str | None = None,
        device: str | None = None,
        response_mode: ResponseMode | str = ResponseMode.COMPACT,
        text_qa_template: BasePromptTemplate | None = None,
        refine_template: BasePromptTemplate | None = None,
        callback_manager: CallbackManager | None = None,
        prompt_helper: PromptHelper | None = None,
        streaming: bool = False,
    ) -> None:
        if isinstance(llms, LLM):
            raise TypeError("llms must be a list of LLMs or a mapping of name to LLM, not one LLM")
        members: list[LLM] = []
        if llms is not None:
            members = list(llms.values()) if isinstance(llms, Mapping) else list(llms)
            for i, member in enumerate(members):
                if not isinstance(member, LLM):
                    raise TypeError(f"member {i} is not a LlamaIndex LLM: {type(member).__name__}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        self._names = member_names(llms) if llms else []
        self._members = members
        self._response_mode = ResponseMode(response_mode)
        self._text_qa_template = text_qa_template
        self._refine_template = refine_template
        self._timeout = timeout
        # BaseSynthesizer wants one LLM (for prompt sizing); without members it is never called.
        super().__init__(
            llm=members[0] if members else MockLLM(),
            callback_manager=callback_manager,
            prompt_helper=prompt_helper,
            streaming=streaming,
        )
        self._member_synths = [self._member_synth(member) for member in members]
        self._engine = make_engine(
            ranker=ranker, fuser=fuser, top_k=top_k, strategy=strategy, device=device
        )

    def _member_synth(self, member: LLM) -> BaseSynthesizer:
        return get_response_synthesizer(
            llm=member,
            response_mode=self._response_mode,
            text_qa_template=self._text_qa_template,
            refine_template=self._refine_template,
            callback_manager=self.callback_manager,
        )

    @property
    def member_names(self) -> list[str]:
        """The members' names, as they appear in the blend."""
        return list(self._names)

    def _get_prompts(self) -> PromptDictType:
        prompts: PromptDictType = {}
        if self._text_qa_template is not None:
            prompts["text_qa_template"] = self._text_qa_template
        if self._refine_template is not None:
            prompts["refine_template"] = self._refine_template
        return prompts

    def _update_prompts(self, prompts: PromptDictType) -> None:
        if "text_qa_template" in prompts:
            self._text_qa_template = prompts["text_qa_template"]
        if "refine_template" in prompts:
            self._refine_template = prompts["refine_template"]
        self._member_synths = [self._member_synth(member) for member in self._members]

    # ------------------------------------------------------------------ responses

    def _respond(
        self, query_str: str, candidates: Mapping[str, str], results: MemberResults[Any] | None
    ) -> RESPONSE_TEXT_TYPE:
        answers = with_texts(candidates, results)
        if not self._streaming:
            result = self._engine.blend(query_str, answers)
            _current_blend.set(blend_info(result))
            return result.text
        info: dict[str, Any] = {}
        _current_blend.set(info)
        return _deltas(primed(self._engine.stream(query_str, answers)), info)

    async def _arespond(
        self, query_str: str, candidates: Mapping[str, str], results: MemberResults[Any] | None
    ) -> RESPONSE_TEXT_TYPE:
        answers = with_texts(candidates, results)
        if not self._streaming:
            result = await self._engine.ablend(query_str, answers)
            _current_blend.set(blend_info(result))
            return result.text
        info: dict[str, Any] = {}
        _current_blend.set(info)
        events = self._engine.astream(query_str, answers)
        return _adeltas(await aprimed(events), info)

    def get_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        """Blend the members' answers over ``text_chunks`` (or the chunks themselves)."""
        if not self._members:
            return self._respond(query_str, _chunks_as_candidates(text_chunks), None)
        results = call_members(
            self._names,
            self._member_synths,
            lambda synth: str(synth.get_response(query_str, text_chunks, **response_kwargs)),
            timeout=self._timeout,
        )
        return self._respond(query_str, results.outputs, results)

    async def aget_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        """Async :meth:`get_response`: members answer concurrently."""
        if not self._members:
            return await self._arespond(query_str, _chunks_as_candidates(text_chunks), None)

        async def call(synth: BaseSynthesizer) -> str:
            return str(await synth.aget_response(query_str, text_chunks, **response_kwargs))

        results = await acall_members(self._names, self._member_synths, call, timeout=self._timeout)
        return await self._arespond(query_str, results.outputs, results)

    def synthesize(
        self,
        query: QueryTextType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        """Answer ``query`` from ``nodes`` (LlamaIndex's synthesis); the response's metadata
        carries this call's blend under ``"blend"`` (a streamed one once it ends)."""
        with _blend_slot():
            response = super().synthesize(query, nodes, additional_source_nodes, **response_kwargs)
            return _with_blend(response, _current_blend.get())

    async def asynthesize(
        self,
        query: QueryTextType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        """Async :meth:`synthesize`."""
        with _blend_slot():
            response = await super().asynthesize(
                query, nodes, additional_source_nodes, **response_kwargs
            )
            return _with_blend(response, _current_blend.get())


@contextmanager
def _blend_slot() -> Iterator[None]:
    """An empty blend slot for one synthesis (the ranking step fills it in), the caller's back
    after: nested or concurrent syntheses each read their own blend."""
    token = _current_blend.set(None)
    try:
        yield
    finally:
        _current_blend.reset(token)


def _chunks_as_candidates(text_chunks: Sequence[str]) -> dict[str, str]:
    if isinstance(text_chunks, str):
        raise TypeError("text_chunks must be a list of strings, not a single string")
    return {f"answer_{i}": str(chunk) for i, chunk in enumerate(text_chunks)}


def _with_blend(response: RESPONSE_TYPE, info: dict[str, Any] | None) -> RESPONSE_TYPE:
    if info is not None:
        response.metadata = dict(response.metadata or {})
        response.metadata["blend"] = info  # the same dict a stream fills in when it ends
    return response


def _deltas(events: Iterator[BlendStreamEvent], info: dict[str, Any]) -> Generator[str, None, None]:
    """The fused answer's deltas; the blend goes into ``info`` at the end."""
    for event in events:
        if event.kind == "delta":
            if event.text:
                yield event.text
        elif event.result is not None:
            info.update(blend_info(event.result))


async def _adeltas(
    events: AsyncIterator[BlendStreamEvent], info: dict[str, Any]
) -> AsyncGenerator[str, None]:
    """Async :func:`_deltas`."""
    async for event in events:
        if event.kind == "delta":
            if event.text:
                yield event.text
        elif event.result is not None:
            info.update(blend_info(event.result))
