"""OpenAICompatibleGenerator's public hooks: ``on_usage`` (plain and streamed answers) and the
process-wide TLS context, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.server
import json
import socketserver
import ssl
import threading
from collections.abc import Iterator

import pytest

from blender_core.generators.openai_compatible import (
    OpenAICompatibleGenerator,
    shared_tls_context,
)

USAGE = {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}


class _Threading(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class UsageServer:
    """``/plain``: JSON with usage; ``/nousage``: JSON without; ``/stream``: SSE, with a final
    usage event only when ``stream_options.include_usage`` is asked; ``/repeat``: SSE whose
    every event carries the running usage (vLLM's continuous usage stats)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, body: bytes, content_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.bodies.append(body)
                mode = self.path.strip("/").split("/")[0]
                if mode in ("plain", "nousage"):
                    answer: dict[str, object] = {
                        "choices": [{"message": {"role": "assistant", "content": "four"}}]
                    }
                    if mode == "plain":
                        answer["usage"] = USAGE
                    self._send(json.dumps(answer).encode(), "application/json")
                    return
                words = ["one", " two", " three"]
                events: list[dict[str, object]] = []
                for i, word in enumerate(words):
                    event: dict[str, object] = {"choices": [{"delta": {"content": word}}]}
                    if mode == "repeat":
                        event["usage"] = {"prompt_tokens": 11, "completion_tokens": i + 1}
                    events.append(event)
                events.append({"choices": [{"delta": {}, "finish_reason": "stop"}]})
                asked = (body.get("stream_options") or {}).get("include_usage")
                if mode == "stream" and asked:
                    events.append({"choices": [], "usage": USAGE})
                sse = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
                self._send(sse + b"data: [DONE]\n\n", "text/event-stream")

        self.server = _Threading(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{mode}/v1"


@pytest.fixture(scope="module")
def server() -> Iterator[UsageServer]:
    srv = UsageServer()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.server.shutdown()
        srv.server.server_close()


def _generator(
    server: UsageServer, mode: str, seen: list[dict[str, int]]
) -> OpenAICompatibleGenerator:
    return OpenAICompatibleGenerator(
        "m", base_url=server.url(mode), timeout=30, on_usage=seen.append
    )


def test_plain_answer_reports_usage(server: UsageServer) -> None:
    seen: list[dict[str, int]] = []
    gen = _generator(server, "plain", seen)
    assert gen.generate("2+2?") == "four"
    assert asyncio.run(gen.agenerate("2+2?")) == "four"
    assert seen == [USAGE, USAGE]


def test_streamed_answer_reports_the_final_usage_event(server: UsageServer) -> None:
    seen: list[dict[str, int]] = []
    gen = _generator(server, "stream", seen)
    assert "".join(gen.stream("count")) == "one two three"
    assert seen == [USAGE]
    assert server.bodies[-1]["stream_options"] == {"include_usage": True}


def test_usage_repeated_on_every_event_is_counted_once(server: UsageServer) -> None:
    seen: list[dict[str, int]] = []
    gen = _generator(server, "repeat", seen)
    assert "".join(gen.stream("count")) == "one two three"
    assert seen == [{"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}]


def test_no_usage_no_call_and_no_hook_no_stream_options(server: UsageServer) -> None:
    seen: list[dict[str, int]] = []
    assert _generator(server, "nousage", seen).generate("2+2?") == "four"
    plain = OpenAICompatibleGenerator("m", base_url=server.url("stream"), timeout=30)
    assert "".join(plain.stream("count")) == "one two three"
    assert "stream_options" not in server.bodies[-1]  # a server that rejects it still works
    assert seen == []


def test_caller_stream_options_win(server: UsageServer) -> None:
    seen: list[dict[str, int]] = []
    gen = _generator(server, "stream", seen)
    "".join(gen.stream("count", stream_options={"include_usage": False}))
    assert server.bodies[-1]["stream_options"] == {"include_usage": False}
    assert seen == []


def test_on_usage_must_be_callable() -> None:
    with pytest.raises(ValueError, match="on_usage must be callable"):
        OpenAICompatibleGenerator("m", base_url="http://127.0.0.1:1/v1", on_usage=3)  # type: ignore[arg-type]


def test_one_tls_context_per_process() -> None:
    context = shared_tls_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert shared_tls_context() is context
