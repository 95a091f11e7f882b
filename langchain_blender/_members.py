"""LangChain ensemble members: naming them, calling them concurrently, their usage.

Members are called with LangChain configs (so their runs nest under the caller's run); each
answer (a message or a string) or failure becomes a :class:`MemberOutcome`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ContextThreadPoolExecutor

from blender_core.blend import ModelFailure
from langchain_blender._adapters import ainvoke_in_context, invoke_in_context, runnable_name
from langchain_blender._callbacks import MEMBER_TAG, ChildCallbacks, child_config

__all__ = [
    "MemberOutcome",
    "Prepare",
    "ainvoke_members",
    "invoke_members",
    "member_usage",
    "name_members",
]


def name_members(models: Any) -> dict[str, Runnable[Any, Any]]:
    """Members as a name -> runnable dict: mapping keys, or derived (unique) names for a list."""
    if isinstance(models, Mapping):
        items = list(models.items())
    elif isinstance(models, str) or not isinstance(models, Sequence):
        raise TypeError(
            "models must be a list of chat models/runnables or a mapping name -> model, "
            f"got {type(models).__name__}"
        )
    else:
        items = []
        seen: dict[str, int] = {}
        for model in models:
            base = runnable_name(model)
            seen[base] = seen.get(base, 0) + 1
            items.append((base if seen[base] == 1 else f"{base}#{seen[base]}", model))
    if not items:
        raise ValueError("an ensemble needs at least one model")
    named: dict[str, Runnable[Any, Any]] = {}
    for position, (name, model) in enumerate(items):
        if not isinstance(name, str) or not name:
            raise ValueError(f"model {position} has no name (a non-empty string)")
        if not isinstance(model, Runnable):
            raise TypeError(
                f"model {name!r} is a {type(model).__name__}, not a LangChain Runnable "
                "(a chat model, an LLM or a runnable returning a message or a string)"
            )
        if name in named:
            raise ValueError(f"duplicate model name {name!r}")
        named[name] = model
    return named


@dataclass
class MemberOutcome:
    """One member's answer (``output``: a message or a string) or its failure, and latency."""

    name: str
    output: Any = None
    failure: ModelFailure | None = None
    latency: float = 0.0


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_output(name: str, output: Any) -> Any:
    if isinstance(output, str | BaseMessage):
        return output
    raise TypeError(f"{name} returned {type(output).__name__}, not a message or a string")


Prepare = Callable[[str, Runnable[Any, Any]], tuple[Runnable[Any, Any], dict[str, Any]]]
"""Turns a member into the runnable to call and its call kwargs (binds tools, stop, ...)."""


def _call_member(
    name: str,
    member: Runnable[Any, Any],
    input: Any,
    config: RunnableConfig,
    prepare: Prepare,
    max_retries: int,
) -> MemberOutcome:
    start = time.perf_counter()
    try:
        runnable, kwargs = prepare(name, member)
        for attempt in range(max_retries + 1):
            try:
                output = _check_output(name, invoke_in_context(runnable, input, config, **kwargs))
                break
            except Exception:
                if attempt == max_retries:
                    raise
    except Exception as exc:
        failure = ModelFailure(name, "error", _describe(exc), exc)
        return MemberOutcome(name, failure=failure, latency=time.perf_counter() - start)
    return MemberOutcome(name, output=output, latency=time.perf_counter() - start)


def invoke_members(
    members: Mapping[str, Runnable[Any, Any]],
    input: Any,
    *,
    callbacks: ChildCallbacks,
    prepare: Prepare,
    timeout: float | None,
    max_retries: int = 0,
) -> list[MemberOutcome]:
    """Call every member at once in worker threads; each gets ``timeout`` seconds.

    A member still running at the deadline is a ``"timeout"`` failure; its thread cannot be
    stopped and its late answer is dropped.
    """
    pool = ContextThreadPoolExecutor(max_workers=len(members), thread_name_prefix="blender")
    start = time.perf_counter()
    try:
        futures = {
            name: pool.submit(
                _call_member,
                name,
                member,
                input,
                child_config(callbacks, name, MEMBER_TAG),
                prepare,
                max_retries,
            )
            for name, member in members.items()
        }
        concurrent.futures.wait(futures.values(), timeout=timeout)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    outcomes = []
    for name, future in futures.items():
        if future.done():
            outcomes.append(future.result())
        else:
            message = f"no answer within {timeout:g} s"
            failure = ModelFailure(name, "timeout", message, TimeoutError(message))
            outcomes.append(
                MemberOutcome(name, failure=failure, latency=time.perf_counter() - start)
            )
    return outcomes


async def _acall_member(
    name: str,
    member: Runnable[Any, Any],
    input: Any,
    config: RunnableConfig,
    prepare: Prepare,
    timeout: float | None,
    max_retries: int,
) -> MemberOutcome:
    start = time.perf_counter()

    async def call() -> Any:
        runnable, kwargs = prepare(name, member)
        for attempt in range(max_retries + 1):
            try:
                output = await ainvoke_in_context(runnable, input, config, **kwargs)
                return _check_output(name, output)
            except Exception:
                if attempt == max_retries:
                    raise
        raise AssertionError("unreachable")

    task = asyncio.ensure_future(call())
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    latency = time.perf_counter() - start
    if not done:
        task.cancel()
        message = f"no answer within {timeout:g} s"
        return MemberOutcome(
            name,
            failure=ModelFailure(name, "timeout", message, TimeoutError(message)),
            latency=latency,
        )
    exc = task.exception()
    if exc is not None:
        return MemberOutcome(
            name, failure=ModelFailure(name, "error", _describe(exc), exc), latency=latency
        )
    return MemberOutcome(name, output=task.result(), latency=latency)


async def ainvoke_members(
    members: Mapping[str, Runnable[Any, Any]],
    input: Any,
    *,
    callbacks: ChildCallbacks,
    prepare: Prepare,
    timeout: float | None,
    max_retries: int = 0,
) -> list[MemberOutcome]:
    """Async :func:`invoke_members`: every member's native ``ainvoke``, concurrently."""
    return list(
        await asyncio.gather(
            *(
                _acall_member(
                    name,
                    member,
                    input,
                    child_config(callbacks, name, MEMBER_TAG),
                    prepare,
                    timeout,
                    max_retries,
                )
                for name, member in members.items()
            )
        )
    )


def member_usage(outcomes: Sequence[MemberOutcome]) -> UsageMetadata | None:
    """The summed ``usage_metadata`` of the members' AI messages (``None`` when none reported)."""
    usage: UsageMetadata | None = None
    for o in outcomes:
        if o.failure is None and isinstance(o.output, AIMessage) and o.output.usage_metadata:
            usage = add_usage(usage, o.output.usage_metadata)
    return usage
