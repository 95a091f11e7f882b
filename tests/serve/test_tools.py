"""Tool calls through the gateway: ``tools``/``tool_choice`` in OpenAI's shapes, streamed and
not; members' tool-call proposals ranked by the core path (``blender_core.tool_calls``); the
official SDK, LangChain's ``bind_tools`` and a ``create_agent`` agent as clients."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from serve_helpers import CAPITAL_TOOL, WEATHER_TOOL, FakeUpstream, Server, running, streamed_chunks
from suite_helpers import tool_call_message
from toml_tables import ensemble, openai_member, static_member

TOOLS = [CAPITAL_TOOL, WEATHER_TOOL]
TASK = [{"role": "user", "content": "What is the weather in the capital of France?"}]


def _config(upstream: FakeUpstream) -> str:
    return (
        openai_member("a", upstream.base_url("toolsA"))
        + openai_member("b", upstream.base_url("toolsB"))
        + static_member("talker", "I would rather just talk.")
        + openai_member("broken", upstream.base_url("error"))
        + ensemble("agents", ["a", "b"])
        + ensemble("mixed", ["a", "talker", "broken"])
    )


@pytest.fixture(scope="module")
def server(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(_config(upstream), tmp_path_factory.mktemp("tools")) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=30)


def test_sdk_gets_the_selected_tool_call(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    response = client.chat.completions.create(model="agents", messages=TASK, tools=TOOLS)  # type: ignore[arg-type]
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "capital"
    assert json.loads(calls[0].function.arguments)["country"].lower() == "france"
    assert calls[0].id
    blend = response.model_extra["blend"]  # type: ignore[index]
    assert blend["blend_mode"] == "tool_calls"
    assert blend["selected"] in ("a", "b")
    assert set(blend["candidates"]) == {"a", "b"}
    assert len(blend["texts"]) == 2  # the two members' calls differ
    assert response.usage is not None and response.usage.total_tokens == 28
    sent = [r["body"] for r in upstream.requests if r["mode"] in ("toolsA", "toolsB")][-2:]
    assert all(body["tools"] == TOOLS for body in sent)  # type: ignore[index]


def test_sdk_streams_the_tool_call(client: openai.OpenAI) -> None:
    chunks = streamed_chunks(client, "agents", TASK, tools=TOOLS)
    names: dict[int, str] = {}
    arguments: dict[int, str] = {}
    finish = None
    usage = None
    for chunk in chunks:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                names[call.index] = names.get(call.index, "") + (call.function.name or "")
                arguments[call.index] = arguments.get(call.index, "") + (
                    call.function.arguments or ""
                )
    assert finish == "tool_calls"
    assert names == {0: "capital"}
    assert json.loads(arguments[0])["country"].lower() == "france"
    assert usage is not None and usage.total_tokens == 28


def test_tool_calling_proposals_win_over_text(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model="mixed", messages=TASK, tools=TOOLS)  # type: ignore[arg-type]
    blend = response.model_extra["blend"]  # type: ignore[index]
    assert response.choices[0].message.tool_calls is not None
    assert blend["selected"] == "a"
    assert blend["candidates"]["talker"] == "I would rather just talk."
    assert [f["model"] for f in blend["failures"]] == ["broken"]
    assert "127.0.0.1" not in json.dumps(blend)


def test_passthrough_member_with_tools(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model="b", messages=TASK, tools=TOOLS)  # type: ignore[arg-type]
    calls = response.choices[0].message.tool_calls
    assert calls is not None and calls[0].id == "call_toolsB_0_0"
    assert json.loads(calls[0].function.arguments) == {"country": "france"}


def test_history_with_tool_results_is_forwarded(client: openai.OpenAI) -> None:
    history: list[Any] = [
        *TASK,
        tool_call_message([("call_1", "capital", '{"country": "France"}')]),
        {"role": "tool", "tool_call_id": "call_1", "content": "Paris"},
    ]
    response = client.chat.completions.create(model="agents", messages=history, tools=TOOLS)  # type: ignore[arg-type]
    calls = response.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "weather"
    assert json.loads(calls[0].function.arguments)["city"] == "Paris"


def test_tool_choice_none_and_bad_tools(server: Server) -> None:
    url = f"{server.base_url}/chat/completions"
    plain = httpx.post(
        url, json={"model": "b", "messages": TASK, "tools": TOOLS, "tool_choice": "none"}
    )
    assert plain.status_code == 200
    assert plain.json()["choices"][0]["finish_reason"] == "stop"
    unknown = httpx.post(
        url,
        json={
            "model": "agents",
            "messages": TASK,
            "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "nope"}},
        },
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["param"] == "tool_choice"
    bad = httpx.post(url, json={"model": "agents", "messages": TASK, "tools": [{"type": "x"}]})
    assert bad.status_code == 422
    legacy = httpx.post(url, json={"model": "agents", "messages": TASK, "functions": [{}]})
    assert legacy.status_code == 422 and legacy.json()["error"]["param"] == "functions"


# -- LangChain ----------------------------------------------------------------------------------

langchain_openai = pytest.importorskip("langchain_openai")


def _tools() -> tuple[list[Any], list[str]]:
    from langchain_core.tools import tool

    called: list[str] = []

    @tool
    def capital(country: str) -> str:
        """The capital city of a country."""
        called.append(f"capital:{country.lower()}")
        return "Paris" if country.lower() == "france" else "unknown"

    @tool
    def weather(city: str, unit: str = "C") -> str:
        """Today's weather in a city."""
        called.append(f"weather:{city}")
        return f"sunny, 21 {unit} in {city}"

    return [capital, weather], called


def test_langchain_bind_tools(server: Server) -> None:
    tools, _ = _tools()
    model = langchain_openai.ChatOpenAI(
        model="agents", base_url=server.base_url, api_key="unused", max_retries=0, timeout=30
    ).bind_tools(tools)
    message = model.invoke(TASK[0]["content"])
    assert [call["name"] for call in message.tool_calls] == ["capital"]
    assert message.tool_calls[0]["args"]["country"].lower() == "france"
    streamed = None
    for chunk in model.stream(TASK[0]["content"]):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None
    assert [call["name"] for call in streamed.tool_calls] == ["capital"]


def test_langchain_agent_completes_a_two_tool_task(server: Server) -> None:
    from langchain.agents import create_agent

    tools, called = _tools()
    model = langchain_openai.ChatOpenAI(
        model="agents", base_url=server.base_url, api_key="unused", max_retries=0, timeout=30
    )
    agent = create_agent(model, tools)
    result = agent.invoke({"messages": [("user", TASK[0]["content"])]}, {"recursion_limit": 12})
    final = result["messages"][-1]
    assert called == ["capital:france", "weather:Paris"]
    assert final.type == "ai" and not final.tool_calls
    assert "sunny, 21 C in Paris" in final.content
