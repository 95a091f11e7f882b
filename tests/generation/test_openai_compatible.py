"""OpenAICompatibleGenerator against a real HTTP server on loopback (started by the tests)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from suite_helpers import tool_call_message, write_endless

from blender_core import OpenAICompatibleGenerator
from blender_core.generators.errors import GeneratorError, GeneratorTimeoutError


class FakeServer:
    """A chat completion server; the first URL segment picks the scenario (ok, error, slow...)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.flaky_failures = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep the test output clean
                pass

            def _send(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                scenario = self.path.split("/")[1]
                with server.lock:
                    server.requests.append(
                        {"path": self.path, "body": body, "headers": dict(self.headers)}
                    )
                if not self.path.endswith("/v1/chat/completions"):
                    return self._send(404, '{"error": "not found"}')
                user = body["messages"][-1]["content"]
                ok = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": f"echo: {user}"},
                            }
                        ],
                    }
                )
                if scenario == "ok":
                    return self._send(200, ok)
                if scenario == "error":
                    return self._send(500, '{"error": {"message": "model exploded"}}')
                if scenario == "badrequest":
                    return self._send(400, '{"error": "bad model name"}')
                if scenario == "slow":
                    time.sleep(1.5)
                    return self._send(200, ok)
                if scenario == "trickle":  # 200, then one byte every 0.5 s for ~30 s
                    data = ok.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    try:
                        for i in range(60):
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                            time.sleep(0.5)
                    except OSError:
                        pass  # the client gave up, as it should
                    return None
                if scenario in ("endless", "huge"):  # a body without end, or a huge declared one
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    if scenario == "huge":
                        self.send_header("Content-Length", str(10**12))
                    self.end_headers()
                    write_endless(self.wfile, b" " * 65536)
                    return None
                if scenario == "badjson":
                    return self._send(200, "this is not json")
                if scenario == "nochoices":
                    return self._send(200, '{"id": "x"}')
                if scenario == "nocontent":
                    return self._send(200, '{"choices": [{"message": {"role": "assistant"}}]}')
                if scenario in ("tools", "badtool"):  # a whole assistant message with tool calls
                    arguments = '{"city": "Paris"}' if scenario == "tools" else "{not json"
                    return self._send(
                        200,
                        json.dumps(
                            {
                                "choices": [
                                    {
                                        "index": 0,
                                        "finish_reason": "tool_calls",
                                        "message": tool_call_message(
                                            [("call_1", "weather", arguments)]
                                        ),
                                    }
                                ],
                                "usage": {
                                    "prompt_tokens": 12,
                                    "completion_tokens": 7,
                                    "total_tokens": 19,
                                },
                            }
                        ),
                    )
                if scenario == "flaky":
                    with server.lock:
                        server.flaky_failures += 1
                        fail = server.flaky_failures <= 1
                    return self._send(503, "busy") if fail else self._send(200, ok)
                return self._send(404, "unknown scenario")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, scenario: str) -> str:
        return f"http://127.0.0.1:{self.port}/{scenario}/v1"

    def generator(self, scenario: str = "ok", **options: Any) -> OpenAICompatibleGenerator:
        """The generator of model ``tiny`` against ``scenario`` (``options``: its keywords)."""
        return OpenAICompatibleGenerator("tiny", base_url=self.url(scenario), **options)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    srv = FakeServer()
    yield srv
    srv.close()


def test_success_sync(server: FakeServer) -> None:
    gen = server.generator(
        api_key="sk-test", system_prompt="Be brief.", temperature=0.2, max_tokens=16
    )
    assert gen.name == "tiny"
    assert gen.generate("hello") == "echo: hello"
    req = server.requests[-1]
    assert req["path"] == "/ok/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-test"
    assert req["body"] == {
        "model": "tiny",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello"},
        ],
        "temperature": 0.2,
        "max_tokens": 16,
    }


