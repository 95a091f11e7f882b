"""The one sync bridge: run the async core from sync callers, inside a running event loop too.

Every sync entry point of the library (``Blender.blend``, the LangChain ``invoke``, the LlamaIndex
``chat``) is the async implementation run through :func:`run_sync` or :func:`iterate_sync`:

* from a thread without a running event loop, the coroutine runs in a private loop in this
  thread (a fresh loop per call, closed afterwards);
* from a thread that runs an event loop (a notebook cell, a sync callback of an async
  framework), where a second loop cannot start, it runs in a private loop of a worker thread,
  with the caller's context variables (tracing configs travel in them).

The private loop's default executor is its own and is not waited for on close: a sync model that
outlived its deadline in a worker thread cannot be stopped, and its late answer is dropped.

Example:
    .. code-block:: python

        from blender_core.bridge import iterate_sync, run_sync

        result = run_sync(lambda: blender.ablend("Say hi"))
        for event in iterate_sync(lambda: blender.astream("Say hi")):
            ...

A function with a sync and an async form is written once: :func:`sync_twin` makes the sync form
of a coroutine function (through :func:`run_sync`), :func:`thread_twin` the async form of a
blocking one (in a worker thread); both keep the parameters, so type checkers and ``help`` see
the same signature.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

__all__ = ["in_running_loop", "iterate_sync", "run_sync", "sync_twin", "thread_twin"]

T = TypeVar("T")
P = ParamSpec("P")

_DEFAULT_WORKERS = 8


def in_running_loop() -> bool:
    """Whether the calling thread is running an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _PrivateLoop:
    """An event loop of its own, with a default executor of ``workers`` threads."""

    def __init__(self, workers: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blender")
        self.loop.set_default_executor(self.executor)

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def close(self) -> None:
        loop = self.loop
        try:
            # As asyncio.run does: cancel what is left (the other blends of a failed batch).
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            self.executor.shutdown(wait=False)


class _Host:
    """Where the private loop lives: this thread, or one worker thread (inside a running loop)."""

    def __init__(self, workers: int) -> None:
        self._pool: ThreadPoolExecutor | None = None
        if in_running_loop():
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blender-sync")
        self._private: _PrivateLoop = self.call(_PrivateLoop, workers)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            return fn(*args)
        return self._pool.submit(contextvars.copy_context().run, fn, *args).result()

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        return self.call(lambda: self._private.run(make()))

    def close(self) -> None:
        try:
            self.call(self._private.close)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=False)


def run_sync(make: Callable[[], Awaitable[T]], *, workers: int = _DEFAULT_WORKERS) -> T:
    """Run the coroutine ``make()`` to completion from sync code and return its result.

    Args:
        make: Makes the coroutine (called where it runs, so that a coroutine is never created
            in one loop's thread and awaited in another's).
        workers: Threads of the private loop's default executor (``asyncio.to_thread`` work,
            sync models): enough for every sync model at once.
    """
    host = _Host(workers)
    try:
        return host.run(make)
    finally:
        host.close()


def iterate_sync(
    make: Callable[[], AsyncIterator[T]], *, workers: int = _DEFAULT_WORKERS
) -> Iterator[T]:
    """Iterate the async iterator ``make()`` from sync code, one item at a time.

    Nothing starts until the first ``next``; closing the iterator early closes the async one
    (its ``finally`` blocks run) and the private loop.
    """
    host = _Host(workers)
    events: AsyncIterator[T] | None = None
    try:
        events = host.call(make)
        while True:
            try:
                item = host.run(lambda: anext(events))
            except StopAsyncIteration:
                return
            yield item
    finally:
        try:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                host.run(aclose)
        finally:
            host.close()


def _named(twin: Callable[..., Any], original: Callable[..., Any], name: str, doc: str) -> None:
    functools.update_wrapper(twin, original)  # signature and annotations (``__wrapped__``)
    owner, _, _ = original.__qualname__.rpartition(".")
    twin.__name__ = name
    twin.__qualname__ = f"{owner}.{name}" if owner else name
    twin.__doc__ = doc


def sync_twin(afunc: Callable[P, Coroutine[Any, Any, T]], *, name: str, doc: str) -> Callable[P, T]:
    """The sync form of the coroutine function ``afunc``: the same parameters, run to completion
    through :func:`run_sync` (so it works inside a running event loop too).

    Args:
        afunc: The async implementation.
        name: The sync function's name (``afunc``'s without its ``a``, usually).
        doc: Its docstring.

    Example:
        .. code-block:: python

            async def afetch(url: str, *, timeout: float = 10.0) -> str: ...

            fetch = sync_twin(afetch, name="fetch", doc="Sync :func:`afetch`.")
    """

    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(lambda: afunc(*args, **kwargs))

    _named(call, afunc, name, doc)
    return call


def thread_twin(
    func: Callable[P, T], *, name: str, doc: str
) -> Callable[P, Coroutine[Any, Any, T]]:
    """The async form of the blocking function ``func``: the same parameters, run in a worker
    thread (``asyncio.to_thread``, the caller's context variables included) so that the event
    loop goes on meanwhile.

    Args:
        func: The blocking implementation.
        name: The async function's name (``a`` + ``func``'s, usually).
        doc: Its docstring.
    """

    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.to_thread(func, *args, **kwargs)

    _named(call, func, name, doc)
    return call
