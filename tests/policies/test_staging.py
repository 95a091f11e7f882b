"""Policies in the engine: the Blender and the core Engine call members as the policy decides."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from blender_core import Blender, CallableGenerator
from blender_core.blend import BlendError
from blender_core.engine import Engine
from blender_core.evaluation.policies import compute_pair_cache, replay
from blender_core.members import MemberResults
from blender_core.policies import (
    CascadePolicy,
    MemberCost,
    RouterPolicy,
    StopCalibration,
    build_policy,
    member_costs,
)
from blender_core.priors import MemberPriors
from blender_core.routing import RouterModel
from blender_core.staging import CallReport, StageStep, arun_policy
from tests.policies.test_policies import PRIORS, LengthPairRanker, synthetic

ANSWERS = {
    "strong": "a long and careful answer",
    "mid": "a medium answer",
    "weak": "short",
    "noise": "?",
}


class Members:
    """Fake members answering from ``answers``; they count their calls."""

    def __init__(self, answers: dict[str, str], delays: dict[str, float] | None = None) -> None:
        self.answers = answers
        self.delays = delays or {}
        self.calls: Counter[str] = Counter()

    def generators(self) -> list[CallableGenerator]:
        def make(name: str) -> Any:
            async def answer(prompt: str) -> str:
                self.calls[name] += 1
                await asyncio.sleep(self.delays.get(name, 0.0))
                text = self.answers[name]
                if text == "!raise":
                    raise RuntimeError(f"{name} is down")
                return text

            return answer

        return [CallableGenerator(make(name), name=name) for name in self.answers]


def cascade(threshold: float = 0.9, **options: Any) -> CascadePolicy:
    return CascadePolicy(
        threshold=threshold,
        priors=PRIORS,
        calibration=StopCalibration((4.0, 0.0, 0.0, 0.0)),
        **options,
    )


def test_cascade_blend_calls_in_stages_and_reports_the_calls() -> None:
    members = Members(ANSWERS)
    ranker = LengthPairRanker()
    blender = Blender(
        members.generators(),
        ranker=ranker,
        priors=PRIORS,
        policy=cascade(0.9),
        costs={"strong": MemberCost(per_call=0.5), "mid": 0.1},
    )
    result = blender.blend("question")
    calls = result.calls
    assert calls is not None
    # Order from the priors: strong first. Its score alone is its prior (1.0); the best
    # expected score of a member not called is mid's prior (0.3): margin 0.7, and the
    # calibration's sigmoid(4 * 0.7) = 0.94 >= 0.9.
    assert calls.stages == (("strong",),)
    assert calls.stop_reason == "confident"
    assert calls.skipped == {"mid": "confident", "weak": "confident", "noise": "confident"}
    assert calls.calls_made == 1 and calls.calls_saved == 3
    assert members.calls == Counter({"strong": 1})
    assert calls.cost == {"strong": pytest.approx(0.5)}
    assert calls.usage["strong"].estimated
    assert result.text == ANSWERS["strong"]
    data = result.to_dict()["calls"]
    assert data["called"] == ["strong"] and data["calls_saved"] == 3
    assert data["total_cost"] == pytest.approx(0.5)
    assert json.loads(json.dumps(data)) == data


def test_cascade_goes_on_until_confident_and_reuses_the_last_ranking() -> None:
    members = Members(ANSWERS)
    ranker = LengthPairRanker()
    weak_priors = MemberPriors({"strong": 0.2, "mid": 0.1, "weak": 0.0, "noise": -0.1}, scale=1.0)
    policy = CascadePolicy(
        threshold=0.95,
        priors=weak_priors,
        calibration=StopCalibration((1.0, 0.0, 0.0, 0.0)),
    )
    result = Blender(members.generators(), ranker=ranker, policy=policy).blend("q")
    calls = result.calls
    assert calls is not None
    assert calls.stages[0] == ("strong",)
    assert len(calls.confidences) == calls.calls_made - (calls.stop_reason == "all_called")
    assert set(members.calls) == set(calls.called)
    assert all(count == 1 for count in members.calls.values())
    # One ranking per stage (one member each), none repeated for the final ranking: after a
    # confident stop the final ranking is the last stage's; after the last member, no stage
    # ranking is needed and the final one runs.
    assert ranker.calls == calls.calls_made


def test_all_policy_reports_every_member_in_one_stage() -> None:
    members = Members(ANSWERS)
    result = Blender(members.generators(), ranker=LengthPairRanker()).blend("q")
    assert result.calls is not None
    assert result.calls.policy == "all"
    assert result.calls.stages == (tuple(ANSWERS),)
    assert result.calls.calls_saved == 0 and result.calls.skipped == {}
    assert members.calls == Counter(dict.fromkeys(ANSWERS, 1))


def test_answers_handed_in_without_a_report_have_no_calls() -> None:
    result = Blender(ranker=LengthPairRanker()).blend_candidates("q", ["a", "bb"])
    assert result.calls is None
    assert result.to_dict()["calls"] is None


def test_a_failed_member_is_passed_over_and_the_cascade_still_stops() -> None:
    members = Members({**ANSWERS, "strong": "!raise"})
    policy = cascade(0.9, stage_sizes=(1,))
    result = Blender(
        members.generators(), ranker=LengthPairRanker(), priors=PRIORS, policy=policy
    ).blend("q")
    calls = result.calls
    assert calls is not None
    # strong failed: no confidence after stage 0; mid alone (prior 0.3) beats weak's expected
    # -0.4 by 0.7, sigmoid(2.8) = 0.94: the cascade stops instead of calling everyone.
    assert calls.stages == (("strong",), ("mid",))
    assert calls.stop_reason == "confident"
    assert len(calls.confidences) == 1
    assert members.calls == Counter({"strong": 1, "mid": 1})
    assert [f.model for f in result.failures] == ["strong"]
    assert calls.usage["strong"].output_tokens == 0


def test_every_called_member_failing_is_a_blend_error() -> None:
    members = Members(dict.fromkeys(ANSWERS, "!raise"))
    blender = Blender(members.generators(), ranker=LengthPairRanker(), policy=cascade(0.9))
    with pytest.raises(BlendError) as info:
        blender.blend("q")
    assert {f.model for f in info.value.failures} == set(ANSWERS)


def test_hedged_cascade_starts_the_next_stage_when_a_stage_is_slow() -> None:
    members = Members(ANSWERS, delays={"strong": 0.6})
    policy = CascadePolicy(
        threshold=1.0, priors=PRIORS, hedge_after=0.05, stage_sizes=(1,), max_members=2
    )
    start = time.perf_counter()
    result = Blender(members.generators(), ranker=LengthPairRanker(), policy=policy).blend("q")
    elapsed = time.perf_counter() - start
    calls = result.calls
    assert calls is not None
    assert calls.hedged == 1
    assert calls.stages == (("strong",), ("mid",))
    assert calls.stop_reason == "max_members"
    assert members.calls == Counter({"strong": 1, "mid": 1})
    assert elapsed < 3.0  # not a timing assertion on speed: the blend must not hang


def test_budget_stops_before_an_expensive_stage() -> None:
    members = Members(ANSWERS)
    costs = {name: MemberCost(per_call=1.0) for name in ANSWERS}
    blender = Blender(
        members.generators(),
        ranker=LengthPairRanker(),
        policy="cascade",
        policy_options={"threshold": 1.0, "budget": 2.5},
        priors=PRIORS,
        costs=costs,
    )
    result = blender.blend("q")
    calls = result.calls
    assert calls is not None
    assert calls.stop_reason == "budget"
    assert calls.calls_made == 2 and calls.total_cost == pytest.approx(2.0)
    assert sum(members.calls.values()) == 2


def test_router_policy_calls_only_the_routed_members() -> None:
    model = RouterModel(
        "softmax",
        tuple(ANSWERS),
        {"W": np.zeros((2, 4)), "b": np.log(np.array([0.1, 0.6, 0.2, 0.1]))},
    )
    members = Members(ANSWERS)
    policy = RouterPolicy(model, top_m=1, embed=lambda texts: np.zeros((len(texts), 2)))
    result = Blender(members.generators(), ranker=LengthPairRanker(), policy=policy).blend("q")
    assert result.calls is not None
    assert result.calls.called == ("mid",)
    assert result.calls.skipped == {
        "strong": "not_routed",
        "weak": "not_routed",
        "noise": "not_routed",
    }
    assert result.calls.stop_reason == "routed"
    assert members.calls == Counter({"mid": 1})
    assert result.text == ANSWERS["mid"]


def test_online_cascade_matches_the_offline_replay() -> None:
    """The engine's cascade and the evaluator's replay call the same members and pick the same
    answer from the same ranker, priors and calibration."""
    records = synthetic(12, seed=5)
    ranker = LengthPairRanker()
    cache = compute_pair_cache(records, ranker)
    policy = CascadePolicy(
        threshold=0.8,
        priors=PRIORS,
        calibration=StopCalibration((3.0, 0.5, 0.0, -0.5)),
        stage_sizes=(2, 1),
    )
    for r, record in enumerate(records):
        offline = replay(policy, record, r, cache, priors=PRIORS)
        members = Members({c.model: c.text for c in record.candidates})
        result = Blender(
            members.generators(), ranker=LengthPairRanker(), priors=PRIORS, policy=policy
        ).blend(record.instruction, input=record.input)
        assert result.calls is not None
        assert list(result.calls.called) == [record.models[i] for i in offline.called], r
        assert result.calls.stop_reason == offline.stop
        assert result.text.strip() == record.candidates[offline.pick].text.strip()


def test_stage_tracer_sees_every_stage() -> None:
    steps: list[StageStep] = []

    async def tracer(step: StageStep, run: Any) -> Any:
        steps.append(step)
        return await run()

    members = Members(ANSWERS)
    policy = cascade(1.0, stage_sizes=(2, 1))
    Blender(
        members.generators(), ranker=LengthPairRanker(), policy=policy, stage_tracer=tracer
    ).blend("q")
    assert [s.members for s in steps] == [("strong", "mid"), ("weak",), ("noise",)]
    assert [s.index for s in steps] == [0, 1, 2]
    assert steps[0].to_dict() == {
        "stage": 0,
        "members": ["strong", "mid"],
        "policy": "cascade",
        "hedged": False,
    }


def test_arun_policy_takes_reported_usage() -> None:
    async def call() -> dict[str, Any]:
        return {"text": "hello there", "usage": (12, 3)}

    outcomes, report = asyncio.run(
        arun_policy(
            build_policy("all"),
            {"m": call},
            prompt="hi",
            timeout=5,
            costs=member_costs({"m": {"input_per_1k": 1.0, "output_per_1k": 10.0}}),
            usage_of=lambda output: output["usage"],
            text_of=lambda output: output["text"],
        )
    )
    assert outcomes[0].ok
    assert report.usage["m"].input_tokens == 12 and not report.usage["m"].estimated
    assert report.cost["m"] == pytest.approx(12 / 1000 + 30 / 1000)


def test_engine_all_policy_loads_nothing_to_call_members() -> None:
    engine = Engine(ranker="consensus", policy="all")

    async def call() -> str:
        return "x"

    outcomes, report = asyncio.run(engine.acall_members("q", {"a": call, "b": call}))
    assert not engine.loaded
    assert report == CallReport.everyone(["a", "b"]).__class__(
        policy="all",
        members=("a", "b"),
        stages=(("a", "b"),),
        usage=report.usage,
    )
    result = engine.blend("q", MemberResults.from_outcomes(outcomes), calls=report)
    assert result.calls is report


def test_build_policy_and_costs_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        build_policy("fastest")
    with pytest.raises(TypeError, match="policy 'cascade'"):
        build_policy("cascade", {"treshold": 0.5})
    with pytest.raises(ValueError, match="policy object"):
        build_policy(CascadePolicy(), {"threshold": 0.5})
    with pytest.raises(ValueError, match=r"costs\['m'\]"):
        member_costs({"m": -1})
    with pytest.raises(ValueError, match="not in the ensemble"):
        Blender(Members(ANSWERS).generators(), ranker=LengthPairRanker(), costs={"ghost": 1.0})
    calibration = StopCalibration((2.0, 0.0, 0.0, 0.0), mean_score=0.1)
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"1": calibration.to_dict(), "1+2": calibration.to_dict()}))
    policy = build_policy(
        "cascade", {"calibration": str(path), "stage_sizes": [1, 2]}, priors=PRIORS
    )
    assert isinstance(policy, CascadePolicy)
    assert policy.calibration.weights == calibration.weights
    assert policy.priors is PRIORS
    with pytest.raises(ValueError, match="no stop calibration for stage sizes '2'"):
        build_policy("cascade", {"calibration": str(path), "stage_sizes": [2]})
    with pytest.raises(FileNotFoundError, match="stop calibration file"):
        build_policy("cascade", {"calibration": str(tmp_path / "missing.json")})


def test_a_router_builds_its_prompt_encoder_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []

    def fake_embedder() -> Any:
        built.append(1)
        return lambda texts: np.zeros((len(texts), 2))

    monkeypatch.setattr(RouterModel, "_minilm_embedder", staticmethod(fake_embedder))
    model = RouterModel("softmax", ("a", "b"), {"W": np.zeros((2, 2)), "b": np.zeros(2)})
    policy = RouterPolicy(model)
    for _ in range(3):
        policy.start("q", ["a", "b"])
    assert built == [1]


def test_a_router_pickles_without_its_encoder() -> None:
    import pickle

    model = RouterModel("softmax", ("a", "b"), {"W": np.zeros((2, 2)), "b": np.zeros(2)})
    copy = pickle.loads(pickle.dumps(RouterPolicy(model, top_m=1)))
    assert copy.model.members == model.members
    assert np.array_equal(copy.model.params["W"], model.params["W"])
    assert copy.start("q", ["a", "b"], embedding=np.zeros(2)).chosen == ["a"]
