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
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, ensure_config
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

from langchain_blender._adapters import prompt_from_messages
from langchain_blender._callbacks import ChildCallbacks, achild_callbacks, child_callbacks
from langchain_blender._engine import Blended
from langchain_blender._members import MemberOutcome
from langchain_blender._settings import EnsembleCall, EnsembleSettings, StopCutter, apply_stop

__all__ = ["ChatBlender", "StopCutter", "apply_stop", "text_pieces"]

_PIECES = re.compile(r"\s*\S+\s*|\s+")


def text_pieces(text: str) -> list[str]:
    """Split ``text`` into word-sized pieces (whitespace kept) for streaming; joins back exactly."""
    return _PIECES.findall(text) or [""]


class ChatBlender(EnsembleSettings, BaseChatModel):
    """An LLM-Blender ensemble of chat models: every member answers, PairRanker ranks, the best
    ``top_k`` are fused (or the best is selected).

    Behaves like any chat model: ``invoke``/``ainvoke``/``batch``/``abatch``/``stream``/``astream``,
    callbacks, LCEL, tools, structured output and agents.

    * Members are called concurrently (``ainvoke`` on one event loop in async calls, a thread per
      member in sync calls), each under ``timeout`` seconds; ``policy`` picks which (every
      member by default; ``"cascade"``, ``"router"``: a fraction of them, in stages). Each stage
      is a child run of the ensemble's run (``"stage 0"``, ...; tagged ``"llm_blender:stage"``)
      holding its members' runs (tagged ``"llm_blender:member"``, named after the member).
    * Streaming: members must all finish before ranking, so the stream starts once the answer is
      known; the fused text then arrives in word-sized chunks (tool calls in one chunk).
    * A member that raises or times out is listed in ``response_metadata["failures"]`` and the call
      still answers; when fewer than ``min_candidates`` answer, ``BlendError`` names every member's
      failure.
    * ``response_metadata``: ``candidates`` (text by member), ``ranking`` (``order``, ``ranks``,
      ``scores``, ``texts``, ``models``), ``top_k``, ``best_models``, ``failures``, ``latencies``,
      ``rank_latency``, ``fuse_latency``, ``blend_mode`` (``"text"`` or ``"tool_calls"``),
      ``calls`` (the members called and skipped, why, tokens, cost, calls saved) and
      ``model_name``. ``usage_metadata`` sums the called members' (and a chat-model fuser's)
      usage.
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

    def _prompt(self, member_input: Any) -> tuple[str, str]:
        return prompt_from_messages(member_input)

    def _finish(
        self, blended: Blended, outcomes: Sequence[MemberOutcome], stop: list[str] | None
    ) -> AIMessage:
        message = blended.message
        if blended.metadata["blend_mode"] == "text":
            message = AIMessage(content=apply_stop(message.text, self._stop_for(stop)))
        usage = self._usage(blended, outcomes)
        if usage is not None:
            message.usage_metadata = usage
        message.response_metadata = {"model_name": self.model_name, **blended.metadata}
        return message

    def _result(self, call: EnsembleCall, ran: tuple[Blended, list[MemberOutcome]]) -> ChatResult:
        message = self._finish(*ran, call.stop)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = EnsembleCall(messages, stop, kwargs, child_callbacks(run_manager), sync=True)
        return self._result(call, self._sync(lambda: self._arun(call)))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = EnsembleCall(messages, stop, kwargs, achild_callbacks(run_manager))
        return self._result(call, await self._arun(call))

    # -- streaming ------------------------------------------------------------------------------
    # ``BaseChatModel.stream``/``astream`` call ``_stream``/``_astream`` without their run manager
    # (by design), so in those calls the members', ranker's and fuser's runs attach to the
    # ambient run (``ensure_config()``: the caller's chain step, if any), not to the ensemble's
    # stream run. When LangChain does pass a run manager (``invoke`` under a streaming handler,
    # ``streaming=True``), they nest under the ensemble's run as in ``invoke``.

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        callbacks = _or_ambient(child_callbacks(run_manager))
        call = EnsembleCall(messages, stop, kwargs, callbacks, sync=True)
        return self._sync_iter(lambda: self._achunks(call))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        callbacks = _or_ambient(achild_callbacks(run_manager))
        async for chunk in self._achunks(EnsembleCall(messages, stop, kwargs, callbacks)):
            yield chunk

    def _delta_chunk(self, text: str) -> ChatGenerationChunk:
        return ChatGenerationChunk(message=AIMessageChunk(content=text))

    def _final_chunks(self, answer: AIMessage, cutter: StopCutter) -> Iterator[ChatGenerationChunk]:
        return _last_chunks(answer, cutter)


def _or_ambient(callbacks: ChildCallbacks) -> ChildCallbacks:
    """The ensemble run's child callbacks, else the ambient run's (``ensure_config()``)."""
    if callbacks is not None:
        return callbacks
    return cast(ChildCallbacks, ensure_config().get("callbacks"))


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