async def test_success_async_concurrent(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    gen = OpenAICompatibleGenerator("tiny", base_url=server.url("ok") + "/", name="local")
    outs = await asyncio.gather(*(gen.agenerate(f"q{i}") for i in range(4)))
    assert outs == [f"echo: q{i}" for i in range(4)]
    assert "Authorization" not in server.requests[-1]["headers"]  # no key: fine for local servers


def test_chat_prompt_and_call_overrides(server: FakeServer) -> None:
    gen = server.generator(api_key="", system_prompt="ignored", extra_body={"seed": 1})
    chat = [{"role": "system", "content": "own"}, {"role": "user", "content": "hey"}]
    assert gen.generate(chat, max_new_tokens=5, temperature=0.0) == "echo: hey"
    body = server.requests[-1]["body"]
    assert body["messages"] == chat  # the chat's own system message wins
    assert body["max_tokens"] == 5 and body["temperature"] == 0.0 and body["seed"] == 1
    assert "Authorization" not in server.requests[-1]["headers"]


async def test_server_error(server: FakeServer) -> None:
    gen = server.generator("error", max_retries=0)
    with pytest.raises(GeneratorError, match=r"HTTP 500.*model exploded") as info:
        gen.generate("x")
    assert info.value.status_code == 500
    assert "model exploded" in (info.value.body or "")
    with pytest.raises(GeneratorError, match="HTTP 500"):
        await gen.agenerate("x")
    with pytest.raises(GeneratorError, match="HTTP 400") as bad:
        server.generator("badrequest").generate("x")
    assert bad.value.status_code == 400


async def test_timeout(server: FakeServer) -> None:
    gen = server.generator("slow", timeout=0.3)
    start = time.perf_counter()
    with pytest.raises(GeneratorTimeoutError, match=r"timeout of 0\.3 s"):
        gen.generate("x")
    assert time.perf_counter() - start < 1.4
    with pytest.raises(TimeoutError):
        await gen.agenerate("x")


async def test_timeout_bounds_the_whole_request_against_a_trickling_server(
    server: FakeServer,
) -> None:
    gen = server.generator("trickle", timeout=2)
    start = time.perf_counter()
    with pytest.raises(GeneratorTimeoutError, match=r"timeout of 2 s"):
        await asyncio.to_thread(gen.generate, "x")
    sync_elapsed = time.perf_counter() - start
    start = time.perf_counter()
    with pytest.raises(GeneratorTimeoutError, match=r"timeout of 2 s"):
        await gen.agenerate("x")
    async_elapsed = time.perf_counter() - start
    # Per-read timeouts never fire here (a byte every 0.5 s); only a total deadline does.
    assert sync_elapsed < 4.0 and async_elapsed < 4.0, (sync_elapsed, async_elapsed)
    print(f"trickle: sync {sync_elapsed:.2f} s, async {async_elapsed:.2f} s (timeout=2)")


@pytest.mark.parametrize("scenario", ["endless", "huge"])
async def test_response_bodies_are_capped(server: FakeServer, scenario: str) -> None:
    gen = server.generator(scenario, max_response_bytes=2**20, timeout=20)
    start = time.perf_counter()
    with pytest.raises(GeneratorError, match=r"exceeds max_response_bytes=1048576"):
        await asyncio.to_thread(gen.generate, "x")
    with pytest.raises(GeneratorError, match=r"exceeds max_response_bytes=1048576"):
        await gen.agenerate("x")
    elapsed = time.perf_counter() - start
    assert elapsed < 10, elapsed  # stopped at the cap, long before the timeout
    print(f"{scenario}: both calls failed at the cap in {elapsed:.2f} s")
    with pytest.raises(ValueError, match="max_response_bytes"):
        OpenAICompatibleGenerator("tiny", max_response_bytes=0)


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("badjson", "malformed response.*not JSON"),
        ("nochoices", "malformed response.*no 'choices'"),
        ("nocontent", "malformed response.*content is missing"),
    ],
)
async def test_malformed_response(server: FakeServer, scenario: str, message: str) -> None:
    gen = server.generator(scenario)
    with pytest.raises(GeneratorError, match=message):
        gen.generate("x")
    with pytest.raises(GeneratorError, match=message):
        await gen.agenerate("x")


def test_retries_on_5xx(server: FakeServer) -> None:
    server.flaky_failures = 0
    gen = server.generator("flaky", max_retries=1)
    assert gen.generate("again") == "echo: again"
    assert server.flaky_failures == 2
    server.flaky_failures = 0
    with pytest.raises(GeneratorError, match="HTTP 503"):
        server.generator("flaky", max_retries=0).generate("x")


async def test_connection_refused() -> None:
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()  # nothing listens there now
    gen = OpenAICompatibleGenerator("tiny", base_url=f"http://127.0.0.1:{port}/v1", timeout=5)
    with pytest.raises(GeneratorError, match="cannot reach"):
        gen.generate("x")
    with pytest.raises(GeneratorError, match="cannot reach"):
        await gen.agenerate("x")


