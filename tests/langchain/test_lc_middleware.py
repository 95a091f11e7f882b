"""Agent middleware with create_agent: best-of-N model calls and ranked tool filtering."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from lc_fakes import LengthRanker, ScriptedChatModel
from pydantic import Field

from blender_core.blend import BlendError
from langchain_blender import BestOfModelsMiddleware, RankedToolFilterMiddleware


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"sunny in {city}"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def word_count(text: str) -> int:
    """Count words."""
    return len(text.split())


QUESTION = {"messages": [("user", "Use the tool add to add 2 and 40")]}


def _check_tool_loop(messages: list[Any]) -> None:
    kinds = [type(m).__name__ for m in messages]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    call = messages[1].tool_calls[0]
    assert call["name"] == "add" and call["args"] == {"a": 2, "b": 40}
    assert isinstance(messages[2], ToolMessage) and messages[2].text == "42"
    final = messages[3]
    assert isinstance(final, AIMessage) and not final.tool_calls
    assert "the tool said 42" in final.text
    best_of = final.response_metadata["best_of"]
    assert best_of["chosen"] == "second"  # the longer answer under LengthRanker
    assert set(best_of["candidates"]) == {"agent", "second"}


async def test_best_of_models_runs_a_tool_loop_to_the_end() -> None:
    agent_model = ScriptedChatModel(model_name="first", prefix="First:")
    second = ScriptedChatModel(model_name="second", prefix="Second, more verbose:")
    agent = create_agent(
        model=agent_model,
        tools=[add, get_weather],
        middleware=[BestOfModelsMiddleware({"second": second}, ranker=LengthRanker())],
    )
    _check_tool_loop(agent.invoke(QUESTION)["messages"])
    _check_tool_loop((await agent.ainvoke(QUESTION))["messages"])
    assert agent_model.calls == 4 and second.calls == 4  # two steps, twice, both models


async def test_best_of_models_survives_a_failing_model_and_reports_it() -> None:
    broken = ScriptedChatModel(model_name="broken", fail="rate limited")
    agent = create_agent(
        model=ScriptedChatModel(model_name="ok"),
        tools=[add],
        middleware=[BestOfModelsMiddleware([broken], ranker=LengthRanker())],
    )
    for result in (agent.invoke(QUESTION), await agent.ainvoke(QUESTION)):
        final = result["messages"][-1]
        assert "the tool said 42" in final.text
        (failure,) = final.response_metadata["best_of"]["failures"]
        assert failure == {
            "model": "broken",
            "kind": "error",
            "message": "RuntimeError: rate limited",
        }


def test_best_of_models_all_failing_raises_naming_each() -> None:
    agent = create_agent(
        model=ScriptedChatModel(model_name="a", fail="down"),
        tools=[add],
        middleware=[
            BestOfModelsMiddleware(
                [ScriptedChatModel(model_name="b", fail="also down")], ranker=LengthRanker()
            )
        ],
    )
    with pytest.raises(BlendError, match="also down") as info:
        agent.invoke(QUESTION)
    assert {f.model for f in info.value.failures} == {"agent", "b"}


def test_best_of_models_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="agent"):
        BestOfModelsMiddleware({"agent": ScriptedChatModel()}, ranker=LengthRanker())
    with pytest.raises(ValueError, match="min_candidates"):
        BestOfModelsMiddleware([ScriptedChatModel()], ranker=LengthRanker(), min_candidates=3)


class _RecordingModel(ScriptedChatModel):
    seen_tools: list[list[str]] = Field(default_factory=list)

    def _answer(self, messages: Any, **kwargs: Any) -> AIMessage:
        self.seen_tools.append(sorted(t["function"]["name"] for t in kwargs.get("tools") or []))
        return super()._answer(messages, **kwargs)


async def test_ranked_tool_filter_keeps_the_top_tools() -> None:
    model = _RecordingModel(model_name="rec")
    agent = create_agent(
        model=model,
        tools=[add, get_weather, word_count],
        middleware=[
            RankedToolFilterMiddleware(max_tools=1, ranker=LengthRanker(), always_include=["add"])
        ],
    )
    agent.invoke(QUESTION)
    await agent.ainvoke(QUESTION)
    # LengthRanker keeps the longest description (get_weather) plus the always-included add.
    assert model.seen_tools and all(t == ["add", "get_weather"] for t in model.seen_tools)


def test_ranked_tool_filter_validates() -> None:
    with pytest.raises(ValueError, match="max_tools"):
        RankedToolFilterMiddleware(max_tools=0, ranker=LengthRanker())
    agent = create_agent(
        model=ScriptedChatModel(),
        tools=[add, get_weather],
        middleware=[
            RankedToolFilterMiddleware(max_tools=1, ranker=LengthRanker(), always_include=["nope"])
        ],
    )
    with pytest.raises(ValueError, match="nope"):
        agent.invoke(QUESTION)
