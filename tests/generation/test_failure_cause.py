"""The failure kind is the cause: a member answering HTTP 500 inside a blend's deadline is an
``"error"`` (never a ``"timeout"`` depending on the race), a member's own timeout is a
``"timeout"`` naming the member."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from blender_core.blend import Blender
from blender_core.generators.callable import CallableGenerator
from blender_core.generators.openai_compatible import OpenAICompatibleGenerator


class _Always500(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b'{"error": "upstream exploded"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def failing_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always500)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("backoff", [0.3, 0.6, 2.0])
def test_http_500_inside_a_blend_deadline_is_an_error(failing_url: str, backoff: float) -> None:
    # With retries (max_retries=2 by default) the backoff may run past the blend's 1 s deadline:
    # the failure is still the HTTP 500, whichever comes first.
    broken = OpenAICompatibleGenerator(
        "m", base_url=failing_url, api_key="sk-test", name="broken", backoff=backoff
    )
    ok = CallableGenerator(lambda prompt: "fine", name="ok")
    result = Blender([broken, ok], ranker="random", timeout=1.0).blend("q")
    (failure,) = result.failures
    assert failure.model == "broken"
    assert failure.kind == "error", failure
    assert "500" in failure.message


def test_a_members_own_timeout_is_a_timeout_naming_it() -> None:
    def slow(prompt: str) -> str:
        raise TimeoutError("my client gave up after 0.1 s")

    result = Blender(
        [CallableGenerator(slow, name="slowpoke"), CallableGenerator(lambda p: "x", name="ok")],
        ranker="random",
        timeout=5.0,
    ).blend("q")
    (failure,) = result.failures
    assert (failure.model, failure.kind) == ("slowpoke", "timeout")
    assert "my client gave up" in failure.message