def test_environment_defaults(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_BASE", server.url("ok"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    gen = OpenAICompatibleGenerator("tiny")
    assert gen.base_url == server.url("ok")
    assert gen.generate("env") == "echo: env"
    # The environment's key goes only to the OpenAI API, or where asked for by name.
    assert "Authorization" not in server.requests[-1]["headers"]
    gen = OpenAICompatibleGenerator("tiny", api_key_env="OPENAI_API_KEY")
    assert gen.generate("env") == "echo: env"
    assert server.requests[-1]["headers"]["Authorization"] == "Bearer sk-env"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://example.invalid/v1")
    assert OpenAICompatibleGenerator("tiny").base_url == "http://example.invalid/v1"
    assert server.generator().base_url == server.url("ok")
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_BASE")
    assert OpenAICompatibleGenerator("tiny").base_url == "https://api.openai.com/v1"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="model"):
        OpenAICompatibleGenerator("")
    with pytest.raises(ValueError, match="timeout"):
        OpenAICompatibleGenerator("m", timeout=0)
    with pytest.raises(ValueError, match="max_retries"):
        OpenAICompatibleGenerator("m", max_retries=-1)
    with pytest.raises(TypeError, match="prompt"):
        OpenAICompatibleGenerator("m", base_url="http://127.0.0.1:9/v1").generate(3)  # type: ignore[arg-type]


# -- the whole assistant message (text and tool calls) ------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CHAT = [
    {"role": "user", "content": "Weather in Paris, then Lyon?"},
    tool_call_message([("call_0", "weather", '{"city": "Lyon"}')]),
    {"role": "tool", "tool_call_id": "call_0", "content": "Sunny in Lyon"},
]


async def test_chat_message_returns_tool_calls_and_usage(server: FakeServer) -> None:
    from blender_core.generators.openai_compatible import ChatMessageResult
    from blender_core.tool_calls import ToolCall

    seen: list[dict[str, int]] = []
    gen = server.generator(
        "tools",
        api_key="sk-test",
        system_prompt="Use tools.",
        max_tokens=32,
        extra_body={"seed": 1},
        on_usage=seen.append,
    )
    result = await gen.achat_message(CHAT, tools=TOOLS, tool_choice="auto", max_new_tokens=8)
    assert isinstance(result, ChatMessageResult)
    assert result.text == ""  # content null: only tool calls
    assert result.tool_calls == (ToolCall("weather", {"city": "Paris"}, id="call_1"),)
    assert result.finish_reason == "tool_calls"
    assert result.usage == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    assert seen == [result.usage]  # on_usage, as for text answers
    assert result.raw["tool_calls"][0]["id"] == "call_1"
    request = server.requests[-1]
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    body = request["body"]
    # The chat as given (tool calls and results kept), the system prompt first.
    assert body["messages"] == [{"role": "system", "content": "Use tools."}, *CHAT]
    assert body["tools"] == TOOLS and body["tool_choice"] == "auto"
    assert body["max_tokens"] == 8 and body["seed"] == 1 and body["model"] == "tiny"
    # The sync form; a text answer is a message without tool calls.
    text = server.generator().chat_message([{"role": "user", "content": "hi"}], tools=TOOLS)
    assert (text.text, text.tool_calls, text.usage) == ("echo: hi", (), None)


async def test_chat_message_shares_the_text_paths_deadline_retries_and_limits(
    server: FakeServer,
) -> None:
    # The total deadline.
    slow = server.generator("slow", timeout=0.3)
    with pytest.raises(GeneratorTimeoutError, match=r"timeout of 0\.3 s"):
        await slow.achat_message([{"role": "user", "content": "x"}], tools=TOOLS)
    # Retries of a 503, then the answer.
    server.flaky_failures = 0
    flaky = server.generator("flaky", max_retries=1)
    assert (await flaky.achat_message([{"role": "user", "content": "again"}])).text == (
        "echo: again"
    )
    assert server.flaky_failures == 2
    # An error status, the response-size cap, a malformed answer, a bad tool call.
    for scenario, message in [
        ("error", r"HTTP 500.*model exploded"),
        ("endless", r"exceeds max_response_bytes=1048576"),
        ("nochoices", r"malformed response.*no 'choices'"),
        ("badtool", r"malformed response.*tool call is not valid.*not valid JSON"),
    ]:
        gen = server.generator(scenario, max_retries=0, max_response_bytes=2**20, timeout=20)
        with pytest.raises(GeneratorError, match=message):
            await gen.achat_message([{"role": "user", "content": "x"}], tools=TOOLS)
    # The key never shows in an error.
    leaky = server.generator("error", api_key="sk-secret-123456", max_retries=0)
    with pytest.raises(GeneratorError) as info:
        await leaky.achat_message([{"role": "user", "content": "sk-secret-123456"}])
    assert "sk-secret-123456" not in str(info.value)


def test_chat_message_refuses_a_chat_that_is_not_one() -> None:
    gen = OpenAICompatibleGenerator("m", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(TypeError, match="list of chat messages"):
        gen.chat_message("hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'role'"):
        gen.chat_message([{"content": "no role"}])
    with pytest.raises(ValueError, match="at least one message"):
        gen.chat_message([])
