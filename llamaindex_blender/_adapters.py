"""Adapters between LlamaIndex LLMs and the framework-free core protocols."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms import LLM

from blender_core.chat import chat_prompt
from blender_core.generators.base import BaseGenerator
from blender_core.members import name_members
from blender_core.types import Prompt

__all__ = [
    "LlamaIndexGenerator",
    "instruction_from_messages",
    "member_names",
    "prompt_from_messages",
    "reported_usage",
    "to_core_fuser",
    "to_llama_messages",
]


def to_llama_messages(prompt: Sequence[Mapping[str, str]]) -> list[ChatMessage]:
    """Core chat messages (``{"role", "content"}`` mappings) as LlamaIndex ``ChatMessage``s."""
    messages = []
    for i, message in enumerate(prompt):
        role = message.get("role")
        if role not in {r.value for r in MessageRole}:
            raise ValueError(f"message {i} has an unknown role {role!r}")
        messages.append(ChatMessage(role=MessageRole(role), content=message.get("content", "")))
    return messages


def prompt_from_messages(messages: Sequence[ChatMessage]) -> tuple[str, str]:
    """``(instruction, input)`` the ranker and the fuser read for a chat: the core's one chat
    policy (:func:`blender_core.chat.chat_prompt`: the latest user message, and the rest of
    the conversation as the input)."""
    return chat_prompt([(m.role.value, m.content or "") for m in messages])


def instruction_from_messages(messages: Sequence[ChatMessage]) -> str:
    """The instruction of :func:`prompt_from_messages` (the latest user message)."""
    return prompt_from_messages(messages)[0]


_INPUT_KEYS = ("prompt_tokens", "input_tokens", "prompt_token_count")
_OUTPUT_KEYS = ("completion_tokens", "output_tokens", "candidates_token_count")
"""The token-count names LlamaIndex's own token counter reads (OpenAI, Anthropic, Gemini)."""


def _field(source: Any, key: str) -> Any:
    return source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)


def _count(source: Any, keys: Sequence[str]) -> int | None:
    for key in keys:
        value = _field(source, key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def reported_usage(response: Any) -> tuple[int, int] | None:
    """A member response's own ``(input_tokens, output_tokens)``, or ``None`` when it reports none.

    Read where LlamaIndex LLMs put them: the provider's ``usage`` (``usage_metadata``) in
    ``raw`` (a mapping or an object: OpenAI's ``prompt_tokens``/``completion_tokens``,
    Anthropic's ``input_tokens``/``output_tokens``, Gemini's ``prompt_token_count``/
    ``candidates_token_count``), else the counts in ``additional_kwargs`` (OpenAI's
    integration copies them there).
    """
    raw = getattr(response, "raw", None)
    sources = [
        usage
        for usage in (_field(raw, "usage"), _field(raw, "usage_metadata"))
        if usage is not None
    ]
    sources.append(getattr(response, "additional_kwargs", None) or {})
    for source in sources:
        tokens_in, tokens_out = _count(source, _INPUT_KEYS), _count(source, _OUTPUT_KEYS)
        if tokens_in is not None and tokens_out is not None:
            return tokens_in, tokens_out
    return None


def _llm_name(llm: LLM) -> str:
    base = llm.metadata.model_name
    return base if base and base != "unknown" else llm.class_name()


def member_names(llms: Sequence[LLM] | Mapping[str, LLM]) -> list[str]:
    """Unique, readable names for ensemble members (the core's
    :func:`~blender_core.members.name_members`): mapping keys as given; otherwise each LLM's
    ``metadata.model_name`` (its class name where that is ``"unknown"``), with ``#2``, ``#3``...
    appended to repeats."""
    return list(name_members(llms, _llm_name))


class LlamaIndexGenerator(BaseGenerator):
    """A LlamaIndex ``LLM`` as a core :class:`~blender_core.generators.base.Generator`.

    A string prompt goes to ``llm.complete``, a chat (a list of ``{"role", "content"}``
    mappings) to ``llm.chat``; the async forms use the LLM's native ``acomplete``/``achat``.
    This is how a LlamaIndex LLM becomes the LLM fuser (``LLMFuser``) of a blend.

    Example:
        .. code-block:: python

            from blender_core.fusion.llm_fuser import LLMFuser
            from llama_index.core.llms import MockLLM

            fuser = LLMFuser(LlamaIndexGenerator(MockLLM(), name="mock"))
    """

    def __init__(self, llm: LLM, *, name: str | None = None) -> None:
        if not isinstance(llm, LLM):
            raise TypeError(f"llm must be a LlamaIndex LLM, got {type(llm).__name__}")
        super().__init__(name or member_names([llm])[0])
        self.llm = llm

    def generate(self, prompt: Prompt, **kwargs: Any) -> str:
        if isinstance(prompt, str):
            return self.llm.complete(prompt, **kwargs).text
        return self.llm.chat(to_llama_messages(prompt), **kwargs).message.content or ""

    async def agenerate(self, prompt: Prompt, **kwargs: Any) -> str:
        if isinstance(prompt, str):
            return (await self.llm.acomplete(prompt, **kwargs)).text
        response = await self.llm.achat(to_llama_messages(prompt), **kwargs)
        return response.message.content or ""

    def stream(self, prompt: Prompt, **kwargs: Any) -> Iterator[str]:
        """The LLM's ``stream_complete``/``stream_chat`` deltas (a fuser's tokens)."""
        if isinstance(prompt, str):
            responses: Any = self.llm.stream_complete(prompt, **kwargs)
        else:
            responses = self.llm.stream_chat(to_llama_messages(prompt), **kwargs)
        for response in responses:
            if response.delta:
                yield response.delta

    async def astream(self, prompt: Prompt, **kwargs: Any) -> AsyncIterator[str]:
        """Async :meth:`stream` (``astream_complete``/``astream_chat``)."""
        if isinstance(prompt, str):
            responses: Any = await self.llm.astream_complete(prompt, **kwargs)
        else:
            responses = await self.llm.astream_chat(to_llama_messages(prompt), **kwargs)
        async for response in responses:
            if response.delta:
                yield response.delta


def to_core_fuser(fuser: Any) -> Any:
    """A LlamaIndex LLM as a core Generator (for ``load_fuser``); other specs pass through."""
    if isinstance(fuser, LLM):
        return LlamaIndexGenerator(fuser)
    return fuser
