"""Member priors: the logistic fit, the file, PriorRanker, the Blender, eval rows, the CLI."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from typer.testing import CliRunner

from blender_core.blend import Blender
from blender_core.data import MixCandidate, MixRecord
from blender_core.evaluation.runner import evaluate
from blender_core.evaluation.specs import build_methods
from blender_core.generators.callable import CallableGenerator
from blender_core.priors import (
    PRIORS_FORMAT,
    MemberPriors,
    PriorRanker,
    PriorSelector,
    WithStrategy,
    fit_priors,
)
from blender_core.rankers.baselines import FixedModelSelector, LongestRanker, RankerSelector
from blender_core.ranking import BaseRanker, Ranking


def record(rid: str, items: Sequence[tuple[str, str, float]]) -> MixRecord:
    return MixRecord(
        id=rid,
        instruction=f"q {rid}",
        output="ref",
        candidates=tuple(MixCandidate(model=m, text=t, scores={"pref": s}) for m, t, s in items),
    )


def synthetic(n: int, *, seed: int, strength: dict[str, float], scale: float) -> list[MixRecord]:
    """Records whose judge outcome follows the pair model with a hidden quality per candidate.

    Each candidate's text length is its hidden "ranker score" q; the judge score is 1 when
    ``scale * q + strength[member] + logistic noise > 0``... computed per pair through a latent
    utility, so that the pair model is exactly right.
    """
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        items = []
        for member, prior in strength.items():
            q = int(rng.integers(1, 40))
            utility = scale * q + prior + rng.gumbel()
            items.append((member, "x" * q, float(utility)))
        out.append(record(f"r{k}", items))
    return out


class LengthScore(BaseRanker):
    """Score = text length (the hidden quality of :func:`synthetic`); counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        self.calls += 1
        return [Ranking.from_scores([float(len(c)) for c in cs]) for cs in candidate_lists]


STRENGTH = {"strong": 1.5, "mid": 0.0, "weak": -1.5}


def test_priors_alone_order_the_members_and_are_centred() -> None:
    records = synthetic(300, seed=0, strength=STRENGTH, scale=0.0)
    priors = fit_priors(records, data_name="synthetic")
    assert priors.scale is None and priors.metric == "pref"
    assert priors.priors["strong"] > priors.priors["mid"] > priors.priors["weak"]
    assert sum(priors.priors.values()) == pytest.approx(0.0, abs=1e-6)  # L2 centres them
    # Gumbel utilities: P(a beats b) is logistic in the strength gap, so it is recovered.
    gap = priors.priors["strong"] - priors.priors["weak"]
    assert gap == pytest.approx(3.0, rel=0.2)
    assert priors.prior("someone new") == 0.0 == priors.prior(None) == priors.prior([])
    assert priors.prior(["weak", "strong"]) == priors.priors["strong"]
    fitted = priors.fitted_on
    assert fitted["data"]["name"] == "synthetic" and fitted["data"]["records"] == 300
    assert fitted["pairs"] == 900 and fitted["ranker"] is None
    assert fitted["member_pairs"] == {"mid": 600, "strong": 600, "weak": 600}


def test_ranker_scale_and_priors_are_recovered_together() -> None:
    records = synthetic(600, seed=1, strength=STRENGTH, scale=0.1)
    ranker = LengthScore()
    priors = fit_priors(records, ranker, ranker_name="length", l2=0.1)
    assert priors.scale == pytest.approx(0.1, rel=0.15)
    assert priors.priors["strong"] - priors.priors["weak"] == pytest.approx(3.0, rel=0.15)
    assert priors.fitted_on["ranker"] == "length"
    fit = priors.fitted_on["fit"]
    assert 0 < fit["log_loss"] < math.log(2) and 0.5 < fit["pairwise_accuracy"] <= 1
    # The same rankings, precomputed: the same fit without ranking again.
    rankings = ranker.rank_batch([r.instruction for r in records], [r.texts for r in records])
    again = fit_priors(records, rankings=rankings, ranker_name="length", l2=0.1)
    assert again.priors == pytest.approx(priors.priors)
    assert again.scale == pytest.approx(priors.scale)


def test_uninformative_members_get_small_priors() -> None:
    # The judge follows the ranker only; member names are noise.
    records = synthetic(400, seed=2, strength={"a": 0.0, "b": 0.0, "c": 0.0}, scale=0.2)
    priors = fit_priors(records, LengthScore())
    assert all(abs(v) < 0.25 for v in priors.priors.values())
    assert priors.scale == pytest.approx(0.2, rel=0.2)


