"""Deadlines around calls that cannot bound themselves: sync functions, sync and async iterators.

A sync call that must be abandoned at its deadline runs in a daemon thread: Python cannot stop a
thread, so its late result is dropped, and a daemon thread (unlike a ``ThreadPoolExecutor``
worker, which is joined at interpreter exit) never keeps the process alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = [
    "DeadlineExceeded",
    "aiterate_until",
    "aiterate_with_deadline",
    "call_with_timeout",
    "iterate_with_deadline",
]

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """The deadline set by one of these helpers passed (not a ``TimeoutError`` of the work)."""


def _in_daemon_thread(fn: Callable[[], T], name: str) -> Future[T]:
    future: Future[T] = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = fn()
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=work, name=name, daemon=True).start()
    return future


def call_with_timeout(fn: Callable[..., T], timeout: float | None, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, or ``TimeoutError`` once ``timeout`` seconds have passed.

    With ``timeout=None`` the call runs in the calling thread, unbounded.
    """
    if timeout is None:
        return fn(*args, **kwargs)
    future = _in_daemon_thread(lambda: fn(*args, **kwargs), "blender-deadline")
    try:
        return future.result(timeout=timeout)
    except TimeoutError:
        if future.done() and future.exception() is not None:
            raise  # the call itself raised a TimeoutError
        raise DeadlineExceeded(f"no result within {timeout:g} s") from None


def iterate_with_deadline(iterator: Iterator[T], timeout: float | None) -> Iterator[T]:
    """The items of ``iterator``; ``TimeoutError`` when the whole iteration outlasts ``timeout``.

    Each ``next()`` runs in a daemon thread so that a stuck producer is abandoned at the
    deadline; closing this iterator closes ``iterator`` (once it is not running).
    """
    if timeout is None:
        yield from iterator
        return
    deadline = time.monotonic() + timeout
    sentinel: Any = object()
    pending: Future[Any] | None = None
    try:
        while True:
            pending = _in_daemon_thread(lambda: next(iterator, sentinel), "blender-deadline")
            remaining = deadline - time.monotonic()
            try:
                item = pending.result(timeout=max(remaining, 0.0))
            except TimeoutError:
                if pending.done() and pending.exception() is not None:
                    raise
                raise DeadlineExceeded(f"not finished within {timeout:g} s") from None
            pending = None
            if item is sentinel:
                return
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None and (pending is None or pending.done()):
            close()


async def aiterate_with_deadline(
    iterator: AsyncIterator[T], timeout: float | None
) -> AsyncIterator[T]:
    """The items of ``iterator``; ``TimeoutError`` when the whole iteration outlasts ``timeout``.

    Only the waits for the next item are bounded (the time the consumer spends between items
    counts towards the deadline but is never interrupted); ``iterator`` is closed at the end.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout

    def expired() -> DeadlineExceeded:
        return DeadlineExceeded(f"not finished within {timeout:g} s")

    async with contextlib.aclosing(aiterate_until(iterator, deadline, expired)) as items:
        async for item in items:
            yield item


async def aiterate_until(
    iterator: AsyncIterator[T], deadline: float | None, expired: Callable[[], BaseException]
) -> AsyncGenerator[T, None]:
    """The items of ``iterator`` until the event loop's clock reaches ``deadline``.

    Args:
        iterator: The async iterator; closed at the end (``aclose``), whatever the end.
        deadline: An event-loop time (``loop.time()``); ``None``: no limit.
        expired: Builds the error raised when the deadline passes while waiting for an item
            (the time the consumer spends between items counts but is never interrupted).
    """
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline) as scope:
                    item = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if scope.expired():
                    raise expired() from None
                raise
            yield item
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
