"""Policies (all, cascade, router), the router's fit and file, the policy evaluator and the CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from blender_core.aggregation import max_logits_scores
from blender_core.data import MixCandidate, MixRecord, write_mixinstruct
from blender_core.evaluation.policies import (
    PairCache,
    cache_key,
    compute_pair_cache,
    curve_summary,
    evaluate_policies,
    fit_stop_calibration,
    plot_cost_quality,
    replay,
)
from blender_core.policies import (
    AllPolicy,
    CascadePolicy,
    MemberCost,
    Observation,
    RouterPolicy,
    Stop,
    StopCalibration,
    make_policy,
)
from blender_core.priors import MemberPriors
from blender_core.ranking import BaseRanker, Ranking
from blender_core.routing import ROUTER_FORMAT, RouterModel, fit_router

MEMBERS = ["strong", "mid", "weak", "noise"]


class LengthPairRanker(BaseRanker):
    """A cheap pair ranker: ``M[i][j] = (len_i - len_j) / 10``; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.texts_ranked = 0

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        self.calls += 1
        out = []
        for candidates in candidate_lists:
            self.texts_ranked += len(candidates)
            n = len(candidates)
            m = [
                [
                    0.0 if i == j else (len(candidates[i]) - len(candidates[j])) / 10.0
                    for j in range(n)
                ]
                for i in range(n)
            ]
            out.append(Ranking.from_scores(max_logits_scores(m), matrix=m, strategy="max_logits"))
        return out


def synthetic(n: int, seed: int = 0) -> list[MixRecord]:
    """Records where 'strong' is usually best; answer length tracks quality (the ranker sees it)."""
    rng = np.random.default_rng(seed)
    quality = {"strong": 0.8, "mid": 0.55, "weak": 0.35, "noise": 0.1}
    records = []
    for k in range(n):
        items = []
        for member in MEMBERS:
            q = float(np.clip(quality[member] + rng.normal(0, 0.25), 0, 1))
            items.append(
                MixCandidate(
                    model=member,
                    text="x" * int(5 + 40 * q + rng.integers(0, 4)),
                    scores={"pref": round(q, 3)},
                )
            )
        records.append(MixRecord(id=f"r{k}", instruction=f"question {k}", candidates=tuple(items)))
    return records


@pytest.fixture(scope="module")
def records() -> list[MixRecord]:
    return synthetic(40, seed=1)


@pytest.fixture(scope="module")
def train_records() -> list[MixRecord]:
    return synthetic(80, seed=2)


def embeddings_for(records: Sequence[MixRecord]) -> np.ndarray:
    """Prompt 'embeddings' that tell which member is best (so a router can learn it)."""
    out = np.zeros((len(records), 8))
    for r, record in enumerate(records):
        best = int(np.argmax(record.scores("pref")))
        out[r, best] = 1.0
        out[r, 4 + r % 4] = 0.5
    return out


PRIORS = MemberPriors({"strong": 1.0, "mid": 0.3, "weak": -0.4, "noise": -0.9}, scale=1.0)


# -- MemberCost ---------------------------------------------------------------------------------


def test_member_cost_prices_and_validation() -> None:
    cost = MemberCost(input_per_1k=1.0, output_per_1k=2.0, per_call=0.5)
    assert cost.cost(1000, 500) == pytest.approx(0.5 + 1.0 + 1.0)
    assert cost.expected_cost(0) == pytest.approx(0.5 + 2.0 * 500 / 1000)
    assert MemberCost.from_value(0.25).per_call == 0.25
    assert MemberCost.from_value({"latency_s": 2}).latency_s == 2
    with pytest.raises(ValueError, match="input_per_1k"):
        MemberCost(input_per_1k=-1)
    with pytest.raises(ValueError, match="unknown MemberCost field"):
        MemberCost.from_value({"price": 1})
    with pytest.raises(TypeError, match="per_call"):
        MemberCost(per_call="1")  # type: ignore[arg-type]


# -- all ----------------------------------------------------------------------------------------


def test_all_policy_calls_everyone_once() -> None:
    run = AllPolicy().start("hi", MEMBERS)
    assert run.first_stage() == MEMBERS
    decision = run.next_stage(Observation(MEMBERS, [0, 1, 2, 3]))
    assert decision == Stop("all_called")
    assert make_policy(None) == AllPolicy() and make_policy("all") == AllPolicy()


