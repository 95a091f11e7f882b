"""``ChatBlender``: an ensemble of chat models that behaves like one chat model."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, cast

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, ensure_config
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

from langchain_blender._adapters import prompt_from_messages
from langchain_blender._callbacks import ChildCallbacks, achild_callbacks, child_callbacks
from langchain_blender._engine import Blended
from langchain_blender._members import MemberOutcome, member_usage
from langchain_blender._settings import EnsembleSettings

__all__ = ["ChatBlender", "StopCutter", "apply_stop", "text_pieces"]

_PIECES = re.compile(r"\s*\S+\s*|\s+")


def text_pieces(text: str) -> list[str]:
    """Split ``text`` into word-sized pieces (whitespace kept) for streaming; joins back exactly."""
    return _PIECES.findall(text) or [""]


def apply_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut ``text`` at the first occurrence of any stop sequence (as a model's ``stop`` does)."""
    if not stop:
        return text
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


class ChatBlender(EnsembleSettings, BaseChatModel):
    """An LLM-Blender ensemble of chat models: every member answers, PairRanker ranks, the best
    ``top_k`` are fused (or the best is selected).

    Behaves like any chat model: ``invoke``/``ainvoke``/``batch``/``abatch``/``stream``/``astream``,
    callbacks, LCEL, tools, structured output and agents.

    * Members are called concurrently (``ainvoke`` on one event loop in async calls, a thread per
      member in sync calls), each under ``timeout`` seconds; their runs are children of the
      ensemble's run in every mode (tagged ``"llm_blender:member"``, named after the member).
    * Streaming: members must all finish before ranking, so the stream starts once the answer is
      known; the fused text then arrives in word-sized chunks (tool calls in one chunk).
    * A member that raises or times out is listed in ``response_metadata["failures"]`` and the call
      still answers; when fewer than ``min_candidates`` answer, ``BlendError`` names every member's
      failure.
    * ``response_metadata``: ``candidates`` (text by member), ``ranking`` (``order``, ``ranks``,
      ``scores``, ``texts``, ``models``), ``top_k``, ``best_models``, ``failures``, ``latencies``,
      ``rank_latency``, ``fuse_latency``, ``blend_mode`` (``"text"`` or ``"tool_calls"``) and
      ``model_name``. ``usage_metadata`` sums the members' (and a chat-model fuser's) usage.
    * Tools: ``bind_tools`` binds the tools to every member. When any answer calls tools, only
      tool-calling answers are ranked (over a text rendering of the calls) and the best is returned
      as is, never fused. ``with_structured_output`` works through tool calling.
    * Per-call kwargs other than ``stop``/``tools``/``tool_choice`` (and ``temperature``/
      ``max_tokens`` when set on the ensemble) are passed to members that are language models.

    Example:
        .. code-block:: python

            from langchain_core.output_parsers import StrOutputParser
            from langchain_core.prompts import ChatPromptTemplate
            from langchain_blender import ChatBlender

            llm = ChatBlender(
                models=[chat_a, chat_b, chat_c],
                ranker="llm-blender/PairRM",   # or a PairRanker / any Ranker object
                fuser=chat_fuser,              # or a GenFuser; None: select the best answer
                top_k=2,
            )
            chain = ChatPromptTemplate.from_template("{question}") | llm | StrOutputParser()
            chain.invoke({"question": "What is MBR decoding?"})
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    temperature: float | None = None
    """When set, passed to every member that is a language model as a per-call ``temperature``."""
    max_tokens: int | None = None
    """When set, passed to every member that is a language model as a per-call ``max_tokens``."""
    streaming: bool = False
    """Set it to stream through ``_stream`` in ``invoke`` too (LangChain's ``streaming`` flag);
    ``stream``/``astream`` always stream."""

    # -- identity -------------------------------------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return "llm-blender-chat"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        model = kwargs.get("model")
        params = LangSmithParams(
            ls_provider="llm_blender",
            ls_model_name=model if isinstance(model, str) else self.model_name,
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if isinstance(temperature, int | float):
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if isinstance(max_tokens, int):
            params["ls_max_tokens"] = max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -- tools ----------------------------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools to every member (each member's own ``bind_tools``, per call).

        Args:
            tools: Tools in any format ``convert_to_openai_tool`` accepts.
            tool_choice: Passed to each member's ``bind_tools`` (``"any"``, ``"auto"``, a name).
            **kwargs: Other kwargs bound to the ensemble call.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return super().bind(tools=formatted, **kwargs)

    # -- one call ------------------------------------------------------------------------------

    def _finish(
        self, blended: Blended, outcomes: Sequence[MemberOutcome], stop: list[str] | None
    ) -> AIMessage:
        message = blended.message
        if blended.metadata["blend_mode"] == "text":
            text = apply_stop(message.text, stop if stop is not None else self.stop)
            message = AIMessage(content=text)
        usage: UsageMetadata | None = member_usage(outcomes)
        if blended.usage:
            usage = add_usage(usage, blended.usage)
        if usage is not None:
            message.usage_metadata = usage
        message.response_metadata = {"model_name": self.model_name, **blended.metadata}
        return message

    def _blend(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        callbacks: ChildCallbacks,
        kwargs: dict[str, Any],
    ) -> AIMessage:
        blended, outcomes = self._run(
            messages, prompt_from_messages(messages), callbacks, self._prepare(stop, kwargs)
        )
        return self._finish(blended, outcomes, stop)

    async def _ablend(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        callbacks: ChildCallbacks,
        kwargs: dict[str, Any],
    ) -> AIMessage:
        blended, outcomes = await self._arun(
            messages, prompt_from_messages(messages), callbacks, self._prepare(stop, kwargs)
        )
        return self._finish(blended, outcomes, stop)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = self._blend(messages, stop, child_callbacks(run_manager), kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = await self._ablend(messages, stop, achild_callbacks(run_manager), kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)])

    # -- streaming ------------------------------------------------------------------------------
    # ``BaseChatModel.stream``/``astream`` call ``_stream``/``_astream`` without their run manager
    # (by design), so in those calls the members', ranker's and fuser's runs attach to the
    # ambient run (``ensure_config()``: the caller's chain step, if any), not to the ensemble's
    # stream run. When LangChain does pass a run manager (``invoke`` under a streaming handler,
    # ``streaming=True``), they nest under the ensemble's run as in ``invoke``.

    @staticmethod
    def _stream_parent(run_manager: CallbackManagerForLLMRun | None) -> ChildCallbacks:
        if run_manager is not None:
            return child_callbacks(run_manager)
        return cast(ChildCallbacks, ensure_config().get("callbacks"))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        pieces, outcomes = self._run(
            messages,
            prompt_from_messages(messages),
            self._stream_parent(run_manager),
            self._prepare(stop, kwargs),
            stream=True,
        )
        cutter = StopCutter(stop if stop is not None else self.stop)
        for piece in pieces:
            yield from self._chunks(piece, outcomes, stop, cutter)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        callbacks: ChildCallbacks = (
            achild_callbacks(run_manager)
            if run_manager is not None
            else cast(ChildCallbacks, ensure_config().get("callbacks"))
        )
        pieces, outcomes = await self._arun(
            messages,
            prompt_from_messages(messages),
            callbacks,
            self._prepare(stop, kwargs),
            stream=True,
        )
        cutter = StopCutter(stop if stop is not None else self.stop)
        async for piece in pieces:
            for chunk in self._chunks(piece, outcomes, stop, cutter):
                yield chunk

    def _chunks(
        self,
        piece: str | Blended,
        outcomes: Sequence[MemberOutcome],
        stop: list[str] | None,
        cutter: StopCutter,
    ) -> Iterator[ChatGenerationChunk]:
        if isinstance(piece, str):
            for text in cutter.feed(piece):
                yield ChatGenerationChunk(message=AIMessageChunk(content=text))
        else:
            yield from _last_chunks(self._finish(piece, outcomes, stop), cutter)


class StopCutter:
    """The fused text's deltas as pieces to stream, cut at the first stop sequence.

    A tail as long as the longest stop sequence is held back until it cannot start one, and the
    pieces run one delta behind, so that the last piece (:meth:`finish`) goes out with the
    metadata: a fuser that does not stream gives one piece.
    """

    def __init__(self, stop: Sequence[str] | None) -> None:
        self.stop = [s for s in stop or [] if s]
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.text = ""
        self.sent = 0
        self.pending: str | None = None

    def feed(self, delta: str) -> Iterator[str]:
        """Take a delta; yield the pieces now ready to stream."""
        self.text += delta
        cut = apply_stop(self.text, self.stop)
        ready = len(cut) if len(cut) < len(self.text) else max(self.sent, len(cut) - self.hold)
        if ready > self.sent:
            if self.pending is not None:
                yield self.pending
            self.pending = cut[self.sent : ready]
            self.sent = ready

    def finish(self, text: str) -> str:
        """The last piece, given the whole answer with the stop applied."""
        return (self.pending or "") + text[self.sent :]


def _last_chunks(message: AIMessage, cutter: StopCutter) -> Iterator[ChatGenerationChunk]:
    if message.response_metadata.get("blend_mode") != "text":
        yield from _message_chunks(message)  # tool calls: the whole message, in one chunk
        return
    yield from _message_chunks(message.model_copy(update={"content": cutter.finish(message.text)}))


def _message_chunks(message: AIMessage) -> Iterator[ChatGenerationChunk]:
    """The final message as one stream chunk, with usage, metadata and tool calls."""
    last: dict[str, Any] = {
        "response_metadata": message.response_metadata,
        "usage_metadata": message.usage_metadata,
        "chunk_position": "last",
    }
    if message.tool_calls or message.invalid_tool_calls:
        chunks = [
            tool_call_chunk(
                name=call["name"],
                args=json.dumps(call["args"], ensure_ascii=False),
                id=call.get("id"),
                index=i,
            )
            for i, call in enumerate(message.tool_calls)
        ]
        offset = len(chunks)
        chunks += [
            tool_call_chunk(
                name=bad.get("name"), args=bad.get("args"), id=bad.get("id"), index=offset + i
            )
            for i, bad in enumerate(message.invalid_tool_calls)
        ]
        yield ChatGenerationChunk(
            message=AIMessageChunk(content=message.content, tool_call_chunks=chunks, **last)
        )
        return
    yield ChatGenerationChunk(message=AIMessageChunk(content=message.text, **last))
