"""Latencies mean generation time: waiting for a shared local model is reported apart."""

from __future__ import annotations

import threading
import time
from typing import Any

from blender_core.generators.base import BaseGenerator
from blender_core.generators.timing import add_queue_time, measure_queueing


class SharedModelGenerator(BaseGenerator):
    """Generators sharing one 'model' that answers one call at a time (like HF copies)."""

    def __init__(self, name: str, lock: threading.Lock, seconds: float) -> None:
        super().__init__(name)
        self.lock = lock
        self.seconds = seconds

    def generate(self, prompt: Any, **kwargs: Any) -> str:
        waiting = time.perf_counter()
        with self.lock:
            add_queue_time(time.perf_counter() - waiting)
            time.sleep(self.seconds)
        return f"{self.name}: {prompt}"


def test_queueing_is_reported_apart_from_generation() -> None:
    from concurrent.futures import ThreadPoolExecutor
    from contextvars import copy_context

    lock = threading.Lock()
    generators = [SharedModelGenerator(f"m{i}", lock, 0.3) for i in range(3)]

    def call(generator: SharedModelGenerator) -> float:
        with measure_queueing() as timing:
            generator.generate("hi")
        return timing.queued

    with ThreadPoolExecutor(3) as pool:
        waits = list(pool.map(lambda g: copy_context().run(call, g), generators))
    # together they waited ~0.3 + 0.6 s for the shared model; the first did not wait
    assert sorted(w > 0 for w in waits) == [False, True, True]
    assert 0.75 <= sum(waits) < 1.5


def test_queue_time_outside_a_measurement_is_ignored() -> None:
    add_queue_time(1.0)  # no enclosing measurement: nothing to report to
    with measure_queueing() as timing:
        add_queue_time(0.5)
        add_queue_time(-1.0)
    assert timing.queued == 0.5
