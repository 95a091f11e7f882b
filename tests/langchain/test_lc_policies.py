"""Member-selection policies in the LangChain ensembles: calls made and saved, in every mode.

The members are scripted chat models (and a runnable) that count their invocations; the ranker
ranks longer answers higher. A cascade of one member per stage stops once confident, a router
calls the member it picks, and the metadata's ``calls`` says who was called, who was skipped and
why, and what the calls cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from langchain_core.runnables import RunnableLambda
from lc_fakes import LengthRanker, RunRecorder, ScriptedChatModel

from blender_core.data import MixCandidate, MixRecord
from blender_core.policies import CascadePolicy, RouterPolicy
from blender_core.routing import RouterModel, fit_router
from langchain_blender import STAGE_TAG, Blender, ChatBlender

CASCADE = {"threshold": 0.5, "stage_sizes": [1]}
COSTS = {
    "cheap": 0.01,
    "mid": {"per_call": 0.1},
    "dear": {"input_per_1k": 1.0, "output_per_1k": 2.0},
}
"""Per-call prices order the cascade: cheapest first (no priors)."""


def _members() -> dict[str, Any]:
    return {
        "dear": ScriptedChatModel(model_name="dear", prefix="Dear says, at great length:"),
        "mid": ScriptedChatModel(model_name="mid", prefix="Mid says:"),
        "cheap": ScriptedChatModel(model_name="cheap", prefix="Cheap:"),
    }


def _invocations(members: dict[str, Any]) -> dict[str, int]:
    return {name: member.calls for name, member in members.items()}


class LLMEnds(BaseCallbackHandler):
    """Collects the ``generation_info`` of every finished top-level LLM run (the ensemble's,
    streamed ones included; not its members')."""

    def __init__(self) -> None:
        super().__init__()
        self.infos: list[dict[str, Any]] = []

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        if kwargs.get("parent_run_id") is not None:
            return
        for generations in response.generations:
            self.infos.extend(g.generation_info or {} for g in generations)


def _check_cascade_calls(calls: dict[str, Any]) -> None:
    """One cheap call, confident: the other two saved."""
    assert calls["policy"] == "cascade"
    assert calls["members"] == ["dear", "mid", "cheap"]
    assert calls["called"] == ["cheap"]
    assert calls["stages"] == [["cheap"]]
    assert calls["skipped"] == {"mid": "confident", "dear": "confident"}
    assert calls["stop_reason"] == "confident"
    assert calls["calls_made"] == 1
    assert calls["calls_saved"] == 2
    assert len(calls["confidences"]) == 1 and calls["confidences"][0] >= 0.5
    assert calls["cost"] == {"cheap": pytest.approx(0.01)}
    assert calls["total_cost"] == pytest.approx(0.01)
    assert calls["usage"]["cheap"]["estimated"] is False  # the member's usage_metadata


# -- cascade ------------------------------------------------------------------------------------


async def test_a_chat_cascade_calls_only_what_it_needs_in_every_mode() -> None:
    members = _members()
    chat = ChatBlender(
        models=members, ranker=LengthRanker(), policy="cascade", policy_options=CASCADE, costs=COSTS
    )
    for mode in ("invoke", "ainvoke", "stream", "astream", "batch", "abatch"):
        before = _invocations(members)
        if mode == "invoke":
            messages = [chat.invoke("hi")]
        elif mode == "ainvoke":
            messages = [await chat.ainvoke("hi")]
        elif mode == "stream":
            chunks = list(chat.stream("hi"))
            messages = [chunks[-1]]
        elif mode == "astream":
            chunks = [c async for c in chat.astream("hi")]
            messages = [chunks[-1]]
        elif mode == "batch":
            messages = chat.batch(["hi", "yo"])
        else:
            messages = await chat.abatch(["hi", "yo"])
        for message in messages:
            _check_cascade_calls(message.response_metadata["calls"])
            assert message.response_metadata["candidates"] == {"cheap": message.text}
            # the ensemble's usage is the called member's alone
            assert message.usage_metadata is not None
            assert message.usage_metadata["output_tokens"] == 2  # "Cheap: hi"
        after = _invocations(members)
        assert {n: after[n] - before[n] for n in after} == {
            "dear": 0,
            "mid": 0,
            "cheap": len(messages),
        }, mode


async def test_an_llm_cascade_calls_only_what_it_needs_in_every_mode() -> None:
    members = _members()
    runnable_calls: list[str] = []

    def dear(prompt: Any) -> str:
        runnable_calls.append(str(prompt))
        return "the dear runnable's long answer"

    models: dict[str, Any] = {**members, "dear": RunnableLambda(dear)}
    llm = Blender(
        models=models, ranker=LengthRanker(), policy="cascade", policy_options=CASCADE, costs=COSTS
    )
    for mode in ("invoke", "ainvoke", "stream", "astream", "batch", "abatch", "generate"):
        ends = LLMEnds()
        config: Any = {"callbacks": [ends]}
        before = _invocations(members)
        if mode == "invoke":
            texts = [llm.invoke("hi", config)]
        elif mode == "ainvoke":
            texts = [await llm.ainvoke("hi", config)]
        elif mode == "stream":
            texts = ["".join(llm.stream("hi", config))]
        elif mode == "astream":
            texts = ["".join([c async for c in llm.astream("hi", config)])]
        elif mode == "batch":
            texts = llm.batch(["hi", "yo"], config)
        elif mode == "abatch":
            texts = await llm.abatch(["hi", "yo"], config)
        else:
            result = llm.generate(["hi"])
            ends.infos = [g[0].generation_info or {} for g in result.generations]
            texts = [result.generations[0][0].text]
            assert result.llm_output is not None
            assert result.llm_output["token_usage"]["output_tokens"] == 2
        assert len(ends.infos) == len(texts), mode
        for info in ends.infos:
            _check_cascade_calls(info["calls"])
            assert list(info["candidates"]) == ["cheap"]
            assert info["usage_metadata"]["output_tokens"] == 2
        # a batch's runs end in any order
        assert sorted(info["candidates"]["cheap"] for info in ends.infos) == sorted(texts)
        after = _invocations(members)
        assert after["mid"] == before["mid"] and after["cheap"] - before["cheap"] == len(texts)
    assert runnable_calls == []  # the dear member (a runnable) was never invoked


async def test_a_cascade_goes_on_in_stages_and_each_stage_is_a_run() -> None:
    members = _members()
    members["cheap"] = ScriptedChatModel(model_name="cheap", fail="cheap is down")
    chat = ChatBlender(
        models=members,
        ranker=LengthRanker(),
        policy="cascade",
        policy_options={"threshold": 1.0, "stage_sizes": [1], "max_members": 2},
        costs=COSTS,
    )
    for mode in ("invoke", "ainvoke"):
        runs = RunRecorder()
        config: Any = {"callbacks": [runs]}
        message = (
            chat.invoke("hi", config) if mode == "invoke" else await chat.ainvoke("hi", config)
        )
        calls = message.response_metadata["calls"]
        assert calls["stages"] == [["cheap"], ["mid"]]
        assert calls["skipped"] == {"dear": "max_members"}
        assert calls["stop_reason"] == "max_members"
        assert calls["calls_saved"] == 1
        assert [f["model"] for f in message.response_metadata["failures"]] == ["cheap"]
        assert message.response_metadata["candidates"] == {"mid": message.text}

        (root,) = runs.named("ChatBlender")
        stages = [runs.named(f"stage {k}")[0] for k in (0, 1)]
        assert all(s["parent"] == root["run_id"] for s in stages)
        assert all(STAGE_TAG in s["tags"] for s in stages)
        assert stages[0]["inputs"] == {
            "stage": 0,
            "members": ["cheap"],
            "policy": "cascade",
            "hedged": False,
        }
        assert stages[1]["inputs"]["members"] == ["mid"]
        # the members nest in their stage; the failure is the stage's output
        assert runs.children_of(stages[0]["run_id"]) == ["cheap"]
        assert runs.children_of(stages[1]["run_id"]) == ["mid"]
        first = runs.outputs[stages[0]["run_id"]]
        assert first["answered"] == []
        assert [f["model"] for f in first["failed"]] == ["cheap"]
        assert runs.outputs[stages[1]["run_id"]] == {"answered": ["mid"], "failed": []}
        assert not runs.named("dear")
        assert "stage 0" in runs.children_of(root["run_id"])
        assert "LengthRanker" in runs.children_of(root["run_id"])  # ranked between stages


def test_policy_all_reports_every_member_in_one_stage() -> None:
    members = _members()
    chat = ChatBlender(models=members, ranker=LengthRanker(), costs={"cheap": 0.01})
    message = chat.invoke("hi")
    calls = message.response_metadata["calls"]
    assert calls["policy"] == "all"
    assert calls["called"] == ["dear", "mid", "cheap"]
    assert calls["stages"] == [["dear", "mid", "cheap"]]
    assert calls["skipped"] == {}
    assert calls["stop_reason"] == "all_called"
    assert (calls["calls_made"], calls["calls_saved"]) == (3, 0)
    assert calls["cost"] == {"cheap": pytest.approx(0.01)}
    assert set(calls["usage"]) == {"dear", "mid", "cheap"}
    assert _invocations(members) == {"dear": 1, "mid": 1, "cheap": 1}
    # the summed usage of every member: 6 + 3 + 2 output words
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] == 11
    llm = Blender(models=_members(), ranker=LengthRanker())
    info = llm.generate(["hi"]).generations[0][0].generation_info or {}
    assert info["calls"]["called"] == ["dear", "mid", "cheap"]
    assert info["calls"]["calls_saved"] == 0


