"""``BlenderLLM``: an ensemble of LlamaIndex LLMs that ranks and fuses their answers."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

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
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM, ToolSelection

from blender_core.bridge import iterate_sync, run_sync
from blender_core.engine import DEFAULT_OPTIONS, Engine, check_options, engine_options
from blender_core.members import MemberResults
from blender_core.policies import check_policy_members
from blender_core.tool_calls import ToolCall, ToolProposal
from llamaindex_blender._adapters import member_names, prompt_from_messages, reported_usage
from llamaindex_blender._engine import aprimed, blend_info, make_engine, primed, with_texts

if TYPE_CHECKING:
    from llama_index.core.tools import BaseTool

    from blender_core.blend import BlendResult, BlendStreamEvent
    from blender_core.staging import CallReport

__all__ = ["BlenderLLM"]

T = TypeVar("T")
R = TypeVar("R")
Call = Callable[[LLM], Awaitable[T]]
"""How each member is called (a sync method in a worker thread, or the async one)."""
Answer = ChatResponse | CompletionResponse
"""A member's answer to ``chat`` or ``complete``."""
_TOOLS, _TOOL_KWARGS = "tools", "tool_kwargs"
"""The ``chat`` keywords of a tool call (``_prepare_chat_with_tools``)."""


class BlenderLLM(FunctionCallingLLM):
    """An ensemble of LlamaIndex LLMs: every member answers, the answers are ranked and fused.

    Use it anywhere LlamaIndex takes an LLM. ``complete`` calls each member's ``complete``;
    ``chat`` calls each member's own ``chat`` (so their chat templates and system prompts stay as
    they are). Members run concurrently: the sync methods call each member's sync method in a
    worker thread (in a copy of the caller's context, so members' instrumentation spans nest
    under this LLM's span), the async ones its async method. The distinct answers are ranked
    (PairRM by default) on the core's chat policy (the latest user message, the rest of the
    conversation as the input) and the ``top_k`` best are fused by ``fuser`` (``None``/
    ``"select"`` keeps the best one; a GenFuser path, a core Fuser, or a LlamaIndex LLM that
    rewrites them).

    One implementation per behaviour: each method is the async core (members, then the core
    :class:`~blender_core.engine.Engine`), its sync form runs through the core's one bridge.

    Every response carries the blend in ``additional_kwargs`` (``BlendResult.to_dict()``:
    ``blend_mode``, ``candidates`` by member, ``ranking``, ``texts``, ``models_by_text``,
    ``top_k``, ``best_models``, ``failures``, ``latencies``, ``queueing``, ``calls``, ...; the
    same keys as the LangChain ensembles and the gateway) and the core ``BlendResult`` in
    ``raw``.

    Which members a call asks is the ``policy``'s (:mod:`blender_core.policies`): every member
    (``"all"``), a cascade that calls them in stages and stops once its ranked best is
    confidently the best (``"cascade"``), or the members a learned router picks for the prompt
    (``"router"``). ``additional_kwargs["calls"]`` reports it (``called``, ``skipped`` with the
    reason, ``stages``, ``calls_made``, ``calls_saved``, each member's ``usage`` (its reported
    tokens, else estimates) and ``cost``); each stage of member calls is a span (named
    ``"<policy>.stage-..."``) under this LLM's span, the members' spans under it. A failing
    or timed-out member is reported in ``failures`` and the call still answers; when fewer than
    ``min_candidates`` answer, ``blender_core.blend.BlendError`` names each one and its cause.

    Streaming methods call the members and rank first (the fusion needs every member's complete
    answer), then stream the fused answer: an LLM fuser's tokens as it generates them, another
    fuser's answer as one chunk; the last chunk carries the blend.

    With tools (``chat_with_tools``/``achat_with_tools``, as used by ``FunctionAgent`` and
    ``predict_and_call``), function-calling members propose tool calls with their own
    ``chat_with_tools`` (other members answer with ``chat``); the proposals are ranked and the
    best member's response is returned as is (:mod:`blender_core.tool_calls`: tool calls are
    selected, never fused).

    Args:
        models: The members, a list (named by their ``metadata.model_name``) or a mapping of
            name to LLM. (``llms=`` is a deprecated alias, for one release.)
        ranker: A core ranker or its spec (``load_ranker``): a PairRM hub id or path,
            ``"consensus"``, ``"random"``, ``{"type": ..., options}``.
        fuser: A fuser spec (``load_fuser``), a core Fuser/Generator, or a LlamaIndex LLM.
        top_k: How many of the best answers the fuser sees.
        timeout: Seconds each member may take (``None``: no limit).
        min_candidates: Fewest distinct answers to go on with.
        max_retries: Retries of a member that raises, within ``timeout``.
        strategy: The ranker's aggregation strategy (``None``: its default).
        device: Where the ranker/fuser models load.
        priors: Member priors (a ``MemberPriors`` or a file from ``blender calibrate``).
        policy: Which members a call asks: ``"all"`` (default), ``"cascade"``, ``"router"`` or a
            policy object (:mod:`blender_core.policies`).
        policy_options: The named policy's options (a cascade's ``threshold``,
            ``calibration``, ``stage_sizes``, ...; a router's ``model``, ``top_m``, ``mass``).
        costs: Member name -> price and expected latency (``MemberCost``, a dict of its fields,
            or a price per call).

    Example:
        .. code-block:: python

            from llama_index.core.llms import ChatMessage
            from llamaindex_blender import BlenderLLM

            llm = BlenderLLM(models=[llm_a, llm_b, llm_c], ranker="llm-blender/PairRM")
            response = llm.chat([ChatMessage(role="user", content="Name a prime above 10.")])
            response.message.content
            response.additional_kwargs["ranking"]
    """

    models: list[LLM] = Field(description="The member LLMs.")
    member_names: list[str] = Field(description="One unique name per member.")
    ranker: Any = Field(
        default=DEFAULT_OPTIONS["ranker"], exclude=True, description="Ranker or its spec."
    )
    fuser: Any = Field(default=None, exclude=True, description="Fuser or its spec.")
    top_k: int = Field(default=DEFAULT_OPTIONS["top_k"], description="Best answers to fuse.")
    timeout: float | None = Field(
        default=DEFAULT_OPTIONS["timeout"], description="Seconds per member (None: none)."
    )
    min_candidates: int = Field(
        default=DEFAULT_OPTIONS["min_candidates"], description="Fewest distinct answers."
    )
    max_retries: int = Field(
        default=DEFAULT_OPTIONS["max_retries"], description="Retries of a failing member."
    )
    strategy: str | None = Field(default=None, description="Ranker aggregation strategy.")
    device: str | None = Field(default=None, description="Device for ranker/fuser models.")
    priors: Any = Field(default=None, exclude=True, description="Member priors.")
    policy: Any = Field(
        default=DEFAULT_OPTIONS["policy"], exclude=True, description="Which members to call."
    )
    policy_options: dict[str, Any] | None = Field(
        default=None, exclude=True, description="The policy's options."
    )
    costs: dict[str, Any] | None = Field(
        default=None, exclude=True, description="Member prices and latencies."
    )

    _engine: Engine = PrivateAttr()

    def __init__(
        self,
        models: Sequence[LLM] | Mapping[str, LLM] | None = None,
        *,
        llms: Sequence[LLM] | Mapping[str, LLM] | None = None,
        **kwargs: Any,
    ) -> None:
        if llms is not None:
            warnings.warn(
                "BlenderLLM(llms=...) is deprecated: use models=... (the same name on every "
                "front); llms= goes in the next release",
                DeprecationWarning,
                stacklevel=2,
            )
            if models is not None:
                raise ValueError("give models= or llms= (deprecated), not both")
            models = llms
        if models is None:
            raise TypeError("BlenderLLM needs models=: a list of LLMs or a mapping name -> LLM")
        if isinstance(models, LLM) or not isinstance(models, Sequence | Mapping):
            raise TypeError("models must be a list of LLMs or a mapping of name to LLM")
        members = list(models.values()) if isinstance(models, Mapping) else list(models)
        if not members:
            raise ValueError("BlenderLLM needs at least one member LLM")
        for i, member in enumerate(members):
            if not isinstance(member, LLM):
                raise TypeError(f"member {i} is not a LlamaIndex LLM: {type(member).__name__}")
        names = kwargs.pop("member_names", None) or member_names(models)
        if len(set(names)) != len(names) or len(names) != len(members):
            raise ValueError(f"member names must be unique, one per member: {names}")
        check_options(
            top_k=kwargs.get("top_k", 3),
            timeout=kwargs.get("timeout", 60.0),
            min_candidates=kwargs.get("min_candidates", 1),
            max_retries=kwargs.get("max_retries", 0),
        )
        if kwargs.get("min_candidates", 1) > len(members):
            raise ValueError(
                f"min_candidates={kwargs['min_candidates']} can never be met with "
                f"{len(members)} model(s)"
            )
        super().__init__(models=members, member_names=names, **kwargs)
        self._engine = make_engine(**engine_options(self))
        check_policy_members(self._engine.policy, names, self._engine.costs)

    @property
    def llms(self) -> list[LLM]:
        """Deprecated alias of :attr:`models`."""
        warnings.warn("BlenderLLM.llms is deprecated: use models", DeprecationWarning, stacklevel=2)
        return self.models

    @classmethod
    def class_name(cls) -> str:
        return "BlenderLLM"

    @property
    def metadata(self) -> LLMMetadata:
        """Derived from the members: the smallest context window and output budget."""
        metas = [member.metadata for member in self.models]
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
        return dict(zip(self.member_names, self.models, strict=True))

    # ------------------------------------------------------------------ the async core

    async def _members_answer(
        self,
        calls: Mapping[str, Callable[[], Awaitable[T]]],
        prompt: tuple[str, str],
        text_of: Callable[[T], str],
        usage_of: Callable[[T], tuple[int, int] | None],
    ) -> tuple[MemberResults[T], CallReport]:
        """The members the policy chooses, stage by stage (each stage in a span), each bounded by
        ``timeout`` (retries included): their answers and the report of the calls
        (:meth:`Engine.acall_members <blender_core.engine.Engine.acall_members>`)."""
        outcomes, report = await self._engine.acall_members(
            prompt[0],
            calls,
            input=prompt[1],
            retries=self.max_retries,
            text_of=text_of,
            usage_of=usage_of,
        )
        return MemberResults.from_outcomes(outcomes), report

    async def _answers(
        self, call: Call[Answer], prompt: tuple[str, str]
    ) -> tuple[MemberResults[str], CallReport]:
        """The members' texts for ``prompt`` (``call``: how a member answers)."""
        calls = {name: partial(call, member) for name, member in self.members.items()}
        results, report = await self._members_answer(calls, prompt, _text_of, reported_usage)
        texts = {name: _text_of(answer) for name, answer in results.outputs.items()}
        return with_texts(texts, results), report

    async def _ablend(self, call: Call[Answer], prompt: tuple[str, str]) -> BlendResult:
        results, report = await self._answers(call, prompt)
        return await self._engine.ablend(prompt[0], results, input=prompt[1], calls=report)

    async def _astream(
        self, call: Call[Answer], prompt: tuple[str, str]
    ) -> AsyncIterator[BlendStreamEvent]:
        results, report = await self._answers(call, prompt)
        events = self._engine.astream(prompt[0], results, input=prompt[1], calls=report)
        async for event in events:
            yield event

    @staticmethod
    def _chat_call(messages: Sequence[ChatMessage], kwargs: Any, *, sync: bool) -> Call[Answer]:
        if sync:
            return lambda m: asyncio.to_thread(lambda: m.chat(messages, **kwargs))

        async def call(member: LLM) -> Answer:
            return await member.achat(messages, **kwargs)

        return call

    @staticmethod
    def _complete_call(prompt: str, formatted: bool, kwargs: Any, *, sync: bool) -> Call[Answer]:
        if sync:
            return lambda m: asyncio.to_thread(
                lambda: m.complete(prompt, formatted=formatted, **kwargs)
            )

        async def call(member: LLM) -> Answer:
            return await member.acomplete(prompt, formatted=formatted, **kwargs)

        return call

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

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        if _TOOLS in kwargs:
            tools, kw = _tool_request(kwargs)
            return run_sync(lambda: self._aselect_proposal(tools, messages, kw, sync=True))
        call = self._chat_call(messages, kwargs, sync=True)
        prompt = prompt_from_messages(messages)
        return self._chat_response(run_sync(lambda: self._ablend(call, prompt)))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        call = self._complete_call(prompt, formatted, kwargs, sync=True)
        return self._completion_response(run_sync(lambda: self._ablend(call, (prompt, ""))))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        if _TOOLS in kwargs:
            tools, kw = _tool_request(kwargs)
            return await self._aselect_proposal(tools, messages, kw, sync=False)
        call = self._chat_call(messages, kwargs, sync=False)
        return self._chat_response(await self._ablend(call, prompt_from_messages(messages)))

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        call = self._complete_call(prompt, formatted, kwargs, sync=False)
        return self._completion_response(await self._ablend(call, (prompt, "")))

    # The streaming forms call the members and rank eagerly (inside this method's span, so that
    # the members' and the ranker's spans nest under it), then stream the fused answer: an LLM
    # fuser's tokens as it generates them, another fuser's answer as one chunk. The last chunk
    # carries the blend (``additional_kwargs``, ``raw``).

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        if _TOOLS in kwargs:
            tools, kw = _tool_request(kwargs)
            selected = run_sync(lambda: self._aselect_proposal(tools, messages, kw, sync=True))
            return _one_chat_chunk(selected)
        call = self._chat_call(messages, kwargs, sync=True)
        prompt = prompt_from_messages(messages)
        return _chunks(primed(iterate_sync(lambda: self._astream(call, prompt))), _chat_chunk)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        call = self._complete_call(prompt, formatted, kwargs, sync=True)
        events = iterate_sync(lambda: self._astream(call, (prompt, "")))
        return _chunks(primed(events), _completion_chunk)

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        if _TOOLS in kwargs:
            tools, kw = _tool_request(kwargs)
            selected = await self._aselect_proposal(tools, messages, kw, sync=False)
            return _aone_chat_chunk(selected)
        call = self._chat_call(messages, kwargs, sync=False)
        events = self._astream(call, prompt_from_messages(messages))
        return _achunks(await aprimed(events), _chat_chunk)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        call = self._complete_call(prompt, formatted, kwargs, sync=False)
        events = self._astream(call, (prompt, ""))
        return _achunks(await aprimed(events), _completion_chunk)

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
        """``FunctionCallingLLM``'s hook behind ``chat_with_tools`` and its async and streaming
        forms: the conversation, and the tools and options the members propose with (``chat``
        and its forms then select a proposal instead of blending)."""
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg))
        elif user_msg is not None:
            messages.append(user_msg)
        tool_kwargs = {
            "verbose": verbose,
            "allow_parallel_tool_calls": allow_parallel_tool_calls,
            "tool_required": tool_required,
            **kwargs,
        }
        return {"messages": messages, _TOOLS: list(tools), _TOOL_KWARGS: tool_kwargs}

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

    def _proposal(self, name: str, response: ChatResponse) -> ToolProposal:
        calls = tuple(
            ToolCall(c.tool_name, c.tool_kwargs, c.tool_id)
            for c in self._tool_selections(name, response)
        )
        return ToolProposal(text=response.message.content or "", tool_calls=calls, raw=response)

    async def _aselect_proposal(
        self,
        tools: Sequence[BaseTool],
        messages: Sequence[ChatMessage],
        kw: dict[str, Any],
        *,
        sync: bool,
    ) -> ChatResponse:
        """Each member proposes (tool calls or an answer: a function-calling member with its
        own ``chat_with_tools``, another with ``chat``); the best proposal is selected, never
        fused (:mod:`blender_core.tool_calls`)."""
        messages = list(messages)

        def propose(name: str, member: LLM) -> ToolProposal:
            if isinstance(member, FunctionCallingLLM):
                response = member.chat_with_tools(tools, chat_history=messages, **kw)
            else:
                response = member.chat(messages)
            return self._proposal(name, response)

        async def apropose(name: str, member: LLM) -> ToolProposal:
            if isinstance(member, FunctionCallingLLM):
                response = await member.achat_with_tools(tools, chat_history=messages, **kw)
            else:
                response = await member.achat(messages)
            return self._proposal(name, response)

        calls: dict[str, Callable[[], Awaitable[ToolProposal]]] = {
            name: partial(asyncio.to_thread, propose, name, member)
            if sync
            else partial(apropose, name, member)
            for name, member in self.members.items()
        }
        prompt = prompt_from_messages(messages)
        results, report = await self._members_answer(
            calls, prompt, ToolProposal.render, lambda p: reported_usage(p.raw)
        )
        selection = await self._engine.aselect(
            prompt[0], results.outputs, results=results, input=prompt[1], calls=report
        )
        chosen: ChatResponse = selection.proposal.raw
        response = chosen.model_copy(deep=False)
        response.additional_kwargs = {
            **chosen.additional_kwargs,
            **blend_info(selection.result),
            "selected_model": selection.model,
        }
        response.raw = selection.result
        return response

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


