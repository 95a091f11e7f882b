"""Under load and at the edges: 429 + Retry-After, total deadlines, client disconnects, chunked
oversize bodies, loopback binding, load failures and graceful shutdown (real server processes)."""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_helpers import Server, running, start_server
from toml_tables import ensemble, static_member, static_members, table

CONFIG = (
    table(
        "server",
        max_concurrency=2,
        retry_after=3,
        request_timeout=2,
        max_body_bytes=4000,
        graceful_shutdown_timeout=20,
    )
    + static_members(fast="fast answer", other="another answer")
    + static_member("slow", "slow answer", delay=1.2)
    + static_member("sleepy", "never in time", delay=30)
    + static_member("dribble", "one two three four five six", word_delay=0.8)
    + ensemble("quick", ["fast", "other"])
    + ensemble("slowpoke", ["slow", "fast"])
    + ensemble("stalled", ["sleepy"], timeout=60)
    + ensemble("trickle", ["fast", "other"], fuser={"type": "llm", "member": "dribble"})
)

Q = [{"role": "user", "content": "hello?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(CONFIG, tmp_path_factory.mktemp("limits")) as running_server:
        yield running_server


def _metric(server: Server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _wait_metric(server: Server, name: str, value: float, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _metric(server, name) == value:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never reached {value} (now {_metric(server, name)})")


def _post(server: Server, model: str, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": model, "messages": Q, **extra},
        timeout=30,
    )


def test_busy_server_answers_429_with_retry_after(server: Server) -> None:
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(_post(server, "slowpoke").status_code))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    _wait_metric(server, "blender_in_flight_requests", 2.0)
    busy = _post(server, "quick")
    assert busy.status_code == 429
    assert busy.headers["Retry-After"] == "3"
    assert "busy" in busy.json()["error"]["message"]
    for t in threads:
        t.join()
    assert results == [200, 200]
    assert _post(server, "quick").status_code == 200  # capacity is back
    assert _metric(server, 'blender_rejected_total{reason="busy"}') >= 1


def test_total_deadline_is_504(server: Server) -> None:
    start = time.monotonic()
    response = _post(server, "stalled")
    assert response.status_code == 504
    assert "request_timeout=2" in response.json()["error"]["message"]
    assert time.monotonic() - start < 10
    _wait_metric(server, "blender_in_flight_requests", 0.0)


def _trickle(server: Server) -> contextlib.AbstractContextManager[httpx.Response]:
    """A streamed chat with the ``trickle`` ensemble, whose writer outlives the deadline."""
    return httpx.stream(
        "POST",
        f"{server.base_url}/chat/completions",
        json={"model": "trickle", "messages": Q, "stream": True},
        timeout=30,
    )


def test_deadline_mid_stream_sends_an_error_event(server: Server) -> None:
    with _trickle(server) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert any('"content": "one"' in line for line in lines)
    assert "request_timeout" in lines[-2] and '"error"' in lines[-2]
    assert lines[-1] == "data: [DONE]"


def test_client_disconnect_cancels_the_request(server: Server) -> None:
    before = _metric(server, 'blender_cancelled_total{endpoint="chat"}')
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "stalled", "messages": Q},
            timeout=httpx.Timeout(30, read=0.5),
        )
    _wait_metric(server, 'blender_cancelled_total{endpoint="chat"}', before + 1, timeout=1.5)
    _wait_metric(server, "blender_in_flight_requests", 0.0, timeout=1.0)


def test_client_leaving_a_stream_cancels_it(server: Server) -> None:
    before = _metric(server, 'blender_cancelled_total{endpoint="chat"}')
    with _trickle(server) as response:
        for line in response.iter_lines():
            if '"content": "one"' in line:
                break
    _wait_metric(server, 'blender_cancelled_total{endpoint="chat"}', before + 1, timeout=3)
    _wait_metric(server, "blender_in_flight_requests", 0.0, timeout=3)


def test_chunked_oversize_body_is_413(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "quick", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    response = httpx.post(
        f"{server.base_url}/chat/completions",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "max_body_bytes=4000" in response.json()["error"]["message"]
    assert _post(server, "quick").status_code == 200


def test_binds_to_loopback_by_default(server: Server) -> None:
    table = Path("/proc/net/tcp")
    if not table.is_file():
        pytest.skip("no /proc/net/tcp on this system")
    port = f"{server.port:04X}"
    listening = [
        line.split()[1]
        for line in table.read_text().splitlines()[1:]
        if line.split()[1].endswith(f":{port}") and line.split()[3] == "0A"
    ]
    assert listening == [f"0100007F:{port}"]  # 127.0.0.1 only


def test_ready_reports_a_failed_load(tmp_path: Path) -> None:
    config = """
[members.a]
type = "static"
text = "A"
[ensembles.e]
members = ["a"]
ranker = { type = "pairrm", checkpoint = "/nonexistent/checkpoint", device = "cpu" }
"""
    server = start_server(config, tmp_path, wait_ready=False)
    try:
        deadline = time.monotonic() + 60
        body: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"{server.url}/ready", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            body = response.json()
            assert response.status_code == 503
            if body["status"] == "failed":
                break
            time.sleep(0.2)
        assert body["status"] == "failed"
        assert httpx.get(f"{server.url}/health").status_code == 200
        chat = _post(server, "e")
        assert chat.status_code == 503
        assert "failed to load" in chat.json()["error"]["message"]
    finally:
        server.stop()


def test_graceful_shutdown_finishes_in_flight_requests(tmp_path: Path) -> None:
    server = start_server(CONFIG, tmp_path)
    try:
        result: list[httpx.Response] = []
        worker = threading.Thread(target=lambda: result.append(_post(server, "slowpoke")))
        worker.start()
        _wait_metric(server, "blender_in_flight_requests", 1.0)
        server.process.terminate()  # SIGTERM
        worker.join(timeout=20)
        assert result and result[0].status_code == 200
        assert result[0].json()["choices"][0]["message"]["content"] in (
            "slow answer",
            "fast answer",
        )
        # uvicorn re-raises the signal once it has shut down cleanly: -SIGTERM, not a crash.
        assert server.process.wait(timeout=20) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/health", timeout=2)
    finally:
        server.stop()