def test_tool_call_answers_carry_calls_too() -> None:
    members = _members()
    chat = ChatBlender(
        models=members, ranker=LengthRanker(), policy="cascade", policy_options=CASCADE, costs=COSTS
    )

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    message = chat.bind_tools([get_weather]).invoke("use a tool for Paris")
    assert message.response_metadata["blend_mode"] == "tool_calls"
    assert message.tool_calls and message.tool_calls[0]["name"] == "get_weather"
    _check_cascade_calls(message.response_metadata["calls"])
    assert _invocations(members) == {"dear": 0, "mid": 0, "cheap": 1}


# -- router -------------------------------------------------------------------------------------

TOPICS = {"math": 0, "poem": 1, "code": 2}
ROUTED = ("cheap", "mid", "dear")
"""The member best at each topic, in ``TOPICS``' order."""


def fake_embed(texts: Sequence[str]) -> np.ndarray:
    """A prompt 'embedding' that says its topic (one-hot; no encoder to load)."""
    out = np.zeros((len(texts), len(TOPICS)))
    for row, text in enumerate(texts):
        for topic, column in TOPICS.items():
            if topic in text:
                out[row, column] = 1.0
    return out


@pytest.fixture(scope="module")
def router_model() -> RouterModel:
    """A softmax router fitted on records where the topic's member writes the best answer."""
    records = []
    for k in range(24):
        topic = list(TOPICS)[k % 3]
        best = ROUTED[TOPICS[topic]]
        candidates = tuple(
            MixCandidate(
                model=m, text=f"{m} on {topic}", scores={"pref": 1.0 if m == best else 0.1}
            )
            for m in ROUTED
        )
        records.append(
            MixRecord(id=f"r{k}", instruction=f"a {topic} question", candidates=candidates)
        )
    embeddings = fake_embed([r.instruction for r in records])
    return fit_router(embeddings, records, kind="softmax", steps=300, lr=0.1, metric="pref")