@pytest.mark.parametrize(
    ("members", "message"),
    [([], "at least one member"), (["a", "a"], "repeated"), (["a", ""], "non-empty")],
)
def test_policies_name_bad_members(members: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AllPolicy().start("hi", members)


# -- cascade ------------------------------------------------------------------------------------


def test_cascade_order_from_priors_then_cost() -> None:
    costs = {"mid": 5.0, "strong": 1.0}
    policy = CascadePolicy(
        priors=MemberPriors({"strong": 1.0, "mid": 1.0, "weak": -1.0}), costs=costs
    )
    assert policy.plan_order("q", ["weak", "mid", "strong", "noise"]) == [
        "strong",
        "mid",
        "noise",
        "weak",
    ]  # equal priors: cheaper first; unknown is neutral (0)
    given = CascadePolicy(order=["weak", "strong"])
    assert given.plan_order("q", MEMBERS) == ["weak", "strong", "mid", "noise"]
    with pytest.raises(ValueError, match="not in the ensemble"):
        CascadePolicy(order=["ghost"]).plan_order("q", MEMBERS)


def test_cascade_stops_when_confident_and_reports_skips() -> None:
    # Confidence = sigmoid(margin vs the best expected remaining member).
    policy = CascadePolicy(threshold=0.7, priors=PRIORS)
    run = policy.start("q", MEMBERS)
    assert run.first_stage() == ["strong"]
    # best 1.0 (its score) vs expected mid prior 0.3: margin 0.7 -> sigmoid 0.668 < 0.7
    assert run.next_stage(Observation(["strong"], [1.0])) == ["mid"]
    decision = run.next_stage(Observation(["strong", "mid"], [2.0, 0.1]))
    assert isinstance(decision, Stop) and decision.reason == "confident"
    assert decision.confidence == pytest.approx(1 / (1 + np.exp(-(2.0 - (-0.4)))))
    assert run.called == ["strong", "mid"]
    assert run.skipped == {"weak": "confident", "noise": "confident"}


def test_cascade_stage_sizes_max_members_and_budget() -> None:
    never = CascadePolicy(
        threshold=1.0,
        calibration=StopCalibration((0, 0, 0, -60)),
        priors=PRIORS,
        stage_sizes=(2, 1),
        max_members=3,
    )
    run = never.start("q", MEMBERS)
    assert run.first_stage() == ["strong", "mid"]
    assert run.next_stage(Observation(["strong", "mid"], [0, 0])) == ["weak"]
    assert run.next_stage(Observation(["strong", "mid", "weak"], [0, 0, 0])) == Stop("max_members")
    assert run.skipped == {"noise": "max_members"}

    budget = CascadePolicy(
        threshold=1.0,
        calibration=StopCalibration((0, 0, 0, -60)),
        priors=PRIORS,
        costs={m: 1.0 for m in MEMBERS},
        budget=2.5,
    )
    run = budget.start("q", MEMBERS)
    run.first_stage()
    assert run.next_stage(Observation(["strong"], [0])) == ["mid"]
    assert run.next_stage(Observation(["strong", "mid"], [0, 0])) == Stop("budget")

    hedged = CascadePolicy(priors=PRIORS, hedge_after=2.0)
    run = hedged.start("q", MEMBERS)
    run.first_stage()
    assert run.hedge_stage() == ["mid"]  # started early: counts as called
    assert run.called == ["strong", "mid"]


def test_cascade_latency_budget_uses_declared_latency() -> None:
    policy = CascadePolicy(
        threshold=1.0,
        calibration=StopCalibration((0, 0, 0, -60)),
        priors=PRIORS,
        costs={"mid": {"latency_s": 3.0}},
        latency_budget=4.0,
    )
    run = policy.start("q", MEMBERS)
    run.first_stage()
    assert run.next_stage(Observation(["strong"], [0], elapsed_s=0.5)) == ["mid"]
    run2 = policy.start("q", MEMBERS)
    run2.first_stage()
    assert run2.next_stage(Observation(["strong"], [0], elapsed_s=2.0)) == Stop("latency_budget")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 1.5}, "threshold must be in"),
        ({"stage_sizes": (0,)}, "stage_sizes"),
        ({"stage_sizes": ()}, "stage_sizes"),
        ({"max_members": 0}, "max_members"),
        ({"budget": -1.0}, "budget"),
        ({"order": "strong"}, "not a string"),
    ],
)
def test_cascade_validation_names_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        CascadePolicy(**kwargs)


def test_cascade_needs_first_stage_and_consistent_observation() -> None:
    run = CascadePolicy().start("q", MEMBERS)
    with pytest.raises(RuntimeError, match="first_stage"):
        run.next_stage(Observation(["strong"], [0]))
    with pytest.raises(ValueError, match="one score per member"):
        Observation(["a", "b"], [1.0])


