"""evaluate(): the paper's columns on hand-checkable records, the table, the plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from eval_helpers import LengthRatio

from blender_core.data import MixRecord
from blender_core.evaluation.plots import plot_all
from blender_core.evaluation.runner import BlendMethod, detect_judge_metric, evaluate
from blender_core.evaluation.specs import build_methods, build_metrics, split_specs
from blender_core.rankers.baselines import (
    FixedModelSelector,
    LongestRanker,
    OracleSelector,
    RankerSelector,
    UniformSelector,
)


class Echo:
    """A generating method that answers with a fixed text."""

    def __init__(self, text: str, name: str = "echo") -> None:
        self.text = text
        self.name = name

    def generate(self, records: Sequence[MixRecord], *, show_progress: bool = False) -> list[str]:
        return [self.text] * len(records)


def methods() -> list:  # type: ignore[type-arg]
    return [
        OracleSelector("pref"),
        UniformSelector(),
        RankerSelector(LongestRanker(), name="longest"),
        FixedModelSelector("a"),
    ]


def test_columns_by_hand(records: list[MixRecord]) -> None:
    results = evaluate(records, methods())
    assert results.judge_metric == "pref"
    assert results.beats_models == ["a", "b"]  # equal means: first two
    oracle, random, longest, a = (
        results.method(n).values for n in ["oracle (pref)", "random (expected)", "longest", "a"]
    )
    assert oracle["judge"] == pytest.approx(2.5 / 3)
    assert random["judge"] == pytest.approx(0.5)
    assert longest["judge"] == pytest.approx(2.5 / 3)
    assert a["judge"] == pytest.approx(0.5)
    # Beats a: longest wins r0, picks a itself in r1 (0.5), ties in r2 (0.5).
    assert longest["beats:a"] == pytest.approx(2 / 3)
    assert a["beats:a"] == pytest.approx(0.5)
    assert longest["top1"] == pytest.approx(1.0)
    assert random["top1"] == pytest.approx(5 / 9)
    assert random["top3"] == pytest.approx(1.0)
    assert results.method("random (expected)").kind == "expected"
    assert results.method("longest").model_share == pytest.approx({"a": 1 / 3, "b": 2 / 3, "c": 0})
    assert results.method("longest").rank_distribution == pytest.approx([1.0, 0.0, 0.0])
    assert results.method("a").rank_distribution == pytest.approx([2 / 3, 0.0, 1 / 3])


def test_metrics_generated_rows_and_oracle_by_metric(records: list[MixRecord]) -> None:
    metric = LengthRatio()
    results = evaluate(
        records,
        [*methods(), OracleSelector("ratio"), Echo("reference!", name="fused")],
        metrics=[metric],
        beats_models=["c"],
    )
    fused = results.method("fused")
    assert fused.kind == "generated"
    assert fused.values["judge"] is None and fused.values["beats:c"] is None
    assert fused.values["top1"] is None and fused.rank_distribution is None
    assert fused.values["ratio"] == pytest.approx(10 / 3)
    # ratio = len(candidate) / len("ref"): the oracle by ratio picks yyyy, aaaaa, bbb.
    by_ratio = results.method("oracle (ratio)").values
    assert by_ratio["judge"] == pytest.approx(2.5 / 3)
    assert by_ratio["ratio"] == pytest.approx((4 / 3 + 5 / 3 + 1) / 3)
    assert results.records[0].candidates[1].scores["ratio"] == pytest.approx(4 / 3)
    table = results.table()
    assert [c.key for c in table.columns] == ["judge", "ratio", "beats:c", "top1", "top3"]
    markdown = table.to_markdown()
    assert "| fused | N/A | **3.333** | N/A | N/A | N/A |" in markdown
    assert "| longest | **83.3** |" in markdown
    csv_text = table.to_csv()
    assert csv_text.splitlines()[0].startswith("method,pref (%),ratio,Beats c (%)")
    assert "fused,,3.333,,," in csv_text


def test_no_judge_metric_and_errors(records: list[MixRecord]) -> None:
    results = evaluate(records, [RankerSelector(LongestRanker(), name="l")], judge_metric=None)
    assert results.table().columns == ()
    with pytest.raises(ValueError, match="unique"):
        evaluate(records, [UniformSelector(), UniformSelector()])
    with pytest.raises(ValueError, match="no records"):
        evaluate([], methods())
    with pytest.raises(KeyError, match="no score 'bleu'"):
        evaluate(records, methods(), judge_metric="bleu")
    with pytest.raises(ValueError, match="not a candidate model"):
        evaluate(records, methods(), beats_models=["zz"])
    no_ref = [MixRecord(id="n", instruction="i", candidates=records[0].candidates)]
    with pytest.raises(ValueError, match="no reference output"):
        evaluate(no_ref, methods(), metrics=[LengthRatio()])


def test_blend_method_ranks_then_fuses(records: list[MixRecord]) -> None:
    class JoinFuser:
        def fuse(
            self, instruction: str, candidates: Sequence[str], *, input: str = "", **extra: str
        ) -> str:
            return "+".join(candidates) + extra.get("suffix", "")

    method = BlendMethod(LongestRanker(), JoinFuser(), top_k=2)
    assert method.generate(records) == ["yyyy+zz", "aaaaa+cc", "bbb+ccc"]
    method = BlendMethod(LongestRanker(), JoinFuser(), top_k=9, fuse_kwargs={"suffix": "!"})
    assert method.generate(records[:1]) == ["yyyy+zz+x!"]
    with pytest.raises(ValueError, match="top_k"):
        BlendMethod(LongestRanker(), JoinFuser(), top_k=0)


def test_specs(records: list[MixRecord]) -> None:
    assert split_specs(["a, b:c", "d"]) == ["a", "b:c", "d"]
    built = build_methods(
        "oracle,random,random-draw:2,longest,single",
        records,
        judge_metric="pref",
        train_records=records[:1],
    )
    names = [m.name for m in built]
    assert names == [
        "oracle (pref)",
        "random (expected)",
        "random (seed 2)",
        "longest",
        "best single: b (on train)",
        "a",
        "b",
        "c",
    ]
    assert [m.name for m in build_methods("model:b,best-single", records, judge_metric="pref")] == [
        "b",
        "best single: a (on eval data)",
    ]
    with pytest.raises(ValueError, match="unknown method spec"):
        build_methods("best", records, judge_metric="pref")
    with pytest.raises(ValueError, match="listed twice"):
        build_methods("longest,longest", records, judge_metric="pref")
    with pytest.raises(ValueError, match="unknown metric spec"):
        build_metrics("rouge")
    with pytest.raises(ValueError, match="bleurt: needs"):
        build_metrics("bleurt")
    assert build_metrics("judge") == []
    assert detect_judge_metric(records) == "pref"


def test_plots_are_written(records: list[MixRecord], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = evaluate(records, [*methods(), Echo("x", name="fused")], metrics=[LengthRatio()])
    paths = plot_all(results, tmp_path / "plots")
    assert sorted(p.name for p in paths) == [
        "metrics.png",
        "model_share.png",
        "rank_distribution.png",
    ]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.slow
def test_pairrm_and_blender_rows(
    records: list[MixRecord], tiny_pairrm_dir: Path, tiny_genfuser_dir: Path
) -> None:
    built = build_methods(
        f"pairrm:{tiny_pairrm_dir},blender:{tiny_pairrm_dir}",
        records,
        judge_metric="pref",
        fuser=str(tiny_genfuser_dir),
        top_k=2,
        device="cpu",
    )
    assert built[0].name == f"pairrm ({tiny_pairrm_dir.name})"
    assert built[1].name.startswith("blender (")
    built[1].fuse_kwargs = {"max_new_tokens": 4}  # type: ignore[union-attr]
    results = evaluate(records, built, metrics=[LengthRatio()])
    pairrm, blend = results.methods
    assert pairrm.kind == "selection" and pairrm.values["judge"] is not None
    assert blend.kind == "generated" and blend.values["judge"] is None
    assert blend.texts is not None and all(isinstance(t, str) for t in blend.texts)
    assert blend.values["ratio"] is not None
