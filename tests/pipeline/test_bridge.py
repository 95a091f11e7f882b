"""The one sync bridge (blender_core.bridge): outside and inside a running event loop."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import AsyncIterator

import pytest

from blender_core.bridge import in_running_loop, iterate_sync, run_sync, sync_twin, thread_twin

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


async def _ascale(value: int, *, factor: int = 2) -> int:
    """Scale ``value``."""
    await asyncio.sleep(0)
    return value * factor


def test_sync_twin_keeps_the_signature_and_runs_inside_a_running_loop() -> None:
    scale = sync_twin(_ascale, name="scale", doc="Sync scale.")
    assert scale(3) == 6 and scale(3, factor=5) == 15
    assert scale.__name__ == "scale" and scale.__doc__ == "Sync scale."
    assert inspect.signature(scale) == inspect.signature(_ascale)

    async def inside() -> int:
        return scale(4)  # a sync caller inside a running loop: the bridge's worker thread

    assert asyncio.run(inside()) == 8
    with pytest.raises(TypeError):
        scale(3, 4)  # keyword-only stays keyword-only


async def test_thread_twin_runs_the_blocking_function_off_the_loop() -> None:
    loop_thread = threading.get_ident()

    def where(tag: str, *, suffix: str = "") -> tuple[str, int]:
        return tag + suffix, threading.get_ident()

    awhere = thread_twin(where, name="awhere", doc="Async where.")
    tag, thread = await awhere("x", suffix="!")
    assert tag == "x!" and thread != loop_thread
    assert awhere.__name__ == "awhere" and inspect.iscoroutinefunction(awhere)
    assert inspect.signature(awhere) == inspect.signature(where)