def test_stop_calibration_roundtrip_and_checks() -> None:
    cal = StopCalibration((1.0, 0.5, -0.2, 0.1), mean_score=0.3, fitted_on={"rows": 5})
    assert StopCalibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    with pytest.raises(ValueError, match="needs 4 weights"):
        StopCalibration((1.0,))


# -- router -------------------------------------------------------------------------------------


def test_fit_router_learns_and_roundtrips(
    tmp_path: Path, train_records: list[MixRecord], records: list[MixRecord]
) -> None:
    x = embeddings_for(train_records)
    for kind in ("softmax", "mf"):
        model = fit_router(x, train_records, kind=kind, steps=300, lr=0.05)  # type: ignore[arg-type]
        probs = model.probabilities(embeddings_for(records), members=MEMBERS)
        picks = probs.argmax(axis=1)
        truth = np.array([np.argmax(r.scores("pref")) for r in records])
        assert (picks == truth).mean() > 0.9, kind
        assert np.allclose(probs.sum(axis=1), 1.0)
    auto = fit_router(x, train_records, steps=200, lr=0.05)
    assert set(auto.fitted_on["heldout_top1_judge"]) == {"softmax", "mf"}
    path = auto.save(tmp_path / "router.json")
    loaded = RouterModel.load(path)
    assert json.loads(path.read_text())["format"] == ROUTER_FORMAT
    assert np.allclose(loaded.scores(x[:3]), auto.scores(x[:3]))
    with pytest.raises(ValueError, match="not a router file"):
        RouterModel.from_dict({"format": "other"})
    with pytest.raises(ValueError, match="shape"):
        loaded.scores(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="knows none of the members"):
        loaded.probabilities(x[:1], members=["ghost"])


def test_router_policy_top_m_and_mass() -> None:
    model = RouterModel(
        "softmax", ("a", "b", "c"), {"W": np.zeros((2, 3)), "b": np.log(np.array([0.6, 0.3, 0.1]))}
    )
    emb = np.zeros(2)
    run = RouterPolicy(model, top_m=2).start("q", ["c", "b", "a"], embedding=emb)
    assert run.first_stage() == ["a", "b"]
    assert run.skipped == {"c": "not_routed"}
    assert run.next_stage(Observation(["a", "b"], [0, 1])) == Stop("routed")
    assert RouterPolicy(model, mass=0.85).start("q", ["a", "b", "c"], embedding=emb).chosen == [
        "a",
        "b",
    ]
    # Renormalised over the ensemble: without 'a', b has 0.75.
    assert RouterPolicy(model, mass=0.7).start("q", ["b", "c"], embedding=emb).chosen == ["b"]
    # An unknown member gets the lowest known score.
    probs = RouterPolicy(model).probabilities("q", ["a", "new"], embedding=emb)
    assert probs["new"] == pytest.approx(0.1 / 0.7)
    with pytest.raises(ValueError, match="mass"):
        RouterPolicy(model, mass=0.0)
    with pytest.raises(ValueError, match="top_m"):
        RouterPolicy(model, top_m=0)
    assert isinstance(make_policy("router", model=model, top_m=1), RouterPolicy)
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("fastest")


# -- evaluation ---------------------------------------------------------------------------------


def test_subset_scores_match_ranking_the_subset(records: list[MixRecord]) -> None:
    ranker = LengthPairRanker()
    cache = compute_pair_cache(records, ranker, batch_size=16)
    assert cache.mode == "pairwise"
    record = records[3]
    subset = [0, 2, 3]
    direct = ranker.rank("q", [record.texts[i] for i in subset])
    assert np.allclose(cache.subset_scores(3, subset), direct.scores)
    sim = np.array([[1.0, 0.2, 0.8], [0.2, 1.0, 0.4], [0.8, 0.4, 1.0]])
    consensus = PairCache(["x"], [sim], "consensus")
    assert np.allclose(consensus.subset_scores(0, [0, 2]), [0.8, 0.8])
    assert np.allclose(consensus.subset_scores(0, [0, 1, 2]), [0.5, 0.3, 0.6])
    assert consensus.subset_scores(0, [1]).tolist() == [0.0]