def test_min_gap_skips_near_ties_and_bad_settings() -> None:
    records = [record("r", [("a", "x", 0.5), ("b", "y", 0.55), ("c", "z", 0.0)])]
    assert fit_priors(records, min_gap=0.1).fitted_on["pairs"] == 2
    with pytest.raises(ValueError, match="nothing to fit"):
        fit_priors(records, min_gap=0.6)
    with pytest.raises(ValueError, match="no records"):
        fit_priors([])
    with pytest.raises(ValueError, match="l2"):
        fit_priors(records, l2=0)
    with pytest.raises(ValueError, match="rankings for"):
        fit_priors(records, rankings=[])
    with pytest.raises(ValueError, match="ranking of 2"):
        fit_priors(records, rankings=[Ranking.from_scores([1.0, 2.0])])


def test_save_load_round_trip_and_bad_files(tmp_path: Path) -> None:
    priors = fit_priors(synthetic(50, seed=3, strength=STRENGTH, scale=0.1), LengthScore())
    path = priors.save(tmp_path / "priors.json")
    data = json.loads(path.read_text())
    assert data["format"] == PRIORS_FORMAT and next(iter(data["priors"])) == "strong"
    loaded = MemberPriors.load(path)
    assert loaded == priors
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a member-priors file"):
        MemberPriors.load(tmp_path / "bad.json")
    (tmp_path / "text.json").write_text("nope")
    with pytest.raises(ValueError, match="not JSON"):
        MemberPriors.load(tmp_path / "text.json")
    with pytest.raises(FileNotFoundError):
        MemberPriors.load(tmp_path / "missing.json")
    broken = {**data, "priors": {"a": "high"}}
    with pytest.raises(ValueError, match="map member names to numbers"):
        MemberPriors.from_dict(broken)
    with pytest.raises(ValueError, match="finite"):
        MemberPriors({"a": float("nan")})


def test_prior_ranker_adds_priors_to_the_rankers_scores() -> None:
    priors = MemberPriors({"short": 20.0, "long": 0.0}, scale=1.0)
    ranker = PriorRanker(LongestRanker(), priors)
    texts = ["tiny", "much longer answer"]
    assert ranker.rank("q", texts).best == 1  # no members: the ranker's order
    ranking = ranker.rank("q", texts, members=["short", "long"])
    assert ranking.best == 0
    assert ranking.scores == (24.0, 18.0)
    assert ranking.strategy == "longest+priors"
    # Unknown members are neutral; a merged answer gets its best member's prior.
    assert ranker.rank("q", texts, members=["who", "long"]).best == 1
    assert ranker.rank("q", texts, members=[["long", "short"], "long"]).best == 0
    alone = PriorRanker(None, priors)
    assert alone.rank("q", texts, members=["short", "long"]).scores == (20.0, 0.0)
    with pytest.raises(ValueError, match="one list per input"):
        ranker.rank_batch(["q"], [texts], members=[])
    with pytest.raises(ValueError, match="each of its 2"):
        ranker.rank("q", texts, members=["short"])
    with pytest.raises(ValueError, match="fitted without a ranker"):
        PriorRanker(LongestRanker(), MemberPriors({"a": 1.0}))


async def test_prior_ranker_async_and_strategy_forwarding() -> None:
    seen: list[object] = []

    class Strategic(BaseRanker):
        def rank_batch(  # type: ignore[override]
            self, instructions: Sequence[str], lists: Sequence[Sequence[str]], strategy: str = "x"
        ) -> list[Ranking]:
            seen.append(strategy)
            return [Ranking.from_scores([0.0] * len(c), strategy=strategy) for c in lists]

    priors = MemberPriors({"a": 1.0}, scale=2.0, fitted_on={"strategy": "bubble"})
    ranker = PriorRanker(Strategic(), priors)
    ranking = await ranker.arank("q", ["1", "2"], members=["b", "a"])
    assert ranking.best == 1 and seen == ["bubble"]
    ranker.rank("q", ["1", "2"], strategy="max_wins")
    assert seen[-1] == "max_wins"
    WithStrategy(Strategic(), "max_logits").rank("q", ["1"])
    assert seen[-1] == "max_logits"


def test_blender_passes_each_answers_members_to_the_prior_ranker(tmp_path: Path) -> None:
    members = {
        "terse": CallableGenerator(lambda prompt: "ok"),
        "verbose": CallableGenerator(lambda prompt: "a long and rambling answer"),
        "echo": CallableGenerator(lambda prompt: "ok"),
    }
    plain = Blender(members, ranker=LongestRanker(), fuser="select")
    assert plain.blend("q").text == "a long and rambling answer"
    path = MemberPriors({"terse": 0.0, "echo": 50.0, "verbose": 0.0}, scale=1.0).save(
        tmp_path / "p.json"
    )
    blender = Blender(members, ranker=LongestRanker(), fuser="select", priors=path)
    assert isinstance(blender.ranker, PriorRanker)
    result = blender.blend("q")
    # "ok" was given by terse and echo (merged): echo's prior carries it.
    assert result.text == "ok" and result.best_models == ("terse", "echo")
    assert result.ranking.strategy == "longest+priors"


