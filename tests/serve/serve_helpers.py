"""Helpers of the ``blender serve`` tests: a real server subprocess and a fake upstream.

:func:`start_server` runs ``blender serve`` as a subprocess on 127.0.0.1 on a free port, waits
(bounded) for ``/ready`` and is always stopped (SIGTERM, then SIGKILL). :class:`FakeUpstream` is
a tiny OpenAI-compatible HTTP server in a thread whose behaviour is chosen by the first path
segment: ``/ok/v1`` answers (with ``usage``), ``/error/v1`` is a 500, ``/hang/v1`` never
answers before the test ends, ``/garbage/v1`` sends non-JSON, ``/badshape/v1`` JSON without
``choices``, ``/leak/v1`` answers with the ``Authorization`` header it was sent, and
``/toolsA/v1`` and ``/toolsB/v1`` make different tool calls when given ``tools``.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from suite_helpers import tool_call_message

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0  # seconds for a server to answer /ready (a loaded 2-core CI machine)


CAPITAL_TOOL = {
    "type": "function",
    "function": {
        "name": "capital",
        "description": "The capital city of a country.",
        "parameters": {
            "type": "object",
            "properties": {"country": {"type": "string"}},
            "required": ["country"],
        },
    },
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Today's weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def streamed_chunks(client: Any, model: str, messages: Any, **fields: Any) -> list[Any]:
    """Every chunk of a chat completion streamed through the OpenAI SDK ``client``, the usage
    chunk asked for (``stream_options.include_usage``)."""
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        **fields,
    )
    return list(stream)


def serve_cli(config_text: str, tmp_path: Path, *args: str) -> tuple[Path, Any]:
    """``blender serve --config blend.toml ARGS`` in process (Typer's runner), ``config_text``
    written to ``tmp_path/blend.toml``: the path and the runner's result (exit code, output)."""
    from typer.testing import CliRunner

    from blender_core.cli import _register_commands, app

    _register_commands()
    path = tmp_path / "blend.toml"
    path.write_text(config_text)
    return path, CliRunner().invoke(app, ["serve", "--config", str(path), *args])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running ``blender serve`` subprocess."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return int(self.process.returncode)


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO / "shared"), str(REPO)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra or {})
    return env


def start_server(
    config_text: str,
    tmp_path: Path,
    *,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
) -> Server:
    """Write ``config_text`` to ``tmp_path/blend.toml`` and start ``blender serve`` on it."""
    config = tmp_path / "blend.toml"
    config.write_text(config_text)
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    command = [
        sys.executable,
        "-c",
        "from blender_core.cli import main; main()",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--log-level",
        "warning",
        *args,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=_env(env), cwd=tmp_path
        )
    server = Server(process, port, log)
    if wait_ready:
        try:
            wait_until_ready(server)
        except BaseException:
            server.stop()
            raise
    return server


def wait_until_ready(server: Server, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"blender serve exited with {server.process.returncode}:\n{server.output()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"blender serve not ready within {timeout} s:\n{server.output()}")


@contextlib.contextmanager
def running(config_text: str, tmp_path: Path, **kwargs: object) -> Iterator[Server]:
    server = start_server(config_text, tmp_path, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


def _tool_answer(mode: str, body: dict[str, object]) -> dict[str, object]:
    """A two-step tool user: ``capital(country)``, then ``weather(city)``, then an answer.

    ``toolsA`` and ``toolsB`` offer different calls (argument spelling, an extra argument,
    the final wording), so the gateway has different candidates to rank at every step.
    """
    messages = body.get("messages") or []
    assert isinstance(messages, list)
    results = [m for m in messages if m.get("role") == "tool"]
    message: dict[str, object]
    if len(results) == 0:
        country = "France" if mode == "toolsA" else "france"
        calls = [("capital", {"country": country})]
    elif len(results) == 1:
        city = str(results[0].get("content"))
        calls = [("weather", {"city": city} if mode == "toolsA" else {"city": city, "unit": "C"})]
    else:
        calls = []
    if calls:
        message = tool_call_message(
            (f"call_{mode}_{len(results)}_{i}", name, json.dumps(args))
            for i, (name, args) in enumerate(calls)
        )
    else:
        facts = " ".join(str(m.get("content")) for m in results)
        prefix = "Final answer" if mode == "toolsA" else "Done"
        message = {"role": "assistant", "content": f"{prefix}: {facts}"}
    return {
        "id": "up-tools",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if calls else "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }


class _Threading(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 resets connections under load


class FakeUpstream:
    """An OpenAI-compatible server in a thread, its behaviour picked by the path's first part."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.requests: list[dict[str, object]] = []
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                mode = self.path.strip("/").split("/")[0]
                upstream.requests.append(
                    {"mode": mode, "body": body, "auth": self.headers.get("Authorization")}
                )
                if mode == "hang":
                    upstream.release.wait(60)
                    return
                if mode == "error":
                    self._send(500, b'{"error": "upstream exploded"}', "application/json")
                    return
                if mode == "garbage":
                    self._send(200, b"<html>not json</html>", "text/html")
                    return
                if mode == "badshape":
                    self._send(200, b'{"result": "no choices here"}', "application/json")
                    return
                if mode in ("toolsA", "toolsB") and body.get("tools"):
                    self._send(
                        200, json.dumps(_tool_answer(mode, body)).encode(), "application/json"
                    )
                    return
                last = [m for m in body.get("messages", []) if m.get("role") == "user"][-1]
                text = f"upstream answer to: {last['content']}"
                if mode == "leak":  # a careless upstream that echoes the key it was sent
                    text = f"my key is {self.headers.get('Authorization', '')} ok"
                usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
                if body.get("stream"):  # OpenAI's chunks; the usage event only when asked
                    events: list[object] = [
                        {
                            "choices": [
                                {"index": 0, "delta": {"content": word if i == 0 else " " + word}}
                            ]
                        }
                        for i, word in enumerate(text.split(" "))
                    ]
                    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                    if (body.get("stream_options") or {}).get("include_usage"):
                        events.append({"choices": [], "usage": usage})
                    sse = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
                    self._send(200, sse + b"data: [DONE]\n\n", "text/event-stream")
                    return
                answer = {
                    "id": "up-1",
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": text,
                            },
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
                self._send(200, json.dumps(answer).encode(), "application/json")

        self.server = _Threading(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def base_url(self, mode: str) -> str:
        return f"{self.url}/{mode}/v1"

    def __enter__(self) -> FakeUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
