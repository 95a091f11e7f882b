"""A torch intra-op thread budget, so local models running at once do not oversubscribe the cores.

torch gives every thread that runs an operator a pool of one intra-op thread per core. Several
local models generating or ranking at the same time (the members of a blend, a ranker beside a
generator, several callers of one process) then run ``cores x models`` busy threads on ``cores``
cores, and each parallel region waits for its slowest, descheduled thread: on a 2-core machine
three SmolLM2 members ran 3-4x slower than with one thread each. The same happens when other
processes keep the cores busy.

:func:`torch_section` wraps one model's forward or generate call. Inside it the calling thread
runs with ``cores // running`` intra-op threads, where ``running`` counts the sections active in
this process at that moment (itself included), and never more than the cores that other
processes left free when the budget was first computed. "Left free" is read from the kernel's
count of runnable tasks at that moment (``/proc/loadavg``, the least of a few samples), not from
the 1-minute load average: the average still holds the previous command's own work for minutes,
and a command run right after another would cap itself for nothing (measured: the demo 0.82x).
:func:`apply_thread_budget` does the same once, for a command that runs one model in its main
thread (``blender rank``).

The setting ``LLM_BLENDER_KIT_TORCH_THREADS`` overrides it:

- unset or ``auto``: the budget above (but if ``OMP_NUM_THREADS`` is set, torch keeps that);
- a number ``N >= 1``: every section runs with ``N`` threads, whatever else runs;
- ``off``: torch's threads are never changed.

Example:
    .. code-block:: python

        from blender_core.threads import torch_section

        with torch_section():
            output = model.generate(**inputs)
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

__all__ = [
    "THREADS_ENV",
    "apply_thread_budget",
    "cpu_cores",
    "thread_budget",
    "torch_section",
]

THREADS_ENV = "LLM_BLENDER_KIT_TORCH_THREADS"
"""The environment variable that overrides the budget (``auto``, a number, or ``off``)."""

_lock = threading.Lock()
_running = 0
_free_cores: int | None = None  # the cores other processes left free, sampled once


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _setting() -> int | str:
    """``"auto"``, ``"off"`` or a fixed thread count, from the environment."""
    raw = os.environ.get(THREADS_ENV, "").strip().lower()
    if raw in ("", "auto"):
        return "off" if os.environ.get("OMP_NUM_THREADS", "").strip() else "auto"
    if raw in ("off", "none", "0"):
        return "off"
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"{THREADS_ENV}={os.environ[THREADS_ENV]!r}: use 'auto', 'off' or a number of "
            "threads >= 1"
        )
    return value


def _runnable_elsewhere(samples: int = 5, interval: float = 0.01) -> float:
    """Tasks of other processes running or waiting for a core now (the least of ``samples``).

    Linux: ``/proc/loadavg``'s runnable count, less the thread reading it. Elsewhere: the
    1-minute load average (the best that is portable).
    """
    try:
        counts = []
        for i in range(samples):
            with open("/proc/loadavg", encoding="ascii") as handle:
                runnable = int(handle.read().split()[3].split("/")[0])
            counts.append(max(0, runnable - 1))
            if i + 1 < samples:
                time.sleep(interval)
        return float(min(counts))
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0


def _cores_left_free() -> int:
    """Cores not kept busy by other processes, sampled once, before our own models run."""
    global _free_cores
    if _free_cores is None:
        cores = cpu_cores()
        _free_cores = max(1, min(cores, cores - int(_runnable_elsewhere())))
    return _free_cores


def thread_budget(concurrent: int = 1) -> int | None:
    """Intra-op threads for each of ``concurrent`` torch models running at once.

    Returns ``None`` when torch's threads are to be left alone (``off``, or ``OMP_NUM_THREADS``
    set by the user).

    Raises:
        ValueError: ``LLM_BLENDER_KIT_TORCH_THREADS`` is neither ``auto``, ``off`` nor a number.
    """
    setting = _setting()
    if setting == "off":
        return None
    if isinstance(setting, int):
        return setting
    return max(1, min(cpu_cores() // max(1, concurrent), _cores_left_free()))


def _set_threads(threads: int) -> None:
    import torch

    # torch.set_num_threads acts on the calling thread's pool (and the default for new ones).
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def apply_thread_budget(concurrent: int = 1) -> int | None:
    """Size the calling thread's intra-op threads for ``concurrent`` models; returns the count
    (``None``: left alone, see :func:`thread_budget`)."""
    threads = thread_budget(concurrent)
    if threads is not None:
        _set_threads(threads)
    return threads


@contextlib.contextmanager
def torch_section() -> Iterator[int | None]:
    """Run one model call with its share of the cores (see the module docs).

    Yields the thread count used (``None``: left alone).
    """
    global _running
    with _lock:
        _running += 1
        running = _running
    try:
        threads = thread_budget(running)
        if threads is not None:
            _set_threads(threads)
        yield threads
    finally:
        with _lock:
            _running -= 1