def _text_of(answer: Answer) -> str:
    """A member's answer text (a chat's message content, a completion's text)."""
    if isinstance(answer, ChatResponse):
        return answer.message.content or ""
    return answer.text


def _tool_request(kwargs: dict[str, Any]) -> tuple[list[BaseTool], dict[str, Any]]:
    """The tools (taken out of ``kwargs``) and the members' ``chat_with_tools`` options: those
    ``_prepare_chat_with_tools`` put in, and any other keyword of the call."""
    from llama_index.core.tools import BaseTool

    tools = kwargs.pop(_TOOLS)
    if isinstance(tools, BaseTool) or not isinstance(tools, Sequence):
        raise TypeError(f"tools must be a list of LlamaIndex tools, got {type(tools).__name__}")
    for tool in tools:
        if not isinstance(tool, BaseTool):
            raise TypeError(f"tools must be LlamaIndex tools (BaseTool), got {tool!r}")
    return list(tools), {**kwargs.pop(_TOOL_KWARGS, {}), **kwargs}


def _one_chat_chunk(response: ChatResponse) -> ChatResponseGen:
    response.delta = response.message.content or ""
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


def _chunks(events: Iterator[BlendStreamEvent], make: Callable[..., R]) -> Generator[R, None, None]:
    """The stream's responses (``make(text so far, delta, result)``), the blend on the last."""
    text, pending = "", None
    for event in events:
        pending, piece = _pieces(pending, event)
        if piece is not None:
            yield make(text := text + piece[0], piece[0], piece[1])


async def _achunks(
    events: AsyncIterator[BlendStreamEvent], make: Callable[..., R]
) -> AsyncGenerator[R, None]:
    """Async :func:`_chunks`."""
    text, pending = "", None
    async for event in events:
        pending, piece = _pieces(pending, event)
        if piece is not None:
            yield make(text := text + piece[0], piece[0], piece[1])


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