@pytest.mark.parametrize("front", ["chat", "llm"])
async def test_a_router_calls_only_the_routed_member(front: str, router_model: RouterModel) -> None:
    members = _members()
    policy = RouterPolicy(router_model, top_m=1, embed=fake_embed)
    chat = ChatBlender(models=members, ranker=LengthRanker(), policy=policy)
    llm = Blender(models=members, ranker=LengthRanker(), policy=policy)
    for prompt, routed in (("a poem question", "mid"), ("a code question", "dear")):
        before = _invocations(members)
        if front == "chat":
            metadata = (await chat.ainvoke(prompt)).response_metadata
        else:
            result = await llm.agenerate([prompt])
            metadata = result.generations[0][0].generation_info or {}
        calls = metadata["calls"]
        assert calls["policy"] == "router"
        assert calls["called"] == [routed], prompt
        assert calls["skipped"] == {m: "not_routed" for m in members if m != routed}
        assert calls["stop_reason"] == "routed"
        assert calls["calls_saved"] == 2
        assert list(metadata["candidates"]) == [routed]
        after = _invocations(members)
        assert {n: after[n] - before[n] for n in after} == {m: int(m == routed) for m in members}


def test_a_router_from_its_name_and_options(router_model: RouterModel) -> None:
    chat = ChatBlender(
        models=_members(),
        ranker="/no/such/ranker",  # never loaded: the router calls the member, one answer
        policy="router",
        policy_options={"model": router_model, "top_m": 2},
    )
    assert isinstance(chat.engine.core.policy, RouterPolicy)
    assert chat.engine.core.policy.top_m == 2
    assert not chat.engine.core.loaded


