"""The one member runner (sync and async), the lazy loader and the blend metadata schema."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from pipeline_fakes import LengthRanker

from blender_core import Blender, CallableGenerator
from blender_core.generators.timing import add_queue_time
from blender_core.lazy import Lazy
from blender_core.members import ModelFailure, Outcome, arun_members, run_members


def _boom() -> str:
    raise RuntimeError("boom")


def _own_timeout() -> str:
    raise TimeoutError("upstream deadline")


def _queued_then(answer: str, wait: float, work: float) -> Any:
    def call(*prompt: str) -> str:
        time.sleep(wait)
        add_queue_time(wait)  # as a generator waiting for a shared model reports it
        time.sleep(work)
        return answer

    return call


def _check_str(output: Any) -> str:
    if not isinstance(output, str):
        raise TypeError(f"returned {type(output).__name__}, not str")
    return output


def _by_name(outcomes: list[Outcome[Any]]) -> dict[str, Outcome[Any]]:
    return {o.name: o for o in outcomes}


def test_sync_runner_answers_errors_and_timeouts_as_data() -> None:
    gate = threading.Event()
    calls = {
        "ok": lambda: "hi",
        "error": _boom,
        "own_timeout": _own_timeout,
        "slow": lambda: gate.wait(5) and "late",
        "bad": lambda: 42,
    }
    try:
        outcomes = run_members(calls, timeout=0.3, check=_check_str)
    finally:
        gate.set()
    assert [o.name for o in outcomes] == list(calls)  # input order
    got = _by_name(outcomes)
    assert got["ok"].ok and got["ok"].output == "hi"
    assert got["error"].failure == ModelFailure("error", "error", "RuntimeError: boom")
    # a member's own TimeoutError is a timeout (the cause), told apart from ours by its message
    assert got["own_timeout"].failure is not None
    assert got["own_timeout"].failure.kind == "timeout"
    assert got["own_timeout"].failure.message == "TimeoutError: upstream deadline"
    assert got["slow"].failure == ModelFailure("slow", "timeout", "no answer within 0.3 s")
    assert got["slow"].latency >= 0.25
    assert got["bad"].failure is not None
    assert got["bad"].failure.message == "TypeError: returned int, not str"


def test_async_runner_matches_the_sync_one() -> None:
    cleaned = asyncio.Event()

    async def slow() -> str:
        try:
            await asyncio.sleep(5)
        finally:
            cleaned.set()
        return "late"

    async def ok() -> str:
        return "hi"

    async def error() -> str:
        raise RuntimeError("boom")

    async def own_timeout() -> str:
        raise TimeoutError("upstream deadline")

    async def main() -> list[Outcome[str]]:
        outcomes = await arun_members(
            {"ok": ok, "error": error, "own_timeout": own_timeout, "slow": slow}, timeout=0.2
        )
        # the timed-out call was cancelled and awaited before the runner returned
        assert cleaned.is_set()
        return outcomes

    got = _by_name(asyncio.run(main()))
    assert got["ok"].output == "hi"
    assert got["error"].failure == ModelFailure("error", "error", "RuntimeError: boom")
    assert got["own_timeout"].failure == ModelFailure(
        "own_timeout", "timeout", "TimeoutError: upstream deadline"
    )
    assert got["slow"].failure == ModelFailure("slow", "timeout", "no answer within 0.2 s")


def test_queueing_is_measured_apart_from_generation_sync_and_async() -> None:
    outcomes = run_members(
        {"waits": _queued_then("a", 0.3, 0.05), "free": _queued_then("b", 0.0, 0.05)},
        timeout=5,
    )
    got = _by_name(outcomes)
    assert got["waits"].queued >= 0.3
    assert got["waits"].latency < 0.3  # generation only
    assert got["free"].queued == 0.0

    async def main() -> list[Outcome[str]]:
        async def in_thread() -> str:
            return await asyncio.to_thread(_queued_then("a", 0.3, 0.05))

        return await arun_members({"waits": in_thread}, timeout=5)

    (outcome,) = asyncio.run(main())
    assert outcome.queued >= 0.3
    assert outcome.latency < 0.3


def test_blender_latencies_are_generation_time_and_queueing_is_reported() -> None:
    blender = Blender(
        {
            "waits": CallableGenerator(_queued_then("first answer", 0.3, 0.0), name="waits"),
            "free": CallableGenerator(lambda prompt: "second answer", name="free"),
        },
        ranker=LengthRanker(),
        timeout=5,
    )
    result = blender.blend("q")
    assert result.queueing["waits"] >= 0.3
    assert "free" not in result.queueing
    assert result.latencies["waits"] < 0.3
    data = result.to_dict()
    assert data["queueing"] == dict(result.queueing)


def test_blend_metadata_schema_keys() -> None:
    result = Blender(
        [CallableGenerator(lambda p: "a", name="x"), CallableGenerator(lambda p: "b", name="y")],
        ranker=LengthRanker(),
    ).blend("q")
    assert set(result.to_dict()) == {
        "text",
        "instruction",
        "input",
        "candidates",
        "texts",
        "models_by_text",
        "blend_mode",
        "ranking",
        "best",
        "best_models",
        "top_k",
        "latencies",
        "queueing",
        "rank_latency",
        "fuse_latency",
        "failures",
        "calls",
    }


def test_lazy_builds_once_across_threads_and_retries_after_a_failure() -> None:
    built: list[int] = []
    start = threading.Barrier(8)

    def factory() -> int:
        time.sleep(0.05)
        built.append(1)
        return len(built)

    lazy = Lazy(factory)
    assert not lazy.loaded
    values: list[int] = []

    def worker() -> None:
        start.wait()
        values.append(lazy.get())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert values == [1] * 8 and built == [1] and lazy.loaded

    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("hub did not answer")
        return "ranker"

    again = Lazy(flaky)
    with pytest.raises(OSError):
        again.get()
    assert not again.loaded
    assert asyncio.run(again.aget()) == "ranker"
    assert again.get() == "ranker" and len(attempts) == 2