def test_pair_cache_roundtrip_and_check(tmp_path: Path, records: list[MixRecord]) -> None:
    cache = compute_pair_cache(records, LengthPairRanker(), ranker_name="len")
    cache.embeddings = embeddings_for(records)
    loaded = PairCache.load(cache.save(tmp_path / "c.npz"))
    assert loaded.ids == cache.ids and loaded.mode == "pairwise" and loaded.ranker == "len"
    assert all(np.allclose(a, b) for a, b in zip(loaded.matrices, cache.matrices, strict=True))
    assert loaded.embeddings is not None and loaded.embeddings.shape == (len(records), 8)
    with pytest.raises(ValueError, match="other records"):
        loaded.check(records[:-1])


def test_ranker_runs_once_across_all_policies_and_thresholds(
    tmp_path: Path, records: list[MixRecord], train_records: list[MixRecord]
) -> None:
    ranker = LengthPairRanker()
    cache = compute_pair_cache(records, ranker, batch_size=8)
    calls_after_cache = ranker.calls
    assert calls_after_cache == 5  # 40 records / 8 per batch
    assert ranker.texts_ranked == 4 * len(records)
    train_cache = compute_pair_cache(train_records, LengthPairRanker())
    cache.embeddings = embeddings_for(records)
    train_cache.embeddings = embeddings_for(train_records)
    calibration = fit_stop_calibration(train_records, train_cache, priors=PRIORS, metric="pref")
    router = fit_router(train_cache.embeddings, train_records, steps=200, lr=0.05)
    thresholds = (0.2, 0.5, 0.7, 0.9, 0.99)
    report = evaluate_policies(
        records,
        cache,
        metric="pref",
        best_single="strong",
        priors=PRIORS,
        calibration=calibration,
        router=router,
        thresholds=thresholds,
        bootstrap=200,
    )
    assert ranker.calls == calls_after_cache  # no forward pass across policies and thresholds
    families = {p.family for p in report.points}
    assert families == {
        "best single",
        "all",
        "cascade",
        "router top-m",
        "router mass",
        "cascade (router order)",
    }
    single, everyone = report.point("best single"), report.point("all")
    assert single.mean_calls == 1 and everyone.mean_calls == 4
    assert everyone.vs_all is not None and everyone.vs_all.mean == 0.0
    cascade = [p for p in report.points if p.family == "cascade"]
    assert len(cascade) == len(thresholds)
    calls = [p.mean_calls for p in cascade]
    assert calls == sorted(calls)  # a higher threshold never calls fewer members
    assert calls[0] >= 1.0 and calls[-1] <= 4.0
    top1 = report.point("router top-m")
    assert top1.mean_calls == 1 and top1.score > single.score  # the router learned who wins
    assert {s.family for s in report.summaries} == {
        "cascade",
        "router top-m",
        "router mass",
        "cascade (router order)",
    }
    markdown = report.to_markdown()
    assert "| cascade | t=0.5 |" in markdown and "CPT(50%)" in markdown
    png = plot_cost_quality(report, tmp_path / "curve.png", title="synthetic")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(report.to_dict())


def test_calibration_learns_margin_matters(train_records: list[MixRecord]) -> None:
    cache = compute_pair_cache(train_records, LengthPairRanker())
    cal = fit_stop_calibration(train_records, cache, priors=PRIORS, metric="pref")
    assert cal.weights[0] > 0  # a bigger margin over the remaining members: safer to stop
    assert cal.fitted_on["rows"] == 3 * len(train_records)  # stages 1-3 of 4 members


def test_replay_sees_only_called_candidates_and_costs(records: list[MixRecord]) -> None:
    cache = compute_pair_cache(records, LengthPairRanker())
    policy = CascadePolicy(threshold=0.0, priors=PRIORS)
    costs = {m: MemberCost(per_call=2.0) for m in MEMBERS}
    outcome = replay(policy, records[0], 0, cache, priors=PRIORS, costs=costs)
    assert outcome.called == (0,) and outcome.pick == 0 and outcome.cost == 2.0
    assert outcome.stop == "confident"
    with pytest.raises(ValueError, match="price table has no member"):
        replay(policy, records[0], 0, cache, costs={"mid": MemberCost()})


