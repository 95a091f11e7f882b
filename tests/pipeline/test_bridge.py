"""The one sync bridge (blender_core.bridge): outside and inside a running event loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator

import pytest

from blender_core.bridge import in_running_loop, iterate_sync, run_sync

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("bridge_test", default="unset")


async def _answer() -> tuple[str, str, int]:
    await asyncio.sleep(0)
    value = await asyncio.to_thread(lambda: 21 * 2)
    return VAR.get(), threading.current_thread().name, value


def test_run_sync_without_a_loop_runs_in_this_thread() -> None:
    VAR.set("outer")
    assert not in_running_loop()
    value, thread, answer = run_sync(_answer)
    assert (value, answer) == ("outer", 42)
    assert thread == threading.current_thread().name


async def test_run_sync_inside_a_loop_runs_in_a_worker_with_the_callers_context() -> None:
    VAR.set("inner")
    assert in_running_loop()
    value, thread, answer = run_sync(_answer)
    assert (value, answer) == ("inner", 42)
    assert thread != threading.current_thread().name


def test_run_sync_propagates_exceptions() -> None:
    async def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_sync(boom)


class _Events:
    def __init__(self) -> None:
        self.closed = False

    async def gen(self) -> AsyncIterator[int]:
        try:
            for i in range(5):
                await asyncio.sleep(0)
                yield i
        finally:
            self.closed = True


def test_iterate_sync_yields_lazily_and_closes_early() -> None:
    events = _Events()
    started: list[bool] = []

    def make() -> AsyncIterator[int]:
        started.append(True)
        return events.gen()

    iterator = iterate_sync(make)
    assert started == []  # nothing runs before the first next
    assert next(iterator) == 0
    assert next(iterator) == 1
    iterator.close()  # type: ignore[attr-defined]
    assert events.closed


async def test_iterate_sync_inside_a_loop() -> None:
    events = _Events()
    assert list(iterate_sync(events.gen)) == [0, 1, 2, 3, 4]
    assert events.closed
