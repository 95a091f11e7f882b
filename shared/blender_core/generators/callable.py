"""Wrap any Python function (sync or async) as a generator."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from blender_core.generators.base import BaseGenerator
from blender_core.types import Prompt

__all__ = ["CallableGenerator"]


def _is_async_callable(fn: Any) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to completion from sync code, even when this thread runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called synchronously from inside a running loop: a fresh loop in a worker thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


class CallableGenerator(BaseGenerator):
    """A generator backed by a plain function ``fn(prompt, **kwargs) -> str`` (sync or async).

    ``prompt`` is what the caller passed: a string or a chat (a list of ``{"role", "content"}``
    messages). An async ``fn`` is awaited natively by :meth:`agenerate` and run in a fresh event
    loop by :meth:`generate`; a sync ``fn`` runs in a worker thread under :meth:`agenerate`.

    Args:
        fn: The function that answers a prompt.
        name: Name in results; defaults to the function's ``__name__``.

    Example:
        .. code-block:: python

            from blender_core import CallableGenerator

            shout = CallableGenerator(lambda prompt, **kw: str(prompt).upper(), name="shout")
            shout.generate("hello")  # "HELLO"
    """

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"CallableGenerator needs a callable, got {type(fn).__name__}")
        if name is None:
            name = getattr(fn, "__name__", None) or type(fn).__name__
            if name == "<lambda>":
                name = "lambda"
        super().__init__(name)
        self.fn = fn
        self.is_async = _is_async_callable(fn)

    def _check(self, result: Any) -> str:
        if not isinstance(result, str):
            raise TypeError(
                f"generator {self.name!r}: the callable must return a str, "
                f"got {type(result).__name__}"
            )
        return result

    def generate(self, prompt: Prompt, **kwargs: Any) -> str:
        result = self.fn(prompt, **kwargs)
        if inspect.isawaitable(result):
            result = _run_coroutine(_await(result))
        return self._check(result)

    async def agenerate(self, prompt: Prompt, **kwargs: Any) -> str:
        if self.is_async:
            result = await self.fn(prompt, **kwargs)
        else:
            result = await asyncio.to_thread(self.fn, prompt, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        return self._check(result)

    def __repr__(self) -> str:
        return f"CallableGenerator(name={self.name!r}, is_async={self.is_async})"


async def _await(awaitable: Any) -> Any:
    return await awaitable
