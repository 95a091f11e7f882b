"""Latencies mean generation time: waiting for a shared local model is reported apart."""

from __future__ import annotations

import threading
import time
from typing import Any

from blender_core.blend import Blender
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
    lock = threading.Lock()
    blender = Blender(
        [SharedModelGenerator(f"m{i}", lock, 0.3) for i in range(3)],
        ranker="random",
        fuser="select",
        timeout=None,
    )
    result = blender.blend("hi")
    assert sorted(result.latencies) == ["m0", "m1", "m2"]
    # each generated for ~0.3 s; together they waited ~0.3 + 0.6 s for the shared model
    assert all(0.25 <= seconds < 0.55 for seconds in result.latencies.values()), result.latencies
    assert len(result.queued) == 2 and 0.75 <= sum(result.queued.values()) < 1.5
    assert result.to_dict()["queued"] == dict(result.queued)


def test_queue_time_outside_a_measurement_is_ignored() -> None:
    add_queue_time(1.0)  # no enclosing measurement: nothing to report to
    with measure_queueing() as timing:
        add_queue_time(0.5)
        add_queue_time(-1.0)
    assert timing.queued == 0.5
