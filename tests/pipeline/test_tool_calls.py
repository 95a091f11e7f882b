"""Tool-call selection (blender_core.tool_calls): rendering, policy, metadata, sync and async."""

from __future__ import annotations

import asyncio

import pytest
from suite_helpers import LengthRanker

from blender_core.blend import BlendError, ModelFailure, RankStep
from blender_core.tool_calls import (
    ToolCall,
    ToolProposal,
    aselect_tool_calls,
    render_tool_calls,
    select_tool_calls,
)

ADD = ToolCall("add", {"b": 3, "a": 2}, id="call_1")
MUL = ToolCall("multiply", {"a": 4, "b": 5, "note": "ünï"}, id="call_2")


def test_rendering_is_canonical() -> None:
    assert ADD.render() == 'add({"a": 2, "b": 3})'
    assert MUL.render() == 'multiply({"a": 4, "b": 5, "note": "ünï"})'
    assert render_tool_calls([ADD, MUL], "  let me compute ") == (
        'let me compute\nadd({"a": 2, "b": 3})\nmultiply({"a": 4, "b": 5, "note": "ünï"})'
    )
    assert ToolProposal(text="", tool_calls=(ADD,)).render() == ADD.render()
    # Argument order and ids do not change the rendering: equal calls render equal.
    assert ToolCall("add", {"a": 2, "b": 3}).render() == ADD.render()


def test_openai_round_trip_and_bad_items() -> None:
    item = ADD.to_openai()
    assert item["type"] == "function" and item["id"] == "call_1"
    assert ToolCall.from_openai(item) == ADD
    with pytest.raises(ValueError, match="not valid JSON"):
        ToolCall.from_openai({"id": "x", "function": {"name": "f", "arguments": "{oops"}})
    with pytest.raises(ValueError, match="JSON object"):
        ToolCall.from_openai({"function": {"name": "f", "arguments": "[1]"}})
    with pytest.raises(ValueError, match="'function' object"):
        ToolCall.from_openai({"id": "x"})
    with pytest.raises(ValueError, match="name"):
        ToolCall("", {})
    with pytest.raises(TypeError, match="mapping"):
        ToolCall("f", [1, 2])  # type: ignore[arg-type]


def test_tool_calls_win_over_text_and_the_best_is_selected() -> None:
    ranker = LengthRanker()
    chosen = select_tool_calls(
        ranker,
        "what is 2+3 and 4*5?",
        {
            "talker": "A long answer in prose that does not call any tool at all.",
            "adder": ToolProposal(tool_calls=(ADD,)),
            "both": ToolProposal(text="computing", tool_calls=(ADD, MUL)),
        },
        input="user: hi\nassistant: hello",
    )
    assert chosen.model == "both"
    assert chosen.tool_calls == (ADD, MUL)
    assert chosen.text == "computing"
    # Only proposals with calls were ranked, on the instruction and the input as the source.
    ((source, ranked),) = ranker.calls
    assert source == "what is 2+3 and 4*5?\n\nuser: hi\nassistant: hello"
    assert ranked == [ADD.render(), render_tool_calls([ADD, MUL], "computing")]
    meta = chosen.result.to_dict()
    assert meta["blend_mode"] == "tool_calls"
    assert meta["best_models"] == ["both"]
    assert meta["top_k"] == [meta["best"]]
    assert meta["fuse_latency"] == 0.0 or meta["fuse_latency"] < 1.0
    assert set(meta["candidates"]) == {"talker", "adder", "both"}  # the talker answered too
    assert meta["texts"] == ranked


def test_without_tool_calls_every_answer_is_ranked_and_selected_not_fused() -> None:
    ranker = LengthRanker()
    chosen = select_tool_calls(ranker, "q", {"a": "short", "b": "the longest one"})
    assert chosen.model == "b" and chosen.tool_calls == () and chosen.text == "the longest one"
    assert chosen.result.text == "the longest one"
    assert chosen.result.blend_mode == "tool_calls"


def test_identical_proposals_merge_and_the_first_member_is_chosen() -> None:
    ranker = LengthRanker()
    same = ToolProposal(tool_calls=(ToolCall("add", {"a": 1, "b": 2}, id="x"),))
    also = ToolProposal(tool_calls=(ToolCall("add", {"b": 2, "a": 1}, id="y"),))
    chosen = select_tool_calls(ranker, "q", {"m1": same, "m2": also})
    assert chosen.model == "m1" and chosen.tool_calls[0].id == "x"
    assert chosen.result.models_by_text == (("m1", "m2"),)
    assert [len(c) for _, c in ranker.calls] == [1]  # ranked once


def test_failures_latencies_and_empty_proposals_are_reported() -> None:
    failure = ModelFailure("down", "error", "RuntimeError: boom")
    chosen = select_tool_calls(
        LengthRanker(),
        "q",
        {"a": ToolProposal(tool_calls=(ADD,)), "silent": ToolProposal()},
        failures=[failure],
        latencies={"a": 0.5, "down": 1.0, "silent": 0.1},
    )
    meta = chosen.result.to_dict()
    assert [f["model"] for f in meta["failures"]] == ["down", "silent"]
    assert meta["failures"][1]["message"] == "empty answer"
    assert meta["latencies"] == {"a": 0.5, "down": 1.0, "silent": 0.1}


def test_too_few_candidates_raise_blend_error_naming_the_failures() -> None:
    with pytest.raises(BlendError, match="boom") as info:
        select_tool_calls(
            LengthRanker(),
            "q",
            {"a": ToolProposal(tool_calls=(ADD,))},
            failures=[ModelFailure("down", "error", "RuntimeError: boom")],
            min_candidates=2,
        )
    assert [f.model for f in info.value.failures] == ["down"]


def test_bad_proposals_are_refused_clearly() -> None:
    with pytest.raises(TypeError, match="mapping member name"):
        select_tool_calls(LengthRanker(), "q", ["a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="proposal of 'a'"):
        select_tool_calls(LengthRanker(), "q", {"a": 3})  # type: ignore[dict-item]


async def test_async_selection_is_traced_with_top_k_one() -> None:
    steps: list[RankStep] = []

    async def tracer(step, rank):
        steps.append(step)
        return await rank()

    chosen = await aselect_tool_calls(
        LengthRanker(),
        "q",
        {"a": ToolProposal(tool_calls=(ADD,)), "b": ToolProposal(tool_calls=(ADD, MUL))},
        rank_tracer=tracer,
    )
    assert chosen.model == "b"
    assert [(s.n, s.top_k) for s in steps] == [(2, 1)]


async def test_sync_selection_works_inside_a_running_event_loop() -> None:
    # A sync caller in a notebook cell: the bridge runs the selection in a worker thread.
    chosen = select_tool_calls(
        LengthRanker(), "q", {"a": "x", "b": ToolProposal(tool_calls=(ADD,))}
    )
    assert chosen.model == "b"
    asyncio.get_running_loop()  # still ours, untouched
