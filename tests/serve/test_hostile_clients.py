"""Slow and hostile clients against a real ``blender serve`` process: never-ending bodies,
connections that send nothing or trickle their headers, oversize heads and a header flood, keys
in query strings. Every wait is bounded; sockets are always closed."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from serve_helpers import Server, running
from toml_tables import ensemble, static_members, table

CONFIG = (
    table(
        "server",
        max_concurrency=4,
        request_timeout=20,
        body_timeout=3,
        header_timeout=1.5,
        keep_alive_timeout=2,
        max_header_bytes=8192,
    )
    + static_members(a="alpha answer", b="beta answer")
    + ensemble("e", ["a", "b"])
)

KEY = "hostile-test-key-0123456789abcdef"
Q = [{"role": "user", "content": "hello?"}]
WAIT = 15.0  # the most any socket waits for the server (seconds)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(CONFIG, tmp_path_factory.mktemp("hostile")) as running_server:
        yield running_server


@contextlib.contextmanager
def _sockets(server: Server, count: int) -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _read_until_closed(sock: socket.socket, timeout: float = WAIT) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return data
        except TimeoutError:
            break
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the server kept the connection open for {timeout} s")


def _head(path: str = "/v1/chat/completions", length: int = 1000) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _chat(server: Server) -> int:
    response = httpx.post(
        f"{server.base_url}/chat/completions", json={"model": "e", "messages": Q}, timeout=WAIT
    )
    return response.status_code


def test_never_ending_bodies_leave_other_clients_served(server: Server) -> None:
    with _sockets(server, 12) as socks:  # three times max_concurrency
        for sock in socks:
            sock.sendall(_head() + b'{"model": "e", "messages": [')
        time.sleep(0.3)
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda _: _chat(server), range(8)))
        assert statuses == [200] * 8  # no 429 caused by the stalled bodies
        answers = [_read_until_closed(sock) for sock in socks]
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"body_timeout=3" in answer


def test_clients_hanging_up_mid_body_log_no_error(server: Server) -> None:
    before = server.output()
    with _sockets(server, 5) as socks:
        for sock in socks:
            sock.sendall(_head() + b'{"model": "e"')
        time.sleep(0.3)
    time.sleep(0.5)
    assert _chat(server) == 200
    added = server.output()[len(before) :]
    assert "Traceback" not in added and "Exception" not in added, added


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    with _sockets(server, 3) as socks:
        answers = [_read_until_closed(sock, timeout=8) for sock in socks]
    assert all(a == b"" or a.startswith(b"HTTP/1.1 408 ") for a in answers)


def test_trickled_headers_are_cut_off(server: Server) -> None:
    with _sockets(server, 2) as socks:
        for sock in socks:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = [False] * len(socks)
        deadline = time.monotonic() + 10
        while not all(closed) and time.monotonic() < deadline:
            for i, sock in enumerate(socks):
                if closed[i]:
                    continue
                try:
                    sock.sendall(f"X-Slow-{int(time.monotonic() * 1000)}: 1\r\n".encode())
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable:  # a 408, or the end of the connection
                        closed[i] = True
                except OSError:
                    closed[i] = True
            time.sleep(0.3)
        assert all(closed), "a connection trickling its headers was never closed"


def test_an_idle_keep_alive_connection_is_closed(server: Server) -> None:
    with _sockets(server, 1) as (sock,):
        body = b'{"model": "e", "messages": [{"role": "user", "content": "hi"}]}'
        sock.sendall(_head(length=len(body)) + body)
        answer = _read_until_closed(sock, timeout=10)  # keep_alive_timeout = 2
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_an_oversize_head_is_refused(server: Server) -> None:
    big = {"X-Big": "a" * 20_000}
    response = httpx.get(f"{server.url}/health", headers=big, timeout=WAIT)
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "header_too_large"
    with _sockets(server, 1) as (sock,):
        head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
        with contextlib.suppress(OSError):
            sock.sendall(head)
        answer = _read_until_closed(sock)
    assert answer == b"" or answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 "))
    assert httpx.get(f"{server.url}/health", timeout=WAIT).status_code == 200


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_memory_returns_after_a_header_flood(server: Server) -> None:
    if not Path(f"/proc/{server.process.pid}/status").is_file():
        pytest.skip("no /proc on this system")
    for _ in range(30):  # warm
        assert _chat(server) == 200
    warm = _rss_kib(server.process.pid)

    def flood() -> None:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock,
        ):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: ")
            chunk = b"b" * 65536
            for _ in range(128):  # up to 8 MiB of one unfinished header
                sock.sendall(chunk)

    threads = [threading.Thread(target=flood) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    time.sleep(0.5)
    assert _chat(server) == 200
    after = _rss_kib(server.process.pid)
    assert after <= warm * 1.2, f"RSS {warm} KiB warm, {after} KiB after the flood"


def test_the_key_in_a_query_string_is_never_logged(tmp_path: Path) -> None:
    env = {"HOSTILE_KEY": KEY}
    args = ("--api-key-env", "HOSTILE_KEY", "--log-level", "info")
    with running(CONFIG, tmp_path, env=env, args=args) as server:
        auth = {"Authorization": f"Bearer {KEY}"}
        assert httpx.get(f"{server.url}/metrics?api_key={KEY}", timeout=WAIT).status_code == 401
        response = httpx.get(f"{server.base_url}/models?api_key={KEY}", headers=auth, timeout=WAIT)
        assert response.status_code == 200
        time.sleep(0.3)
        log = server.output()
    assert "/metrics?api_key=***" in log
    assert KEY not in log
