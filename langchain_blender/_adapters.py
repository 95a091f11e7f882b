"""Bridges between LangChain objects and the framework-free core.

* :class:`LangChainGenerator` adapts a chat model, an LLM or any runnable that returns a message
  or a string to the core ``Generator`` protocol, so a LangChain model can be the LLM fuser.
* Small helpers turn messages into the texts a ranker sees (answers, the chat prompt).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import set_config_context

from blender_core.chat import chat_prompt
from blender_core.generators.base import BaseGenerator
from blender_core.types import Prompt

__all__ = [
    "LangChainGenerator",
    "ainvoke_in_context",
    "current_call_config",
    "has_tool_calls",
    "instruction_from_messages",
    "invoke_in_context",
    "message_text",
    "prompt_from_messages",
    "runnable_name",
    "use_call_config",
]

_CALL_CONFIG: ContextVar[RunnableConfig | None] = ContextVar(
    "langchain_blender_call_config", default=None
)


def current_call_config() -> RunnableConfig | None:
    """The runnable config of the ensemble call in progress, if any (callbacks for child runs)."""
    return _CALL_CONFIG.get()


@contextlib.contextmanager
def use_call_config(config: RunnableConfig | None) -> Iterator[None]:
    """Make ``config`` the config a :class:`LangChainGenerator` uses within the block.

    The core pipeline calls the fuser without LangChain configs; this context variable is how a
    chat-model fuser's run still nests under the ensemble's run (it follows ``asyncio`` tasks and
    ``asyncio.to_thread``).
    """
    token = _CALL_CONFIG.set(config)
    try:
        yield
    finally:
        _CALL_CONFIG.reset(token)


def set_call_config(config: RunnableConfig | None) -> None:
    """Set the :func:`use_call_config` config for the rest of the current context (for a
    context made to run one call in, e.g. ``contextvars.copy_context()``)."""
    _CALL_CONFIG.set(config)


def invoke_in_context(
    runnable: Runnable[Any, Any], input: Any, config: RunnableConfig | None, **kwargs: Any
) -> Any:
    """``runnable.invoke`` with ``config`` also set as the child-runnable context.

    Bindings and sequences merge the context's config into the one passed; inside a chain that
    context belongs to the chain's step, so without this a child run would nest under the chain
    instead of under the ensemble.
    """
    if config is None:
        return runnable.invoke(input, **kwargs)
    with set_config_context(config) as context:
        return context.run(runnable.invoke, input, config, **kwargs)


async def ainvoke_in_context(
    runnable: Runnable[Any, Any], input: Any, config: RunnableConfig | None, **kwargs: Any
) -> Any:
    """Async :func:`invoke_in_context`."""
    if config is None:
        return await runnable.ainvoke(input, **kwargs)
    with set_config_context(config) as context:
        return await asyncio.create_task(runnable.ainvoke(input, config, **kwargs), context=context)


def runnable_name(runnable: Any) -> str:
    """A readable name for a member: its model name if it has one, else the runnable's name."""
    for attr in ("model_name", "model", "model_id", "deployment_name"):
        value = getattr(runnable, attr, None)
        if isinstance(value, str) and value:
            return value
    if isinstance(runnable, Runnable):
        return runnable.get_name()
    return type(runnable).__name__


def message_text(output: Any) -> str:
    """The text of a model output: a message's text content, or a string as is."""
    if isinstance(output, str):
        return output
    if isinstance(output, BaseMessage):
        return output.text
    raise TypeError(f"expected a message or a string from the model, got {type(output).__name__}")


def has_tool_calls(output: Any) -> bool:
    """Whether ``output`` is an AI message that calls tools."""
    return isinstance(output, AIMessage) and bool(output.tool_calls)


def prompt_from_messages(messages: Sequence[BaseMessage]) -> tuple[str, str]:
    """``(instruction, input)`` the ranker and the fuser read for a chat: the core's one chat
    policy (:func:`blender_core.chat.chat_prompt`: the latest human message, and the rest of
    the conversation as the input)."""
    return chat_prompt([(m.type, m.text) for m in messages])


def instruction_from_messages(messages: Sequence[BaseMessage]) -> str:
    """The instruction of :func:`prompt_from_messages` (the latest human message)."""
    return prompt_from_messages(messages)[0]


def _prompt_to_lc(prompt: Prompt) -> Any:
    if isinstance(prompt, str):
        return prompt
    converted = []
    for message in prompt:
        if not isinstance(message, Mapping) or "content" not in message:
            raise TypeError("a chat prompt must be a list of {'role', 'content'} mappings")
        converted.append((str(message.get("role", "user")), str(message["content"])))
    return converted


class LangChainGenerator(BaseGenerator):
    """A LangChain chat model, LLM or runnable as a core ``Generator`` (for example, a fuser).

    The runnable gets the prompt (a string, or ``(role, content)`` pairs for a chat) and must
    return a message or a string. Its run nests under the ensemble call in progress (see
    :func:`use_call_config`), or under the ``config`` keyword when one is passed.

    Example:
        .. code-block:: python

            from blender_core import LLMFuser
            from langchain_blender import LangChainGenerator

            fuser = LLMFuser(LangChainGenerator(chat_model, name="fuser"))
    """

    def __init__(self, runnable: Runnable[Any, Any], *, name: str | None = None) -> None:
        if not isinstance(runnable, Runnable):
            raise TypeError(f"expected a LangChain Runnable, got {type(runnable).__name__}")
        super().__init__(name or runnable_name(runnable))
        self.runnable = runnable

    def _config(self, kwargs: dict[str, Any]) -> RunnableConfig | None:
        config = kwargs.pop("config", None)
        return config if config is not None else current_call_config()

    def generate(self, prompt: Prompt, **kwargs: Any) -> str:
        """Invoke the runnable on ``prompt`` and return its text."""
        config = self._config(kwargs)
        output = invoke_in_context(self.runnable, _prompt_to_lc(prompt), config, **kwargs)
        return message_text(output)

    async def agenerate(self, prompt: Prompt, **kwargs: Any) -> str:
        """Async :meth:`generate` (the runnable's native ``ainvoke``)."""
        config = self._config(kwargs)
        output = await ainvoke_in_context(self.runnable, _prompt_to_lc(prompt), config, **kwargs)
        return message_text(output)

    def stream(self, prompt: Prompt, **kwargs: Any) -> Iterator[str]:
        """The runnable's ``stream``: its text as it is generated (a fuser's tokens)."""
        config = self._config(kwargs)
        for chunk in self.runnable.stream(_prompt_to_lc(prompt), config, **kwargs):
            text = message_text(chunk)
            if text:
                yield text

    async def astream(self, prompt: Prompt, **kwargs: Any) -> AsyncIterator[str]:
        """Async :meth:`stream` (the runnable's native ``astream``)."""
        config = self._config(kwargs)
        async for chunk in self.runnable.astream(_prompt_to_lc(prompt), config, **kwargs):
            text = message_text(chunk)
            if text:
                yield text