def test_curve_summary_cpt_and_apgr() -> None:
    from blender_core.evaluation.policies import PolicyPoint

    def point(calls: float, score: float) -> PolicyPoint:
        return PolicyPoint("c", "", calls, np.array([score]), np.array([calls]), np.array([calls]))

    pts = [point(1.0, 0.5), point(2.0, 0.6), point(3.0, 0.7)]
    s = curve_summary("c", pts, single=0.5, everyone=0.7, members=3)
    assert s.cpt50 == 2.0 and s.cpt80 == 3.0 and s.crosses_best_single == 1.0
    assert s.apgr == pytest.approx(0.5, abs=0.01)
    assert curve_summary("c", pts[:1], single=0.5, everyone=0.7, members=3).cpt50 is None


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_eval_policies_and_train_router(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    records: list[MixRecord],
    train_records: list[MixRecord],
) -> None:
    from blender_core import routing
    from blender_core.cli import _register_commands, app

    _register_commands()
    dev, train = tmp_path / "dev.jsonl", tmp_path / "train.jsonl"
    write_mixinstruct(dev, records)
    write_mixinstruct(train, train_records)
    out = tmp_path / "out"
    (out / "cache").mkdir(parents=True)
    for path, recs in ((dev, records), (train, train_records)):
        cache = compute_pair_cache(recs, LengthPairRanker(), ranker_name="consensus")
        cache.embeddings = embeddings_for(recs)
        cache.save(out / "cache" / cache_key(path, "consensus"))
    runner = CliRunner()
    eval_policies = ["eval-policies", str(dev), "--train", str(train), "--out", str(out)]
    result = runner.invoke(app, [*eval_policies, "--bootstrap", "100", "--thresholds", "0.5,0.9"])
    assert result.exit_code == 0, result.output
    assert "| cascade [1] | t=0.9 |" in result.output
    assert "| cascade (router order) [1+2] | t=0.5 |" in result.output
    for name in (
        "table.md",
        "results.json",
        "cost-quality.png",
        "priors.json",
        "router.json",
        "calibration.json",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "results.json").read_text())["records"] == len(records)

    by_text = {f"question {k}": row for k, row in enumerate(embeddings_for(train_records))}
    monkeypatch.setattr(
        routing,
        "embed_prompts",
        lambda prompts, encoder=None: np.stack([by_text[p.instruction] for p in prompts]),
    )
    result = runner.invoke(
        app,
        [
            "train-router",
            str(train),
            "--out",
            str(tmp_path / "r.json"),
            "--kind",
            "softmax",
            "--steps",
            "100",
        ],
    )
    assert result.exit_code == 0, result.output
    assert RouterModel.load(tmp_path / "r.json").kind == "softmax"
    bad = runner.invoke(
        app, ["train-router", str(train), "--out", str(tmp_path / "x.json"), "--kind", "tree"]
    )
    assert bad.exit_code != 0 and "tree" in bad.output
    chosen = runner.invoke(
        app, [*eval_policies, "--bootstrap", "100", "--best-single", "weak", "--no-plots"]
    )
    assert chosen.exit_code == 0, chosen.output
    assert "| best single | weak |" in chosen.output
    bad = runner.invoke(app, [*eval_policies, "--best-single", "ghost"])
    assert bad.exit_code != 0 and "'ghost' answers none of the records" in bad.output
    bad = runner.invoke(app, [*eval_policies, "--stage-sizes", "1;0"])
    assert bad.exit_code != 0 and "stage sizes must be integers >= 1" in bad.output
    for flag in ("--priors", "--router", "--costs"):  # input files must exist
        bad = runner.invoke(app, [*eval_policies, flag, str(tmp_path / "missing.json")])
        assert bad.exit_code == 2 and "does not exist" in bad.output, (flag, bad.output)


class _NoMatrix(BaseRanker):
    def __init__(self, strategy: str | None, with_matrix: bool) -> None:
        self.strategy, self.with_matrix = strategy, with_matrix

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        out = []
        for candidates in candidate_lists:
            n = len(candidates)
            matrix = np.eye(n).tolist() if self.with_matrix else None
            out.append(Ranking.from_scores([0.0] * n, matrix=matrix, strategy=self.strategy))
        return out


def test_compute_pair_cache_mode_and_missing_matrix(records: list[MixRecord]) -> None:
    assert compute_pair_cache(records[:2], _NoMatrix("consensus", True)).mode == "consensus"
    with pytest.raises(ValueError, match="no pair matrix"):
        compute_pair_cache(records[:2], _NoMatrix("bubble", False))
    with pytest.raises(ValueError, match="batch_size"):
        compute_pair_cache(records[:2], _NoMatrix("consensus", True), batch_size=0)


def test_make_policy_cascade_options() -> None:
    policy = make_policy("cascade", threshold=0.5, stage_sizes=(2,))
    assert isinstance(policy, CascadePolicy) and policy.stage_sizes == (2,)
    with pytest.raises(ValueError, match="takes no options"):
        make_policy("all", threshold=0.5)