def test_eval_rows_priors_only_and_ranker_plus_priors(tmp_path: Path) -> None:
    train = synthetic(200, seed=4, strength=STRENGTH, scale=0.1)
    dev = synthetic(60, seed=5, strength=STRENGTH, scale=0.1)
    ranker = LengthScore()
    priors = fit_priors(train, ranker, ranker_name="length")
    base = RankerSelector(ranker, name="length")
    rows = [
        FixedModelSelector("strong", name="best single: strong (on train)"),
        base,
        PriorSelector(fit_priors(train)),
        PriorSelector(priors, base),
    ]
    ranker.calls = 0
    results = evaluate(dev, rows, seed=0)
    assert ranker.calls == 4  # the base row ranked once (batches of 16); the priors row reused
    assert results.method("priors only").model_share == pytest.approx(
        {"strong": 1.0, "mid": 0.0, "weak": 0.0}
    )
    both = results.method("ranker + priors").values["judge"]
    assert both is not None
    # The hidden utility is scale*q + strength: the combined row is the best non-oracle pick.
    assert both >= results.method("length").values["judge"]  # type: ignore[operator]
    assert both >= results.method("priors only").values["judge"]  # type: ignore[operator]
    assert "ranker + priors" in results.comparisons
    # Specs: priors (fitted on train), priors:FILE, ranker+priors:FILE (its ranker spec).
    path = fit_priors(train, LongestRanker(), ranker_name="random").save(tmp_path / "p.json")
    methods = build_methods(
        f"best-single,priors,priors:{path},ranker+priors:{path}",
        dev,
        judge_metric="pref",
        train_records=train,
    )
    assert [m.name for m in methods][1:] == [
        "priors only (fitted on train)",
        "priors only",
        "ranker + priors",
    ]
    with pytest.raises(ValueError, match="--train"):
        build_methods("priors", dev, judge_metric="pref")
    with pytest.raises(ValueError, match="without a ranker spec"):
        build_methods(
            f"ranker+priors:{fit_priors(train).save(tmp_path / 'q.json')}", dev, judge_metric="pref"
        )


def test_calibrate_cli(tmp_path: Path) -> None:
    from blender_core.cli import _register_commands, app

    _register_commands()
    data = tmp_path / "train.jsonl"
    rows = synthetic(40, seed=6, strength=STRENGTH, scale=0.1)
    data.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows), encoding="utf-8")

    def calibrate(ranker: str, out: Path, *options: str) -> Result:
        """``blender calibrate`` of ``data`` with ``--ranker`` into ``out``."""
        args = ["calibrate", str(data), "--ranker", ranker, "--out", str(out), *options]
        return CliRunner().invoke(app, args)

    out = tmp_path / "priors.json"
    result = calibrate("none", out)
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert saved["scale"] is None and saved["fitted_on"]["data"]["name"] == "train.jsonl"
    assert saved["fitted_on"]["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert "strong" in result.output
    out2 = tmp_path / "with-ranker.json"
    result = calibrate("random", out2, "--limit", "10", "--min-gap", "0.5")
    assert result.exit_code == 0, result.output
    saved = json.loads(out2.read_text())
    assert saved["fitted_on"]["ranker"] == "random" and saved["fitted_on"]["data"]["records"] == 10
    assert isinstance(saved["scale"], float)
    out3 = tmp_path / "scale-only.json"
    result = calibrate("random", out3, "--priors-from", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out3.read_text())["priors"] == json.loads(out.read_text())["priors"]
    bad = calibrate("none", tmp_path / "no" / "p.json")
    assert bad.exit_code == 2 and "does not exist" in bad.output


def test_fixed_priors_fit_only_the_scale() -> None:
    # Priors from many records without a ranker, the scale from a few held-out ones.
    alone = fit_priors(synthetic(600, seed=7, strength=STRENGTH, scale=0.1))
    held_out = synthetic(60, seed=8, strength=STRENGTH, scale=0.1)
    priors = fit_priors(held_out, LengthScore(), fixed_priors=alone, ranker_name="length")
    assert priors.priors == alone.priors
    assert priors.scale == pytest.approx(0.1, rel=0.35)
    assert priors.fitted_on["priors_fixed_from"] == alone.fitted_on["data"]
    # Members only the fixed priors know stay in the file.
    extra = MemberPriors({**alone.priors, "other": 0.7})
    assert fit_priors(held_out, LengthScore(), fixed_priors=extra).priors["other"] == 0.7
    with pytest.raises(ValueError, match="give a ranker"):
        fit_priors(held_out, fixed_priors=alone)
