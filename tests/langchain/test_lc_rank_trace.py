"""The ranker's step: a child run of the ensemble, named for the ranker, with N/strategy/passes."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import tool
from lc_fakes import JoinFuser, LengthRanker, RunRecorder, ScriptedChatModel, call_as

from langchain_blender import Blender, ChatBlender, RankAndFuse, RankCandidates
from langchain_blender._callbacks import RANKER_TAG


def _check_ranker_run(
    runs: RunRecorder, root_name: str, n: int, top_k: int, *, longest_first: bool = True
) -> None:
    roots = runs.named(root_name)
    rankers = runs.named("LengthRanker")
    assert len(roots) == len(rankers) >= 1, runs.starts
    root_ids = {r["run_id"] for r in roots}
    for ranker in rankers:
        assert ranker["parent"] in root_ids
        assert ranker["inputs"] == {
            "ranker": "LengthRanker",
            "n": n,
            "strategy": None,
            "top_k": top_k,
            "passes": None,
        }
        assert RANKER_TAG in ranker["tags"]
        assert ranker["metadata"]["llm_blender_n"] == n
        assert ranker["metadata"]["llm_blender_passes"] is None
        assert "llm_blender_strategy" in ranker["metadata"]
        order = runs.outputs[ranker["run_id"]]["ranking"]["order"]
        assert sorted(order) == list(range(n))
        if longest_first:
            assert order == list(range(n))[::-1]


async def test_the_ranker_run_is_a_child_of_the_chat_ensemble(members: dict[str, Any]) -> None:
    chat = ChatBlender(models=members, ranker=LengthRanker(), fuser=JoinFuser(), top_k=2)
    for mode in ("invoke", "ainvoke", "batch"):
        runs = RunRecorder()
        config: Any = {"callbacks": [runs]}
        await call_as(chat, mode, config)
        _check_ranker_run(runs, "ChatBlender", 2, 2)
        ranker_ids = {r["run_id"] for r in runs.named("LengthRanker")}
        # beside the members: the members' parent is the ensemble, not the ranker
        member_parents = {s["parent"] for s in runs.starts if s["name"] in ("alpha", "beta")}
        assert member_parents.isdisjoint(ranker_ids)


async def test_the_ranker_run_is_a_child_of_the_llm_ensemble(members: dict[str, Any]) -> None:
    llm = Blender(models=members, ranker=LengthRanker(), fuser=JoinFuser(), top_k=1)
    runs = RunRecorder()
    await llm.ainvoke("hi", {"callbacks": [runs]})
    _check_ranker_run(runs, "Blender", 2, 1)


def test_tool_call_answers_are_ranked_in_a_ranker_run() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    members = {name: ScriptedChatModel(model_name=name) for name in ("adder", "summer")}
    chat = ChatBlender(models=members, ranker=LengthRanker()).bind_tools([add])
    runs = RunRecorder()
    message = chat.invoke("please add 2 and 3", {"callbacks": [runs]})
    assert message.response_metadata["blend_mode"] == "tool_calls"
    # Both members propose the same call: one distinct proposal is ranked (top-1 selection).
    _check_ranker_run(runs, "ChatBlender", 1, 1, longest_first=False)


def test_the_lcel_steps_trace_the_ranker() -> None:
    candidates = {"a": "short", "b": "a longer one"}
    for step, name in (
        (RankCandidates(ranker=LengthRanker()), "RankCandidates"),
        (RankAndFuse(ranker=LengthRanker(), top_k=2), "RankAndFuse"),
    ):
        runs = RunRecorder()
        step.invoke({"instruction": "q", "candidates": candidates}, {"callbacks": [runs]})
        _check_ranker_run(runs, name, 2, 2)  # RankCandidates: a full order (top_k = n)
