"""``BlenderLLM``: an ensemble of LlamaIndex LLMs that ranks and fuses their answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW, DEFAULT_NUM_OUTPUTS
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM, ToolSelection

from blender_core.loading import DEFAULT_RANKER
from llamaindex_blender._adapters import instruction_from_messages, member_names
from llamaindex_blender._engine import BlendEngine, aprimed, blend_info, primed
from llamaindex_blender._members import MemberResults, acall_members, call_members

if TYPE_CHECKING:
    from llama_index.core.tools import BaseTool

    from blender_core.blend import BlendResult, BlendStreamEvent

__all__ = ["BlenderLLM"]

dispatcher = get_dispatcher(__name__)


class BlenderLLM(FunctionCallingLLM):
    """An ensemble of LlamaIndex LLMs: every member answers, the answers are ranked and fused.

    Use it anywhere LlamaIndex takes an LLM. ``complete`` calls each member's ``complete``;
    ``chat`` calls each member's own ``chat`` (so their chat templates and system prompts stay as
    they are). Members run concurrently: in a thread pool for the sync methods (each in a copy of
    the caller's context, so members' instrumentation spans nest under this LLM's span) and with
    ``asyncio.gather`` for the async ones. The distinct answers are ranked (PairRM by default)
    and the ``top_k`` best are fused by ``fuser`` (``None``/``"select"`` keeps the best one; a
    GenFuser path, a core Fuser, or a LlamaIndex LLM that rewrites them).

    Every response carries the blend in ``additional_kwargs`` (``blend_mode`` and
    ``BlendResult.to_dict()``: ``candidates`` by member, ``ranking``, ``texts``,
    ``models_by_text``, ``top_k``, ``best_models``, ``failures``, ``latencies``, ``queueing``,
    ...; the same keys as the LangChain ensembles) and the core ``BlendResult`` in ``raw``. A
    failing or timed-out member is reported in ``failures`` and the call still answers; if
    every member fails, ``blender_core.blend.BlendError`` names each one and its cause.

    Streaming methods call the members and rank first (the fusion needs every member's complete
    answer), then stream the fused answer: an LLM fuser's tokens as it generates them, another
    fuser's answer as one chunk; the last chunk carries the blend.

    With tools (``chat_with_tools``/``achat_with_tools``, as used by ``FunctionAgent`` and
    ``predict_and_call``), function-calling members propose tool calls with their own
    ``chat_with_tools`` (other members answer with ``chat``); the proposals, rendered as text
    (content plus ``tool(args)`` lines), are ranked and the best member's response is returned
    as is: tool calls are selected, never fused.

    Args:
        llms: The members, a list (named by their ``metadata.model_name``) or a mapping of
            name to LLM.
        ranker: A core ranker or its spec (``load_ranker``): a PairRM hub id or path,
            ``"consensus"``, ``"random"``.
        fuser: A fuser spec (``load_fuser``), a core Fuser/Generator, or a LlamaIndex LLM.
        top_k: How many of the best answers the fuser sees.
        timeout: Seconds each member may take (``None``: no limit).
        strategy: The ranker's aggregation strategy (``None``: its default).
        device: Where the ranker/fuser models load.

    Example:
        .. code-block:: python

            from llama_index.core.llms import ChatMessage
            from llamaindex_blender import BlenderLLM

            llm = BlenderLLM(llms=[llm_a, llm_b, llm_c], ranker="llm-blender/PairRM")
            response = llm.chat([ChatMessage(role="user", content="Name a prime above 10.")])
            response.message.content
            response.additional_kwargs["ranking"]
    """

    llms: list[LLM] = Field(description="The member LLMs.")
    member_names: list[str] = Field(description="One unique name per member.")
    ranker: Any = Field(default=DEFAULT_RANKER, exclude=True, description="Ranker or its spec.")
    fuser: Any = Field(default=None, exclude=True, description="Fuser or its spec.")
    top_k: int = Field(default=3, ge=1, description="How many best answers to fuse.")
    timeout: float | None = Field(default=60.0, description="Seconds per member (None: none).")
    strategy: str | None = Field(default=None, description="Ranker aggregation strategy.")
    device: str | None = Field(default=None, description="Device for ranker/fuser models.")

    _engine: BlendEngine = PrivateAttr()

    def __init__(self, llms: Sequence[LLM] | Mapping[str, LLM], **kwargs: Any) -> None:
        if isinstance(llms, LLM) or not isinstance(llms, Sequence | Mapping):
            raise TypeError("llms must be a list of LLMs or a mapping of name to LLM")
        members = list(llms.values()) if isinstance(llms, Mapping) else list(llms)
        if not members:
            raise ValueError("BlenderLLM needs at least one member LLM")
        for i, member in enumerate(members):
            if not isinstance(member, LLM):
                raise TypeError(f"member {i} is not a LlamaIndex LLM: {type(member).__name__}")
        names = kwargs.pop("member_names", None) or member_names(llms)
        if len(set(names)) != len(names) or len(names) != len(members):
            raise ValueError(f"member names must be unique, one per member: {names}")
        super().__init__(llms=members, member_names=names, **kwargs)
        self._engine = BlendEngine(
            dict(zip(names, members, strict=True)),
            ranker=self.ranker,
            fuser=self.fuser,
            top_k=self.top_k,
            strategy=self.strategy,
            device=self.device,
        )

    @classmethod
    def class_name(cls) -> str:
        return "BlenderLLM"

    @property
    def metadata(self) -> LLMMetadata:
        """Derived from the members: the smallest context window and output budget."""
        metas = [member.metadata for member in self.llms]
        # Non-positive values mean "unknown" (MockLLM reports num_output=-1).
        windows = [m.context_window for m in metas if m.context_window > 0]
        outputs = [m.num_output for m in metas if m.num_output > 0]
        return LLMMetadata(
            context_window=min(windows) if windows else DEFAULT_CONTEXT_WINDOW,
            num_output=min(outputs) if outputs else DEFAULT_NUM_OUTPUTS,
            is_chat_model=any(m.is_chat_model for m in metas),
            is_function_calling_model=any(m.is_function_calling_model for m in metas),
            model_name="blender(" + ", ".join(self.member_names) + ")",
        )

    @property
    def members(self) -> dict[str, LLM]:
        """The members by name."""
        return dict(zip(self.member_names, self.llms, strict=True))

    # ------------------------------------------------------------------ plumbing

    def _call(self, call: Any) -> MemberResults[Any]:
        return call_members(self.member_names, self.llms, call, timeout=self.timeout)

    async def _acall(self, call: Any) -> MemberResults[Any]:
        return await acall_members(self.member_names, self.llms, call, timeout=self.timeout)

    def _blend(self, instruction: str, results: MemberResults[str]) -> BlendResult:
        return self._engine.blend(instruction, results.outputs, results=results)

    async def _ablend(self, instruction: str, results: MemberResults[str]) -> BlendResult:
        return await self._engine.ablend(instruction, results.outputs, results=results)

    @staticmethod
    def _chat_response(result: BlendResult) -> ChatResponse:
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=result.text),
            raw=result,
            additional_kwargs=blend_info(result),
        )

    @staticmethod
    def _completion_response(result: BlendResult) -> CompletionResponse:
        return CompletionResponse(
            text=result.text, raw=result, additional_kwargs=blend_info(result)
        )

    # ------------------------------------------------------------------ chat / complete

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        instruction = instruction_from_messages(messages)
        results = self._call(lambda m: m.chat(messages, **kwargs).message.content or "")
        return self._chat_response(self._blend(instruction, results))

    def _complete(self, prompt: str, formatted: bool, **kwargs: Any) -> CompletionResponse:
        results = self._call(lambda m: m.complete(prompt, formatted=formatted, **kwargs).text)
        return self._completion_response(self._blend(prompt, results))

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        instruction = instruction_from_messages(messages)

        async def call(member: LLM) -> str:
            return (await member.achat(messages, **kwargs)).message.content or ""

        results = await self._acall(call)
        return self._chat_response(await self._ablend(instruction, results))

    async def _acomplete(self, prompt: str, formatted: bool, **kwargs: Any) -> CompletionResponse:
        async def call(member: LLM) -> str:
            return (await member.acomplete(prompt, formatted=formatted, **kwargs)).text

        results = await self._acall(call)
        return self._completion_response(await self._ablend(prompt, results))

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(messages, **kwargs)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._complete(prompt, formatted, **kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await self._achat(messages, **kwargs)

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return await self._acomplete(prompt, formatted, **kwargs)

    # The streaming forms call the members and rank eagerly (inside this method's span, so that
    # the members' and the ranker's spans nest under it), then stream the fused answer: an LLM
    # fuser's tokens as it generates them, another fuser's answer as one chunk. The last chunk
    # carries the blend (``additional_kwargs``, ``raw``).

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        instruction = instruction_from_messages(messages)
        results = self._call(lambda m: m.chat(messages, **kwargs).message.content or "")
        events = self._engine.stream(instruction, results.outputs, results=results)
        if events is None:  # inside a running event loop: blend, one chunk
            return _one_chat_chunk(self._chat_response(self._blend(instruction, results)))
        return _chat_chunks(primed(events))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        results = self._call(lambda m: m.complete(prompt, formatted=formatted, **kwargs).text)
        events = self._engine.stream(prompt, results.outputs, results=results)
        if events is None:
            return _one_completion_chunk(self._completion_response(self._blend(prompt, results)))
        return _completion_chunks(primed(events))

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        instruction = instruction_from_messages(messages)

        async def call(member: LLM) -> str:
            return (await member.achat(messages, **kwargs)).message.content or ""

        results = await self._acall(call)
        events = self._engine.astream(instruction, results.outputs, results=results)
        return _achat_chunks(await aprimed(events))

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        async def call(member: LLM) -> str:
            return (await member.acomplete(prompt, formatted=formatted, **kwargs)).text

        results = await self._acall(call)
        events = self._engine.astream(prompt, results.outputs, results=results)
        return _acompletion_chunks(await aprimed(events))

    # ------------------------------------------------------------------ tools

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg))
        elif user_msg is not None:
            messages.append(user_msg)
        return {"messages": messages, **kwargs}

    def _tool_call(self, tools: Sequence[BaseTool], messages: list[ChatMessage], **kw: Any) -> Any:
        def call(member: LLM) -> ChatResponse:
            if isinstance(member, FunctionCallingLLM):
                return member.chat_with_tools(tools, chat_history=messages, **kw)
            return member.chat(messages)

        return call

    def _render_proposal(self, name: str, response: ChatResponse) -> str:
        lines = [response.message.content or ""]
        for call in self._tool_selections(name, response):
            args = json.dumps(call.tool_kwargs, sort_keys=True, default=str)
            lines.append(f"{call.tool_name}({args})")
        return "\n".join(line for line in lines if line)

    def _tool_selections(self, name: str, response: ChatResponse) -> list[ToolSelection]:
        member = self.members.get(name)
        if isinstance(member, FunctionCallingLLM):
            try:
                return list(
                    member.get_tool_calls_from_response(response, error_on_no_tool_call=False)
                )
            except NotImplementedError:
                pass
        calls = response.message.additional_kwargs.get("tool_calls") or []
        return [call for call in calls if isinstance(call, ToolSelection)]

    def _select(self, result: BlendResult, responses: Mapping[str, ChatResponse]) -> ChatResponse:
        chosen = result.best_models[0]
        response = responses[chosen].model_copy(deep=False)
        response.additional_kwargs = {
            **responses[chosen].additional_kwargs,
            **blend_info(result, "tool_calls"),
            "selected_model": chosen,
        }
        response.raw = result
        return response

    def _tool_messages(
        self, user_msg: str | ChatMessage | None, chat_history: list[ChatMessage] | None
    ) -> list[ChatMessage]:
        messages: list[ChatMessage] = self._prepare_chat_with_tools([], user_msg, chat_history)[
            "messages"
        ]
        return messages

    @dispatcher.span
    def chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Each member proposes (tool calls or an answer); the best proposal is selected."""
        messages = self._tool_messages(user_msg, chat_history)
        call = self._tool_call(
            tools,
            messages,
            verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls,
            tool_required=tool_required,
            **kwargs,
        )
        results = self._call(call)
        texts = {n: self._render_proposal(n, r) for n, r in results.outputs.items()}
        result = self._engine.blend(
            instruction_from_messages(messages),
            texts,
            results=results,
            select_only=True,
        )
        return self._select(result, results.outputs)

    @dispatcher.span
    async def achat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Async :meth:`chat_with_tools`: members propose concurrently."""
        messages = self._tool_messages(user_msg, chat_history)
        kw = {
            "verbose": verbose,
            "allow_parallel_tool_calls": allow_parallel_tool_calls,
            "tool_required": tool_required,
            **kwargs,
        }

        async def call(member: LLM) -> ChatResponse:
            if isinstance(member, FunctionCallingLLM):
                return await member.achat_with_tools(tools, chat_history=messages, **kw)
            return await member.achat(messages)

        results = await self._acall(call)
        texts = {n: self._render_proposal(n, r) for n, r in results.outputs.items()}
        result = await self._engine.ablend(
            instruction_from_messages(messages),
            texts,
            results=results,
            select_only=True,
        )
        return self._select(result, results.outputs)

    def stream_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponseGen:
        """:meth:`chat_with_tools`, yielded as one chunk."""
        response = self.chat_with_tools(
            tools,
            user_msg=user_msg,
            chat_history=chat_history,
            verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls,
            tool_required=tool_required,
            **kwargs,
        )
        return _one_chat_chunk(response)

    async def astream_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponseAsyncGen:
        """:meth:`achat_with_tools`, yielded as one chunk."""
        response = await self.achat_with_tools(
            tools,
            user_msg=user_msg,
            chat_history=chat_history,
            verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls,
            tool_required=tool_required,
            **kwargs,
        )
        return _aone_chat_chunk(response)

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        """The tool calls of the selected proposal, parsed by the member that made it."""
        name = response.additional_kwargs.get("selected_model")
        if name not in self.members:
            raise ValueError(
                "this response was not produced by BlenderLLM.chat_with_tools "
                "(no 'selected_model' in additional_kwargs)"
            )
        calls = self._tool_selections(name, response)
        if not calls and error_on_no_tool_call:
            raise ValueError(f"the selected proposal (from {name!r}) has no tool calls")
        return calls


def _one_chat_chunk(response: ChatResponse) -> ChatResponseGen:
    response.delta = response.message.content or ""
    yield response


def _one_completion_chunk(response: CompletionResponse) -> CompletionResponseGen:
    response.delta = response.text
    yield response


async def _aone_chat_chunk(response: ChatResponse) -> ChatResponseAsyncGen:
    response.delta = response.message.content or ""
    yield response


def _pieces(
    pending: str | None, event: BlendStreamEvent
) -> tuple[str | None, tuple[str, BlendResult | None] | None]:
    """One delta behind, so that the last piece goes out with the result: the new pending
    delta and the piece to send now (``None``: nothing yet)."""
    if event.kind == "delta":
        return event.text, (pending, None) if pending is not None else None
    return None, (pending or "", event.result)


def _chat_chunks(events: Iterator[BlendStreamEvent]) -> ChatResponseGen:
    text, pending = "", None
    for event in events:
        pending, piece = _pieces(pending, event)
        if piece is not None:
            yield _chat_chunk(text := text + piece[0], piece[0], piece[1])


async def _achat_chunks(events: AsyncIterator[BlendStreamEvent]) -> ChatResponseAsyncGen:
    text, pending = "", None
    async for event in events:
        pending, piece = _pieces(pending, event)
        if piece is not None:
            yield _chat_chunk(text := text + piece[0], piece[0], piece[1])


def _completion_chunks(events: Iterator[BlendStreamEvent]) -> CompletionResponseGen:
    text, pending = "", None
    for event in events:
        pending, piece = _pieces(pending, event)
        if piece is not None:
            yield _completion_chunk(text := text + piece[0], piece[0], piece[1])


async def _acompletion_chunks(
    events: AsyncIterator[BlendStreamEvent],
) -> CompletionResponseAsyncGen:
    text, pending = "", None
    async for event in events:
        pending, piece = _pieces(pending, event)
        if piece is not None:
            yield _completion_chunk(text := text + piece[0], piece[0], piece[1])


def _chat_chunk(text: str, delta: str, result: BlendResult | None) -> ChatResponse:
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
        delta=delta,
        raw=result,
        additional_kwargs=blend_info(result) if result is not None else {},
    )


def _completion_chunk(text: str, delta: str, result: BlendResult | None) -> CompletionResponse:
    return CompletionResponse(
        text=text,
        delta=delta,
        raw=result,
        additional_kwargs=blend_info(result) if result is not None else {},
    )