# -- bad options fail at construction -----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"policy": "greedy"}, ValueError, "unknown policy 'greedy'"),
        ({"policy": 3}, TypeError, "a policy must have start"),
        (
            {"policy": "cascade", "policy_options": {"threshold": 1.5}},
            ValueError,
            "cascade threshold must be in",
        ),
        (
            {"policy": "cascade", "policy_options": {"stage_sizes": [0]}},
            ValueError,
            "stage_sizes must be integers",
        ),
        (
            {"policy": "cascade", "policy_options": {"thresold": 0.5}},
            TypeError,
            "thresold",
        ),
        ({"policy_options": {"threshold": 0.5}}, ValueError, "policy 'all' takes no options"),
        ({"policy": "router"}, ValueError, "needs model="),
        (
            {"policy": CascadePolicy(), "policy_options": {"threshold": 0.5}},
            ValueError,
            "with a policy object",
        ),
        (
            {"costs": {"ghost": 0.1}},
            ValueError,
            r"costs name members not in the ensemble: \['ghost'\]",
        ),
        ({"costs": {"cheap": -1.0}}, ValueError, "cheap"),
        (
            {"policy": "cascade", "policy_options": {"order": ["cheap", "ghost"]}},
            ValueError,
            r"order names members not in the ensemble: \['ghost'\]",
        ),
    ],
)
@pytest.mark.parametrize("front", [ChatBlender, Blender])
def test_bad_policy_options_fail_at_construction(
    front: type[Any], options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        front(models=_members(), ranker="/no/such/ranker", **options)


def test_a_router_that_knows_no_member_fails_at_construction() -> None:
    model = RouterModel("softmax", ("x", "y"), {"W": np.zeros((3, 2)), "b": np.zeros(2)})
    with pytest.raises(ValueError, match="the router knows none of the ensemble's members"):
        ChatBlender(models=_members(), policy=RouterPolicy(model, embed=fake_embed))


def test_good_policy_options_load_nothing() -> None:
    chat = ChatBlender(
        models=_members(),
        ranker="/no/such/ranker",
        policy="cascade",
        policy_options={"threshold": 0.8, "stage_sizes": [1, 2], "budget": 1.0},
        costs=COSTS,
    )
    policy = chat.engine.core.policy
    assert isinstance(policy, CascadePolicy)
    assert policy.stage_sizes == (1, 2) and policy.budget == 1.0
    assert set(policy.costs) == set(COSTS)  # the ensemble's costs reach the cascade
    assert not chat.engine.core.loaded


def test_a_nested_ensembles_members_nest_in_its_own_stage() -> None:
    inner = ChatBlender(models=_members(), ranker=LengthRanker(), ensemble_name="inner")
    outer = ChatBlender(
        models={"inner": inner, "solo": ScriptedChatModel(model_name="solo")},
        ranker=LengthRanker(),
    )
    runs = RunRecorder()
    outer.invoke("hi", {"callbacks": [runs]})
    (root,) = [s for s in runs.named("ChatBlender") if s["parent"] is None]
    (outer_stage,) = [s for s in runs.named("stage 0") if s["parent"] == root["run_id"]]
    assert runs.children_of(outer_stage["run_id"]) == ["inner", "solo"]
    (inner_run,) = runs.named("inner")
    (inner_stage,) = [s for s in runs.named("stage 0") if s["parent"] == inner_run["run_id"]]
    assert runs.children_of(inner_stage["run_id"]) == ["cheap", "dear", "mid"]


async def test_a_hedged_stage_is_its_own_run_beside_the_slow_one() -> None:
    members = _members()
    members["cheap"] = ScriptedChatModel(model_name="cheap", prefix="Cheap:", delay=0.5)
    chat = ChatBlender(
        models=members,
        ranker=LengthRanker(),
        policy="cascade",
        policy_options={
            "threshold": 1.0,
            "stage_sizes": [1],
            "max_members": 2,
            "hedge_after": 0.01,  # the slow first stage is still running: start the next one
        },
        costs=COSTS,
    )
    runs = RunRecorder()
    message = await chat.ainvoke("hi", {"callbacks": [runs]})
    calls = message.response_metadata["calls"]
    assert calls["hedged"] == 1
    assert calls["stages"] == [["cheap"], ["mid"]]
    assert _invocations(members) == {"dear": 0, "mid": 1, "cheap": 1}
    (root,) = runs.named("ChatBlender")
    stages = [runs.named(f"stage {k}")[0] for k in (0, 1)]
    assert [s["inputs"]["hedged"] for s in stages] == [False, True]
    assert all(s["parent"] == root["run_id"] for s in stages)
    # concurrent stages: each member in its own stage's run
    assert runs.children_of(stages[0]["run_id"]) == ["cheap"]
    assert runs.children_of(stages[1]["run_id"]) == ["mid"]
