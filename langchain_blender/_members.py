"""LangChain ensemble members: naming them, the calls the core runs, their usage.

:func:`member_calls` gives each member's call with a LangChain config (so its run nests under the
caller's run, or the stage run it is called in); the core engine runs them as its policy decides
(stages, a deadline each, retries) and each answer (a message or a string) or failure becomes a
:class:`MemberOutcome`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

from langchain_core.language_models import BaseLanguageModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableWithFallbacks
from langchain_core.runnables.base import RunnableBindingBase

from blender_core.members import Outcome
from blender_core.members import name_members as core_name_members
from langchain_blender._adapters import ainvoke_in_context, invoke_in_context, runnable_name
from langchain_blender._callbacks import MEMBER_TAG, ChildCallbacks, child_config, member_parent

__all__ = [
    "MemberOutcome",
    "Prepare",
    "is_language_model",
    "load_member",
    "member_calls",
    "member_usage",
    "name_members",
]


def load_member(model: Any) -> Any:
    """A member as given, or the chat model an ``init_chat_model`` string names
    (``"openai:gpt-4o-mini"``; the ``langchain`` package is imported only then)."""
    if not isinstance(model, str):
        return model
    from langchain.chat_models import init_chat_model

    return init_chat_model(model)


def _checked_member(name: str, model: Any) -> Runnable[Any, Any]:
    model = load_member(model)
    if not isinstance(model, Runnable):
        raise TypeError(
            f"model {name!r} is a {type(model).__name__}, not a LangChain Runnable "
            "(a chat model, an LLM or a runnable returning a message or a string)"
        )
    return model


def name_members(models: Any) -> dict[str, Runnable[Any, Any]]:
    """Members as a name -> runnable dict (the core's :func:`~blender_core.members.name_members`
    with each model's ``model_name``/``model`` or runnable name). A member may be an
    ``init_chat_model`` string (``"provider:model"``)."""
    return core_name_members(
        models, lambda model: runnable_name(load_member(model)), check=_checked_member
    )


def is_language_model(member: Runnable[Any, Any]) -> bool:
    """Whether ``member`` is a language model, also when wrapped by ``.bind()``,
    ``.with_retry()``, ``.with_config()`` or ``.with_fallbacks()`` (every fallback a language
    model too): such a member takes ``stop``/``temperature``/``max_tokens`` like a bare one."""
    while isinstance(member, RunnableBindingBase):
        member = member.bound
    if isinstance(member, RunnableWithFallbacks):
        return all(is_language_model(m) for m in (member.runnable, *member.fallbacks))
    return isinstance(member, BaseLanguageModel)


MemberOutcome = Outcome
"""One member's answer (``output``: a message or a string) or its failure, and its timing (the
core runner's :class:`~blender_core.members.Outcome`)."""


def _check_output(name: str, output: Any) -> Any:
    if isinstance(output, str | BaseMessage):
        return output
    raise TypeError(f"{name} returned {type(output).__name__}, not a message or a string")


Prepare = Callable[[str, Runnable[Any, Any]], tuple[Runnable[Any, Any], dict[str, Any]]]
"""Turns a member into the runnable to call and its call kwargs (binds tools, stop, ...)."""


def _call_member(
    name: str, member: Runnable[Any, Any], input: Any, config: RunnableConfig, prepare: Prepare
) -> Any:
    runnable, kwargs = prepare(name, member)  # in the call: a member that cannot fails alone
    return _check_output(name, invoke_in_context(runnable, input, config, **kwargs))


def _config(name: str, callbacks: ChildCallbacks) -> RunnableConfig:
    """A member run's config, made when it is called: it nests under the stage it is called in."""
    return child_config(member_parent(callbacks), name, MEMBER_TAG)


async def _acall_member(
    name: str, member: Runnable[Any, Any], input: Any, callbacks: ChildCallbacks, prepare: Prepare
) -> Any:
    runnable, kwargs = prepare(name, member)
    config = _config(name, callbacks)
    return _check_output(name, await ainvoke_in_context(runnable, input, config, **kwargs))


async def _thread_call_member(
    name: str, member: Runnable[Any, Any], input: Any, callbacks: ChildCallbacks, prepare: Prepare
) -> Any:
    """:func:`_call_member` in a worker thread (the sync forms' path)."""
    config = _config(name, callbacks)
    return await asyncio.to_thread(_call_member, name, member, input, config, prepare)


def member_calls(
    members: Mapping[str, Runnable[Any, Any]],
    input: Any,
    *,
    callbacks: ChildCallbacks,
    prepare: Prepare,
    sync: bool = False,
) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Member name -> a coroutine function calling it on ``input`` with a LangChain config (its
    run a child of ``callbacks``' run, or of the stage run it is called in): its native
    ``ainvoke``, or with ``sync`` its ``invoke`` in a worker thread (the sync forms of the
    ensembles). What the core's member runner and policy loop call."""
    call = _thread_call_member if sync else _acall_member
    return {
        name: partial(call, name, member, input, callbacks, prepare)
        for name, member in members.items()
    }


def member_usage(outcomes: Sequence[MemberOutcome[Any]]) -> UsageMetadata | None:
    """The summed ``usage_metadata`` of the members' AI messages (``None`` when none reported)."""
    usage: UsageMetadata | None = None
    for o in outcomes:
        if o.failure is None and isinstance(o.output, AIMessage) and o.output.usage_metadata:
            usage = add_usage(usage, o.output.usage_metadata)
    return usage
