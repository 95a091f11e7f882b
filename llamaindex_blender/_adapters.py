"""Adapters between LlamaIndex LLMs and the framework-free core protocols."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms import LLM

from blender_core.generators.base import BaseGenerator
from blender_core.types import Prompt

__all__ = [
    "LlamaIndexGenerator",
    "instruction_from_messages",
    "member_names",
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


def instruction_from_messages(messages: Sequence[ChatMessage]) -> str:
    """The text a ranker sees for a chat: the last user message (else the last message)."""
    if not messages:
        raise ValueError("messages is empty: nothing to answer")
    for message in reversed(messages):
        if message.role == MessageRole.USER:
            return message.content or ""
    return messages[-1].content or ""


def member_names(llms: Sequence[LLM] | Mapping[str, LLM]) -> list[str]:
    """Unique, readable names for ensemble members.

    Mapping keys are used as given; otherwise each LLM's ``metadata.model_name`` (or its class
    name where the model name is ``"unknown"``), with ``#2``, ``#3`` ... appended to repeats.
    """
    if isinstance(llms, Mapping):
        names = [str(key) for key in llms]
        if any(not name for name in names):
            raise ValueError("member names must be non-empty strings")
        return names
    names = []
    seen: dict[str, int] = {}
    for llm in llms:
        base = llm.metadata.model_name
        if not base or base == "unknown":
            base = llm.class_name()
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


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
