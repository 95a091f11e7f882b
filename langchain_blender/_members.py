"""LangChain ensemble members: naming them, calling them concurrently, their usage.

Members are called with LangChain configs (so their runs nest under the caller's run); each
answer (a message or a string) or failure becomes a :class:`MemberOutcome`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from langchain_core.language_models import BaseLanguageModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableWithFallbacks
from langchain_core.runnables.base import RunnableBindingBase

from blender_core.members import Outcome, arun_members
from blender_core.members import name_members as core_name_members
from langchain_blender._adapters import ainvoke_in_context, invoke_in_context, runnable_name
from langchain_blender._callbacks import MEMBER_TAG, ChildCallbacks, child_config

__all__ = [
    "MemberOutcome",
    "Prepare",
    "ainvoke_members",
    "is_language_model",
    "load_member",
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


async def _acall_member(
    name: str, member: Runnable[Any, Any], input: Any, config: RunnableConfig, prepare: Prepare
) -> Any:
    runnable, kwargs = prepare(name, member)
    return _check_output(name, await ainvoke_in_context(runnable, input, config, **kwargs))


async def _thread_call_member(*args: Any) -> Any:
    """:func:`_call_member` in a worker thread (the sync forms' path)."""
    return await asyncio.to_thread(_call_member, *args)


def _calls(
    members: Mapping[str, Runnable[Any, Any]],
    input: Any,
    callbacks: ChildCallbacks,
    prepare: Prepare,
    call: Callable[..., Any],
) -> dict[str, Callable[[], Any]]:
    return {
        name: partial(call, name, member, input, child_config(callbacks, name, MEMBER_TAG), prepare)
        for name, member in members.items()
    }


async def ainvoke_members(
    members: Mapping[str, Runnable[Any, Any]],
    input: Any,
    *,
    callbacks: ChildCallbacks,
    prepare: Prepare,
    timeout: float | None,
    max_retries: int = 0,
    sync: bool = False,
) -> list[MemberOutcome[Any]]:
    """Call every member at once (:func:`blender_core.members.arun_members`): its native
    ``ainvoke``, or with ``sync`` its ``invoke`` in a worker thread (the sync forms of the
    ensembles); each gets ``timeout`` seconds, retries included.

    A member still running at the deadline is a ``"timeout"`` failure; a worker thread cannot
    be stopped and its late answer is dropped.
    """
    call = _thread_call_member if sync else _acall_member
    calls = _calls(members, input, callbacks, prepare, call)
    return await arun_members(calls, timeout=timeout, retries=max_retries)


def member_usage(outcomes: Sequence[MemberOutcome[Any]]) -> UsageMetadata | None:
    """The summed ``usage_metadata`` of the members' AI messages (``None`` when none reported)."""
    usage: UsageMetadata | None = None
    for o in outcomes:
        if o.failure is None and isinstance(o.output, AIMessage) and o.output.usage_metadata:
            usage = add_usage(usage, o.output.usage_metadata)
    return usage
