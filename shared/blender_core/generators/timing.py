"""Queueing time of a generator call, kept apart from its generation time.

Local generators that share one loaded model (:meth:`HuggingFaceGenerator.with_options` copies)
generate one at a time: a call may first wait for the model. The caller that times a call
(:class:`~blender_core.blend.Blender`) opens :func:`measure_queueing` around it; a generator that
waits for a shared resource reports the wait with :func:`add_queue_time`. The wait travels in a
context variable, so it reaches worker threads started with ``asyncio.to_thread``.

Example:
    .. code-block:: python

        with measure_queueing() as timing:
            answer = generator.generate(prompt)
        timing.queued  # seconds spent waiting for the shared model
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "CallTiming",
    "add_queue_time",
    "measure_queueing",
    "note_retry_error",
    "runner_time_left",
]


@dataclass
class CallTiming:
    """One member call as its runner sees it: seconds spent queueing (waiting for a shared
    model) rather than generating, the runner's deadline (``time.monotonic()``; ``None``: no
    limit) and the last error of an attempt the generator retried (the cause, should the
    deadline pass while it retries)."""

    queued: float = 0.0
    deadline: float | None = None
    retry_error: BaseException | None = None


_current: contextvars.ContextVar[CallTiming | None] = contextvars.ContextVar(
    "blender_call_timing", default=None
)


@contextlib.contextmanager
def measure_queueing() -> Iterator[CallTiming]:
    """Collect the queueing time of the calls started inside the block (tasks and threads
    created inside it keep reporting to it after it closes)."""
    timing = CallTiming()
    token = _current.set(timing)
    try:
        yield timing
    finally:
        _current.reset(token)


def add_queue_time(seconds: float) -> None:
    """Report ``seconds`` of waiting to the enclosing :func:`measure_queueing`, if any (a wait
    under a millisecond is taking a free lock, not queueing)."""
    timing = _current.get()
    if timing is not None and seconds >= 1e-3:
        timing.queued += seconds


def runner_time_left() -> float | None:
    """Seconds left before the enclosing runner's deadline (``None``: no runner or no limit):
    a generator that would wait past it to retry gives up with the error it has instead."""
    timing = _current.get()
    if timing is None or timing.deadline is None:
        return None
    return timing.deadline - time.monotonic()


def note_retry_error(error: BaseException) -> None:
    """Report the error of an attempt about to be retried to the enclosing runner: if its
    deadline passes during the retry, the failure is this error (its kind and message), not a
    bare timeout."""
    timing = _current.get()
    if timing is not None:
        timing.retry_error = error
