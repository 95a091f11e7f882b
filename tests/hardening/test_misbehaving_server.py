"""OpenAICompatibleGenerator against a misbehaving server on 127.0.0.1 started by these tests.

Every case is bounded by the configured deadline (``timeout``) and memory cap
(``max_response_bytes``) and asserted on its outcome and error type. The elapsed time of each
case is recorded and printed (``pytest -s``); the bounds asserted on them are hang checks far
above the expected times, not speed measurements.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hardening_server import MisbehavingServer

from blender_core import OpenAICompatibleGenerator
from blender_core.generators.errors import GeneratorError, GeneratorTimeoutError

KEY = "sk-live-TOPSECRET-misbehaving-0123456789"
MiB = 2**20
SLACK = 5.0  # seconds above the deadline that still count as "bounded" (a loaded machine)

_TIMES: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _report_times() -> Iterator[None]:
    yield
    print("\nmisbehaving server, elapsed per case:")
    for case, seconds in _TIMES.items():
        print(f"  {case:<46} {seconds:6.2f} s")


def _timed(case: str, fn: Callable[[], Any]) -> tuple[Any, BaseException | None, float]:
    start = time.perf_counter()
    result: Any = None
    error: BaseException | None = None
    try:
        result = fn()
    except Exception as exc:
        error = exc
    elapsed = time.perf_counter() - start
    _TIMES[case] = elapsed
    print(f"{case}: {elapsed:.2f} s -> {type(error).__name__ if error else 'ok'}")
    return result, error, elapsed


def _gen(server: MisbehavingServer, scenario: str, **kwargs: Any) -> OpenAICompatibleGenerator:
    kwargs.setdefault("api_key", KEY)
    return OpenAICompatibleGenerator("tiny", base_url=server.url(scenario), **kwargs)


def _both(gen: OpenAICompatibleGenerator) -> dict[str, Callable[[], Any]]:
    return {
        "sync": lambda: gen.generate("hi"),
        "async": lambda: asyncio.run(gen.agenerate("hi")),
        "stream": lambda: "".join(gen.stream("hi")),
        "astream": lambda: asyncio.run(_collect(gen)),
    }


async def _collect(gen: OpenAICompatibleGenerator) -> str:
    return "".join([delta async for delta in gen.astream("hi")])


@pytest.mark.parametrize("mode", ["sync", "async", "stream", "astream"])
def test_trickle_stops_at_the_total_deadline(fresh: MisbehavingServer, mode: str) -> None:
    scenario = "ssetrickle" if mode.endswith("stream") else "trickle"
    gen = _gen(fresh, scenario, timeout=1.5)
    _, error, elapsed = _timed(f"trickle ({mode}, timeout=1.5)", _both(gen)[mode])
    assert isinstance(error, GeneratorTimeoutError), error
    assert isinstance(error, TimeoutError) and "timeout of 1.5 s" in str(error)
    assert elapsed < 1.5 + SLACK


@pytest.mark.parametrize("mode", ["sync", "async", "stream", "astream"])
def test_endless_body_stops_at_the_byte_cap(fresh: MisbehavingServer, mode: str) -> None:
    scenario = "sseendless" if mode.endswith("stream") else "endless"
    gen = _gen(fresh, scenario, timeout=30, max_response_bytes=MiB)
    tracemalloc.start()
    try:
        _, error, elapsed = _timed(f"endless body ({mode}, cap 1 MiB)", _both(gen)[mode])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(error, GeneratorError) and not isinstance(error, TimeoutError), error
    assert "exceeds max_response_bytes=1048576" in str(error)
    assert peak < 16 * MiB, peak  # the cap, not the ~6 GB the server would send
    assert elapsed < 30


@pytest.mark.parametrize("scenario", ["ratelimit", "ratelimitdate"])
def test_429_waits_for_retry_after(fresh: MisbehavingServer, scenario: str) -> None:
    fresh.retry_after = "1"
    gen = _gen(fresh, scenario, timeout=10, max_retries=2, backoff=0.01)
    kind = "seconds" if scenario == "ratelimit" else "HTTP-date"
    answer, error, elapsed = _timed(f"429 Retry-After: 1 ({kind})", lambda: gen.generate("hi"))
    assert error is None and answer == "echo: hi"
    assert fresh.calls[scenario] == 2  # one 429, then the retry
    # It waited for the server's Retry-After, not the 0.01 s backoff (an HTTP-date has
    # whole-second resolution, so it may ask for a little less than 1 s).
    assert elapsed >= (0.9 if scenario == "ratelimit" else 0.05)


def test_429_retry_after_past_the_deadline_fails_at_once(fresh: MisbehavingServer) -> None:
    fresh.retry_after = "30"
    gen = _gen(fresh, "ratelimit", timeout=2, max_retries=3)
    _, error, elapsed = _timed("429 Retry-After: 30 > timeout=2", lambda: gen.generate("hi"))
    assert isinstance(error, GeneratorError) and not isinstance(error, TimeoutError), error
    assert error.status_code == 429
    assert "not retried" in str(error) and "past the deadline" in str(error)
    assert fresh.calls["ratelimit"] == 1  # never slept, never re-sent
    assert elapsed < 2


def test_503_retries_with_backoff_then_succeeds(fresh: MisbehavingServer) -> None:
    fresh.retry_after = ""  # no usable Retry-After: exponential backoff with jitter
    fresh.fail_times = 2
    gen = _gen(fresh, "busy", timeout=10, max_retries=2, backoff=0.2)
    answer, error, _ = _timed("503 x2 then 200 (backoff 0.2 s)", lambda: gen.generate("hi"))
    assert error is None and answer == "echo: hi"
    assert fresh.calls["busy"] == 3


def test_503_with_retry_after_and_too_few_retries(fresh: MisbehavingServer) -> None:
    fresh.retry_after = "0.3"
    fresh.fail_times = 5
    gen = _gen(fresh, "busy", timeout=10, max_retries=1)
    _, error, _ = _timed("503 Retry-After: 0.3, max_retries=1", lambda: gen.generate("hi"))
    assert isinstance(error, GeneratorError) and error.status_code == 503
    assert fresh.calls["busy"] == 2


@pytest.mark.parametrize("scenario", ["drop", "hangup"])
@pytest.mark.parametrize("mode", ["sync", "async", "stream"])
def test_connection_drop_is_never_resent(
    fresh: MisbehavingServer, scenario: str, mode: str
) -> None:
    gen = _gen(fresh, scenario, timeout=10, max_retries=3, backoff=0.01)
    what = "mid-body" if scenario == "drop" else "before an answer"
    _, error, _ = _timed(f"connection drop {what} ({mode})", _both(gen)[mode])
    assert isinstance(error, GeneratorError) and not isinstance(error, TimeoutError), error
    assert "not re-sent" in str(error)
    assert fresh.calls[scenario] == 1  # max_retries=3, and still sent once


def test_stream_cut_before_done_is_an_error(fresh: MisbehavingServer) -> None:
    gen = _gen(fresh, "ssedrop", timeout=10, max_retries=3)
    seen: list[str] = []

    def consume() -> None:
        for delta in gen.stream("hi"):
            seen.append(delta)

    _, error, _ = _timed("SSE stream cut after 2 events (no [DONE])", consume)
    assert seen == ["one ", "two "]  # what came is delivered, then the cut is reported
    assert isinstance(error, GeneratorError) and "ended before [DONE]" in str(error)
    assert fresh.calls["ssedrop"] == 1


def test_connection_refused_is_retried() -> None:
    probe = MisbehavingServer()
    url = probe.url("ok")
    probe.close()  # nothing listens there now
    gen = OpenAICompatibleGenerator("tiny", base_url=url, timeout=10, max_retries=2, backoff=0.2)
    _, error, elapsed = _timed("connection refused, 2 retries", lambda: gen.generate("hi"))
    assert isinstance(error, GeneratorError) and "cannot reach" in str(error)
    assert elapsed >= 0.2  # the two backoff waits (0.1-0.2 s, then 0.2-0.4 s) were taken


@pytest.mark.parametrize("mode", ["sync", "async", "stream", "astream"])
def test_header_echo_never_shows_the_key(fresh: MisbehavingServer, mode: str) -> None:
    gen = _gen(fresh, "echo401", timeout=5)
    _, error, _ = _timed(f"401 echoing the headers ({mode})", _both(gen)[mode])
    assert isinstance(error, GeneratorError) and error.status_code == 401
    assert fresh.requests[-1]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert "Bearer ***" in str(error)
    for text in (str(error), repr(error), error.body or "", repr(error.args), repr(gen)):
        assert KEY not in text


def test_redirect_to_another_host_is_not_followed(fresh: MisbehavingServer) -> None:
    try:
        other = MisbehavingServer("127.0.0.2")
    except OSError:  # pragma: no cover - a system without 127.0.0.0/8 on loopback
        other = MisbehavingServer("localhost")
    try:
        fresh.redirect_to = other.root
        gen = _gen(fresh, "redirect", timeout=5, max_retries=2)
        for mode, call in _both(gen).items():
            _, error, _ = _timed(f"307 to another host ({mode})", call)
            assert isinstance(error, GeneratorError) and error.status_code == 307, error
            assert f"redirects to {other.root}/redirect/v1/chat/completions" in str(error)
            assert "not followed" in str(error) and KEY not in str(error)
        assert other.requests == []  # the key never reached the other host
        assert fresh.calls["redirect"] == 4  # one request per call, no retry of a 3xx
    finally:
        other.close()


def test_streaming_happy_path_and_early_close(fresh: MisbehavingServer) -> None:
    gen = _gen(fresh, "ok", timeout=5)
    pieces, error, _ = _timed("SSE stream, 3 pieces", lambda: list(gen.stream("hi")))
    assert error is None and pieces == ["echo", ": ", "hi"]
    assert json.loads(fresh.requests[-1]["body"])["stream"] is True
    assert asyncio.run(_collect(gen)) == "echo: hi"
    trickling = _gen(fresh, "ssetrickle", timeout=30)
    stream = trickling.stream("hi")
    assert next(stream) == "0 "
    start = time.perf_counter()
    stream.close()  # closes the connection at once, long before the server would end
    _TIMES["SSE stream closed after the first piece"] = time.perf_counter() - start


async def test_streaming_inside_a_running_loop_uses_a_worker(fresh: MisbehavingServer) -> None:
    # The sync stream called from async code (a running loop in this thread) still works.
    gen = _gen(fresh, "ok", timeout=5)
    assert "".join(gen.stream("hi")) == "echo: hi"
