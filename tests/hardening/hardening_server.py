"""A misbehaving OpenAI-compatible server on 127.0.0.1, started and stopped by the tests.

The first URL segment picks the behaviour (``http://127.0.0.1:PORT/<scenario>/v1``); every
request is recorded (path, headers, body). Every behaviour is bounded: an endless body or a
trickle stops after a fixed number of writes, or as soon as the client hangs up.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from suite_helpers import write_endless

__all__ = ["MisbehavingServer", "chat_json", "sse_events"]


def chat_json(content: str) -> str:
    """A complete chat completion answer with ``content``."""
    return json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        }
    )


def sse_events(pieces: list[str]) -> bytes:
    """A streamed chat completion: one ``data:`` event per piece, then ``[DONE]``."""
    out = [": a comment line, ignored\n\n"]
    out.append('data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n')
    for piece in pieces:
        event = {"choices": [{"index": 0, "delta": {"content": piece}}]}
        out.append(f"data: {json.dumps(event)}\n\n")
    out.append('data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n')
    out.append("data: [DONE]\n\n")
    return "".join(out).encode()


class MisbehavingServer:
    """Scenarios (the first path segment):

    * ``ok``: a normal answer ``echo: <last message>`` (streamed as SSE when asked);
    * ``echo401``: 401 whose body echoes every request header (the key among them);
    * ``trickle``: 200, then one byte every 0.2 s (at most 300 bytes);
    * ``endless``: 200 without length, 64 KiB writes until the client stops reading;
    * ``ratelimit``: 429 ``Retry-After: <retry_after>`` for the first ``fail_times`` calls,
      then ``ok`` (``ratelimitdate``: the same with an HTTP-date);
    * ``busy``: 503 ``Retry-After: <retry_after>`` for the first ``fail_times`` calls, then ok;
    * ``drop``: reads the request, starts a 200 answer, then closes the connection mid-body;
    * ``ssedrop``: a streamed answer that stops after two events (no ``[DONE]``);
    * ``hangup``: reads the request and closes the connection without answering;
    * ``redirect``: 307 to ``redirect_to`` (another server);
    * ``ssetrickle``: a streamed answer whose events come every 0.2 s, for ever (bounded);
    * ``sseendless``: one endless SSE line.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.fail_times = 1
        self.retry_after = "1"
        self.redirect_to = ""
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep the test output clean
                pass

            def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _start(self, content_type: str = "application/json") -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

            def _drip(self, data: bytes, every: float, limit: int) -> None:
                try:
                    for i in range(min(len(data), limit)):
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                        time.sleep(every)
                except OSError:
                    pass  # the client gave up, as it should

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                scenario = self.path.split("/")[1]
                with server.lock:
                    server.calls[scenario] += 1
                    call = server.calls[scenario]
                    server.requests.append(
                        {
                            "scenario": scenario,
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": raw.decode("utf-8", "replace"),
                        }
                    )
                try:
                    body = json.loads(raw)
                    user = str(body["messages"][-1]["content"])
                    stream = bool(body.get("stream"))
                except (ValueError, KeyError, TypeError, IndexError):
                    return self._send(400, '{"error": "bad request body"}')
                answer = f"echo: {user}"
                if scenario in ("ratelimit", "ratelimitdate", "busy"):
                    if call <= server.fail_times:
                        status = 503 if scenario == "busy" else 429
                        retry_after = server.retry_after
                        if scenario == "ratelimitdate":
                            when = time.time() + float(retry_after)
                            retry_after = email.utils.formatdate(when, usegmt=True)
                        return self._send(
                            status, '{"error": "slow down"}', {"Retry-After": retry_after}
                        )
                    scenario = "ok"
                if scenario == "ok":
                    if stream:
                        data = sse_events(["echo", ": ", user])
                        self._start("text/event-stream")
                        self.wfile.write(data)
                        return None
                    return self._send(200, chat_json(answer))
                if scenario == "echo401":
                    seen = {"error": "denied", "seen": dict(self.headers)}
                    return self._send(401, json.dumps(seen))
                if scenario == "trickle":
                    self._start()
                    return self._drip(chat_json(answer).encode() * 10, 0.2, 300)
                if scenario in ("endless", "sseendless"):
                    self._start("text/event-stream" if stream else "application/json")
                    prefix = b"data: " if scenario == "sseendless" else b""
                    write_endless(self.wfile, b"x" * 65536, prefix=prefix)
                    return None
                if scenario == "ssetrickle":
                    self._start("text/event-stream")
                    try:
                        for i in range(300):
                            event = {"choices": [{"index": 0, "delta": {"content": f"{i} "}}]}
                            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                            self.wfile.flush()
                            time.sleep(0.2)
                    except OSError:
                        pass
                    return None
                if scenario == "ssedrop":  # two events, then the connection closes: no [DONE]
                    self._start("text/event-stream")
                    self.wfile.write(sse_events(["one ", "two "]).split(b"data: {")[0])
                    for piece in ("one ", "two "):
                        event = {"choices": [{"index": 0, "delta": {"content": piece}}]}
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    return None
                if scenario == "drop":
                    data = chat_json(answer).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                if scenario == "hangup":
                    self.close_connection = True
                    return None
                if scenario == "redirect":
                    return self._send(
                        307, '{"moved": true}', {"Location": server.redirect_to + self.path}
                    )
                return self._send(404, '{"error": "unknown scenario"}')

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, scenario: str) -> str:
        return f"http://{self.host}:{self.port}/{scenario}/v1"

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.calls.clear()
        self.fail_times = 1
        self.retry_after = "1"

    def everything_seen(self) -> str:
        """All recorded requests as one text (to look for a key that should not be there)."""
        with self.lock:
            return json.dumps(self.requests)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
