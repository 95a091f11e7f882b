"""BlenderLLM under member-selection policies: a cascade calls members in stages and stops when
confident, a router calls only the members it routes to, "all" calls every member; every
response carries the report (``additional_kwargs["calls"]``) and each stage is a span."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from llama_index.core.base.llms.types import ChatMessage, CompletionResponse
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import FunctionTool

from blender_core.data import MixCandidate, MixRecord
from blender_core.policies import CascadePolicy, MemberCost, RouterPolicy
from blender_core.ranking import BaseRanker, Ranking
from blender_core.routing import RouterModel, fit_router
from llamaindex_blender import BlenderLLM
from llamaindex_blender._adapters import reported_usage
from llamaindex_blender._tracing import StageEndEvent

from .conftest import FixedLLM, JoinFuser, LengthRanker, SpanCollector
from .test_llm import add, mul, proposer

USER = [ChatMessage(role="user", content="Name a fruit.")]


class TableRanker(BaseRanker):
    """Scores each text from a table (unknown texts 0); counts the texts it ranked."""

    def __init__(self, scores: Mapping[str, float]) -> None:
        self.scores = dict(scores)
        self.ranked: list[list[str]] = []

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        self.ranked.extend(list(c) for c in candidate_lists)
        return [
            Ranking.from_scores([self.scores.get(text, 0.0) for text in candidates])
            for candidates in candidate_lists
        ]


def members() -> dict[str, FixedLLM]:
    return {
        "a": FixedLLM(answer="apple", name="a"),
        "b": FixedLLM(answer="banana", name="b"),
        "c": FixedLLM(answer="cherry", name="c"),
    }


def calls_of(llm: BlenderLLM) -> dict[str, int]:
    """How many times each member was really called."""
    return {name: len(member.prompts) for name, member in llm.members.items()}  # type: ignore[attr-defined]


# The cascade: cost orders the members (cheapest first: b, c, a), one per stage. After b alone
# (score 0, expected 0 for the rest) the confidence is sigmoid(0) = 0.5 < 0.9: go on; after c
# (score 5) it is sigmoid(5) = 0.993: stop, a is never called.
COSTS = {"a": 0.1, "b": 0.001, "c": 0.01}
SCORES = {"banana": 0.0, "cherry": 5.0, "apple": 1.0}


def cascade(**kwargs: Any) -> BlenderLLM:
    kwargs.setdefault("policy", "cascade")
    kwargs.setdefault("policy_options", {"threshold": 0.9, "stage_sizes": [1]})
    kwargs.setdefault("costs", COSTS)
    kwargs.setdefault("ranker", TableRanker(SCORES))
    kwargs.setdefault("fuser", JoinFuser())
    kwargs.setdefault("top_k", 2)
    return BlenderLLM(kwargs.pop("models", members()), **kwargs)


def check_cascade(info: dict[str, Any]) -> None:
    calls = info["calls"]
    assert calls["policy"] == "cascade"
    assert calls["members"] == ["a", "b", "c"]
    assert calls["stages"] == [["b"], ["c"]]
    assert calls["called"] == ["b", "c"]
    assert calls["skipped"] == {"a": "confident"}
    assert calls["stop_reason"] == "confident"
    assert calls["calls_made"] == 2 and calls["calls_saved"] == 1
    assert calls["confidences"] == pytest.approx([0.5, 1 / (1 + np.exp(-5.0))])
    assert calls["cost"] == pytest.approx({"b": 0.001, "c": 0.01})
    assert calls["total_cost"] == pytest.approx(0.011)
    assert set(calls["usage"]) == {"b", "c"}
    assert all(u["estimated"] for u in calls["usage"].values())
    # the blend ranked and fused the answers of the members called, nobody else's
    assert info["candidates"] == {"b": "banana", "c": "cherry"}
    assert info["best_models"] == ["c"]


async def _run(llm: BlenderLLM, method: str) -> tuple[str, dict[str, Any]]:
    """The answer and the blend metadata of one call of ``method`` (a stream: its last chunk)."""
    if method == "chat":
        r = llm.chat(USER)
        return r.message.content or "", r.additional_kwargs
    if method == "achat":
        r = await llm.achat(USER)
        return r.message.content or "", r.additional_kwargs
    if method == "complete":
        c = llm.complete("Name a fruit.")
        return c.text, c.additional_kwargs
    if method == "acomplete":
        c = await llm.acomplete("Name a fruit.")
        return c.text, c.additional_kwargs
    if method == "stream_chat":
        chunks = list(llm.stream_chat(USER))
        assert all(not c.additional_kwargs for c in chunks[:-1])
        return chunks[-1].message.content or "", chunks[-1].additional_kwargs
    if method == "astream_chat":
        achunks = [c async for c in await llm.astream_chat(USER)]
        return achunks[-1].message.content or "", achunks[-1].additional_kwargs
    if method == "stream_complete":
        cchunks = list(llm.stream_complete("Name a fruit."))
        return cchunks[-1].text, cchunks[-1].additional_kwargs
    assert method == "astream_complete"
    acchunks = [c async for c in await llm.astream_complete("Name a fruit.")]
    return acchunks[-1].text, acchunks[-1].additional_kwargs


METHODS = [
    "chat",
    "achat",
    "complete",
    "acomplete",
    "stream_chat",
    "astream_chat",
    "stream_complete",
    "astream_complete",
]


@pytest.mark.parametrize("method", METHODS)
def test_cascade_calls_members_in_stages_and_skips_the_rest(method: str) -> None:
    llm = cascade()
    text, info = asyncio.run(_run(llm, method))
    assert text == "cherry | banana"
    check_cascade(info)
    assert calls_of(llm) == {"a": 0, "b": 1, "c": 1}  # the skipped member was never called


@pytest.mark.parametrize("method", ["chat", "astream_chat"])
def test_confident_cascade_stops_after_the_first_member(method: str) -> None:
    llm = BlenderLLM(
        members(),
        ranker=LengthRanker(),
        fuser=JoinFuser(),
        policy="cascade",
        policy_options={"threshold": 0.5, "stage_sizes": [1]},
        costs={"a": 1.0, "b": 2.0, "c": 3.0},
    )
    text, info = asyncio.run(_run(llm, method))
    assert text == "apple"
    calls = info["calls"]
    assert (calls["called"], calls["calls_made"], calls["calls_saved"]) == (["a"], 1, 2)
    assert calls["skipped"] == {"b": "confident", "c": "confident"}
    assert (calls["cost"], calls["total_cost"]) == ({"a": 1.0}, 1.0)
    assert calls_of(llm) == {"a": 1, "b": 0, "c": 0}


@pytest.mark.parametrize("method", ["chat", "achat", "stream_complete", "astream_chat"])
def test_policy_all_reports_every_member_in_one_stage(method: str) -> None:
    llm = BlenderLLM(members(), ranker=LengthRanker(), fuser=JoinFuser(), top_k=2)
    text, info = asyncio.run(_run(llm, method))
    assert text == "banana | cherry"
    calls = info["calls"]
    assert calls["policy"] == "all"
    assert calls["stages"] == [["a", "b", "c"]]
    assert calls["skipped"] == {} and calls["stop_reason"] == "all_called"
    assert (calls["calls_made"], calls["calls_saved"]) == (3, 0)
    assert calls["cost"] == {} and calls["total_cost"] == 0.0
    assert calls_of(llm) == {"a": 1, "b": 1, "c": 1}


def test_a_failing_member_is_passed_over_and_the_cascade_still_stops() -> None:
    models = members()
    models["b"] = FixedLLM(answer="", name="b", error="boom")
    llm = cascade(models=models)
    info = llm.chat(USER).additional_kwargs
    calls = info["calls"]
    # no confidence after the failed stage; after c's answer, measured over who answered
    assert calls["stages"] == [["b"], ["c"]]
    assert calls["skipped"] == {"a": "confident"} and calls["stop_reason"] == "confident"
    assert info["failures"] == [{"model": "b", "kind": "error", "message": "RuntimeError: boom"}]
    assert calls["usage"]["b"]["output_tokens"] == 0
    assert info["candidates"] == {"c": "cherry"}
    assert calls_of(llm) == {"a": 0, "b": 1, "c": 1}


def test_max_retries_retry_a_member_within_its_stage() -> None:
    failures = iter([RuntimeError("flaky")])

    def once() -> None:
        error = next(failures, None)
        if error is not None:
            raise error

    models = members()
    models["b"] = FixedLLM(answer="banana", name="b", on_call=once)
    llm = cascade(models=models, max_retries=1)
    info = llm.chat(USER).additional_kwargs
    check_cascade(info)
    assert info["failures"] == []
    assert calls_of(llm) == {"a": 0, "b": 2, "c": 1}


# -- the members' own token counts --------------------------------------------------------------


class UsageLLM(FixedLLM):
    """Reports token counts the way LlamaIndex integrations do: in ``raw`` (``usage``) or in
    ``additional_kwargs`` (OpenAI's integration)."""

    raw_usage: dict[str, int] | None = None
    kwargs_usage: dict[str, int] | None = None

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.prompts = [*self.prompts, prompt]
        return CompletionResponse(
            text=self.answer,
            raw={"usage": self.raw_usage} if self.raw_usage is not None else None,
            additional_kwargs=dict(self.kwargs_usage or {}),
        )


def test_reported_token_counts_price_the_calls() -> None:
    llm = BlenderLLM(
        {
            "openai": UsageLLM(
                answer="one", kwargs_usage={"prompt_tokens": 1000, "completion_tokens": 500}
            ),
            "anthropic": UsageLLM(
                answer="two", raw_usage={"input_tokens": 2000, "output_tokens": 1000}
            ),
            "silent": UsageLLM(answer="three!"),
        },
        ranker=LengthRanker(),
        costs={
            "openai": {"input_per_1k": 1.0, "output_per_1k": 2.0},
            "anthropic": MemberCost(input_per_1k=0.5, output_per_1k=1.0, per_call=0.25),
        },
    )
    calls = llm.complete("Count.").additional_kwargs["calls"]
    assert calls["usage"]["openai"] == {
        "input_tokens": 1000,
        "output_tokens": 500,
        "estimated": False,
    }
    assert calls["usage"]["anthropic"] == {
        "input_tokens": 2000,
        "output_tokens": 1000,
        "estimated": False,
    }
    assert calls["usage"]["silent"]["estimated"] is True
    assert calls["cost"] == pytest.approx({"openai": 2.0, "anthropic": 2.25})
    assert calls["total_cost"] == pytest.approx(4.25)


def test_reported_usage_reads_objects_and_ignores_what_is_no_usage() -> None:
    usage = SimpleNamespace(prompt_tokens=12, completion_tokens=3, total_tokens=15)
    assert reported_usage(CompletionResponse(text="x", raw=SimpleNamespace(usage=usage))) == (12, 3)
    gemini = {"usage_metadata": {"prompt_token_count": 7, "candidates_token_count": 2}}
    assert reported_usage(CompletionResponse(text="x", raw=gemini)) == (7, 2)
    assert reported_usage(CompletionResponse(text="x")) is None
    half = {"usage": {"prompt_tokens": 5}}  # no output count: not a report
    assert reported_usage(CompletionResponse(text="x", raw=half)) is None
    bad = {"prompt_tokens": -1, "completion_tokens": True}
    assert reported_usage(CompletionResponse(text="x", additional_kwargs=bad)) is None
    # a BlenderLLM as a member: its raw is a BlendResult, its additional_kwargs the blend
    inner = BlenderLLM(members(), ranker=LengthRanker())
    outer = BlenderLLM({"inner": inner, "d": FixedLLM(answer="date")}, ranker=LengthRanker())
    calls = outer.complete("Name a fruit.").additional_kwargs["calls"]
    assert calls["usage"]["inner"]["estimated"] is True
    assert calls["called"] == ["inner", "d"]


# -- the router ---------------------------------------------------------------------------------


def fake_embed(texts: Sequence[str]) -> np.ndarray:
    """A two-dimensional 'encoder': arithmetic prompts one way, everything else the other."""
    return np.array([[1.0, 0.0] if "sum" in t else [0.0, 1.0] for t in texts])


@pytest.fixture(scope="module")
def router() -> RouterModel:
    """A router fitted on records where 'calc' answers sums best and 'poet' everything else."""
    records, rows = [], []
    for k in range(24):
        sums = k % 2 == 0
        quality = {"calc": 0.9, "poet": 0.1} if sums else {"calc": 0.1, "poet": 0.9}
        records.append(
            MixRecord(
                id=f"r{k}",
                instruction=f"sum {k} and 1" if sums else f"a poem about {k}",
                candidates=tuple(
                    MixCandidate(model=m, text=m, scores={"pref": q}) for m, q in quality.items()
                ),
            )
        )
        rows.append(fake_embed([records[-1].instruction])[0])
    return fit_router(np.array(rows), records, kind="softmax", steps=300, lr=0.1)


def router_members() -> dict[str, FixedLLM]:
    return {
        "calc": FixedLLM(answer="42", name="calc"),
        "poet": FixedLLM(answer="roses are red", name="poet"),
    }


@pytest.mark.parametrize("method", ["complete", "achat", "stream_chat", "astream_complete"])
def test_router_calls_only_the_routed_member(router: RouterModel, method: str) -> None:
    llm = BlenderLLM(
        router_members(),
        ranker=LengthRanker(),
        policy=RouterPolicy(router, top_m=1, embed=fake_embed),
    )
    text, info = asyncio.run(_run(llm, method))
    # "Name a fruit." is no sum: the poet answers alone
    assert text == "roses are red"
    calls = info["calls"]
    assert calls["policy"] == "router"
    assert calls["called"] == ["poet"]
    assert calls["skipped"] == {"calc": "not_routed"}
    assert calls["stop_reason"] == "routed"
    assert (calls["calls_made"], calls["calls_saved"]) == (1, 1)
    assert info["candidates"] == {"poet": "roses are red"}
    assert calls_of(llm) == {"calc": 0, "poet": 1}


def test_router_by_name_and_from_a_file(router: RouterModel, tmp_path: Path) -> None:
    path = router.save(tmp_path / "router.json")
    llm = BlenderLLM(
        router_members(),
        ranker=LengthRanker(),
        policy="router",
        policy_options={"model": str(path), "top_m": 1, "embed": fake_embed},
    )
    response = llm.complete("sum 2 and 2")
    assert response.text == "42"
    assert response.additional_kwargs["calls"]["skipped"] == {"poet": "not_routed"}
    assert calls_of(llm) == {"calc": 1, "poet": 0}


# -- tool calls ---------------------------------------------------------------------------------


def counted(llm: MockFunctionCallingLLM, name: str, asked: list[str]) -> MockFunctionCallingLLM:
    """``llm`` with its response generator noting ``name`` in ``asked`` on every call."""
    respond = llm.response_generator

    def noting(messages: Any, **kw: Any) -> Any:
        asked.append(name)
        return respond(messages, **kw)

    return MockFunctionCallingLLM(response_generator=noting)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_tool_proposals_follow_the_policy(asynchronous: bool) -> None:
    tools = [FunctionTool.from_defaults(add), FunctionTool.from_defaults(mul)]
    asked: list[str] = []
    adder = counted(proposer("add", {"a": 2, "b": 3}), "adder", asked)
    multiplier = counted(proposer("mul", {"a": 20, "b": 30}), "multiplier", asked)
    ranker = TableRanker({'add({"a": 2, "b": 3})': 5.0})
    llm = BlenderLLM(
        {"adder": adder, "multiplier": multiplier},
        ranker=ranker,
        policy="cascade",
        policy_options={"threshold": 0.9},
    )
    if asynchronous:
        response = asyncio.run(llm.achat_with_tools(tools, user_msg="2 plus 3?"))
    else:
        response = llm.chat_with_tools(tools, user_msg="2 plus 3?")
    info = response.additional_kwargs
    assert info["selected_model"] == "adder"
    assert info["blend_mode"] == "tool_calls"
    # the ranker read the proposal's rendering, between the stages and for the selection
    assert ranker.ranked[0] == ['add({"a": 2, "b": 3})']
    assert info["calls"]["called"] == ["adder"]
    assert info["calls"]["skipped"] == {"multiplier": "confident"}
    assert info["candidates"] == {"adder": 'add({"a": 2, "b": 3})'}
    assert [c.tool_name for c in llm.get_tool_calls_from_response(response)] == ["add"]
    assert asked == ["adder"]  # the skipped member was never asked


# -- stages as spans ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["chat", "achat", "stream_chat"])
def test_each_stage_is_a_span_under_the_llm_span(
    span_collector: SpanCollector, events: Any, method: str
) -> None:
    asyncio.run(_run(cascade(), method))
    opened = span_collector.opened
    (parent,) = [s for s in opened if s.startswith(f"BlenderLLM.{method}-")]
    stages = sorted(
        (s for s in opened if s.startswith("cascade.stage-")),
        key=lambda s: opened[s]["tags"]["stage"],
    )
    assert [opened[s]["parent"] for s in stages] == [parent, parent]
    expected = [
        {"stage": 0, "members": ["b"], "policy": "cascade", "hedged": False},
        {"stage": 1, "members": ["c"], "policy": "cascade", "hedged": False},
    ]
    assert [opened[s]["tags"] for s in stages] == expected
    assert [opened[s]["args"] for s in stages] == expected
    # each member's own span is a child of its stage's span
    for stage in stages:
        children = [s for s, span in opened.items() if span["parent"] == stage]
        assert len(children) == 1 and children[0].startswith("FixedLLM."), children
    # the rankings between and after the stages are the LLM's children, beside the stages
    ranks = [s for s in opened if s.startswith("TableRanker.rank-")]
    assert ranks and all(opened[s]["parent"] == parent for s in ranks)
    ends = [e for e in events if isinstance(e, StageEndEvent)]
    assert [(e.stage, e.members, e.answered, e.failed) for e in ends] == [
        (0, ["b"], ["b"], []),
        (1, ["c"], ["c"], []),
    ]
    assert [e.span_id for e in ends] == stages


def test_a_stage_span_names_who_failed(events: Any) -> None:
    models = members()
    models["b"] = FixedLLM(answer="", name="b", error="boom")
    cascade(models=models).chat(USER)
    ends = [e for e in events if isinstance(e, StageEndEvent)]
    assert [(e.members, e.answered, e.failed) for e in ends] == [
        (["b"], [], ["b"]),
        (["c"], ["c"], []),
    ]


# -- bad options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"policy": "fastest"}, ValueError, "unknown policy 'fastest'"),
        ({"policy": "all", "policy_options": {"threshold": 0.5}}, ValueError, "takes no options"),
        ({"policy": "cascade", "policy_options": {"threshold": 2}}, ValueError, "threshold"),
        ({"policy": "cascade", "policy_options": {"stage_sizes": [0]}}, ValueError, "stage_sizes"),
        ({"policy": "cascade", "policy_options": {"speed": 1}}, TypeError, "policy 'cascade'"),
        (
            {"policy": "cascade", "policy_options": {"order": ["a", "ghost"]}},
            ValueError,
            r"not in the ensemble: \['ghost'\]",
        ),
        ({"policy": "router"}, ValueError, "needs model="),
        (
            {"policy": CascadePolicy(), "policy_options": {"threshold": 0.5}},
            ValueError,
            "with a policy object",
        ),
        ({"policy": object()}, TypeError, "a policy must have start"),
        ({"costs": {"ghost": 1.0}}, ValueError, r"costs name members not in the ensemble"),
        ({"costs": {"a": -1.0}}, ValueError, "per_call"),
        ({"costs": {"a": {"price": 1}}}, ValueError, "unknown MemberCost field"),
    ],
)
def test_bad_policy_options_are_refused_at_construction(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        BlenderLLM(members(), ranker=LengthRanker(), **options)


def test_a_router_that_knows_none_of_the_members_is_refused(router: RouterModel) -> None:
    with pytest.raises(ValueError, match="router knows none of the ensemble's members"):
        BlenderLLM(members(), ranker=LengthRanker(), policy=RouterPolicy(router, embed=fake_embed))
