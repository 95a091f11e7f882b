"""Paired bootstrap intervals and the eval table's "beats the best single model" columns."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blender_core.data import MixRecord
from blender_core.evaluation import stats
from blender_core.evaluation.runner import evaluate
from blender_core.evaluation.stats import paired_bootstrap
from blender_core.rankers.baselines import FixedModelSelector, OracleSelector, UniformSelector


def test_seeded_and_deterministic() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(50).tolist(), rng.random(50).tolist()
    first = paired_bootstrap(a, b, seed=3, resamples=2000)
    assert first == paired_bootstrap(a, b, seed=3, resamples=2000)
    assert first != paired_bootstrap(a, b, seed=4, resamples=2000)
    assert first.mean == pytest.approx(float(np.mean(a) - np.mean(b)))
    assert first.low <= first.mean <= first.high


def test_identical_and_constant_differences() -> None:
    same = paired_bootstrap([0.2, 0.7, 1.0], [0.2, 0.7, 1.0])
    assert (same.mean, same.low, same.high, same.verdict, same.p_value) == (0, 0, 0, "n.s.", 1)
    up = paired_bootstrap([1.0, 0.5, 0.25], [0.5, 0.0, -0.25])
    assert (up.low, up.high, up.verdict, up.significant) == (0.5, 0.5, "better", True)
    assert up.p_value == 0.0
    down = paired_bootstrap([0.0, 0.0], [1.0, 1.0])
    assert down.verdict == "worse"
    assert up.format() == "+50.0 [+50.0, +50.0]"
    assert up.to_dict()["verdict"] == "better"


def test_pairing_matters() -> None:
    # b = a - 0.01 record by record: a tiny, perfectly consistent gain is significant paired,
    # though the two means' own spreads overlap almost completely.
    a = np.linspace(0.0, 1.0, 40)
    diff = paired_bootstrap(a.tolist(), (a - 0.01).tolist())
    assert diff.verdict == "better"
    assert diff.mean == pytest.approx(0.01)


def test_standard_error_matches_theory() -> None:
    rng = np.random.default_rng(0)
    d = rng.normal(0.05, 0.3, size=400)
    diff = paired_bootstrap(d.tolist(), [0.0] * 400, resamples=4000, seed=1)
    theory = float(d.std(ddof=0)) / math.sqrt(400)
    assert diff.std_error == pytest.approx(theory, rel=0.08)
    # 95% percentile interval ~ mean +- 1.96 SE.
    assert diff.high - diff.low == pytest.approx(2 * 1.96 * theory, rel=0.1)


def test_chunking_gives_the_same_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = [0.1, 0.9, 0.4, 0.3, 1.0], [0.2, 0.1, 0.5, 0.3, 0.0]
    whole = paired_bootstrap(a, b, resamples=999, seed=7)
    monkeypatch.setattr(stats, "_CHUNK_VALUES", 12)  # 2 resamples per chunk
    assert paired_bootstrap(a, b, resamples=999, seed=7) == whole


@pytest.mark.parametrize(
    ("a", "b", "kw", "message"),
    [
        ([1.0], [1.0, 2.0], {}, "one value per record"),
        ([], [], {}, "no records"),
        ([float("nan")], [0.0], {}, "finite"),
        ([1.0], [0.0], {"confidence": 1.0}, "confidence"),
        ([1.0], [0.0], {"resamples": 0}, "resamples"),
        ([[1.0]], [[0.0]], {}, "flat"),
    ],
)
def test_bad_input(a: list, b: list, kw: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(a, b, **kw)


def _many(records: list[MixRecord], times: int) -> list[MixRecord]:
    from dataclasses import replace

    return [replace(r, id=f"{r.id}-{k}") for k in range(times) for r in records]


def test_eval_table_says_whether_a_method_beats_the_best_single(
    records: list[MixRecord],
) -> None:
    rows = _many(records, 20)  # 60 records
    best = FixedModelSelector("a", name="best single: a (on train)")
    results = evaluate(
        rows, [OracleSelector("pref"), UniformSelector(), best, FixedModelSelector("c")], seed=5
    )
    assert results.baseline == "best single: a (on train)"
    assert set(results.comparisons) == {"oracle (pref)", "random (expected)", "c"}
    oracle = results.comparisons["oracle (pref)"]
    assert oracle.mean == pytest.approx(2.5 / 3 - 0.5)
    assert oracle.verdict == "better"
    assert results.comparisons["c"].mean == pytest.approx(0.0)
    assert results.comparisons["c"].verdict == "n.s."
    assert results.method("c").judge_values == [0.5, 1.0, 0.0] * 20
    table = results.table()
    markdown = table.to_markdown()
    assert "Δ vs best single: a (on train) (pts, 95% CI)" in markdown
    assert "| +33.3 [" in markdown and "| yes |" in markdown and "no (n.s.)" in markdown
    assert "(baseline)" in markdown
    csv_text = table.to_csv()
    assert "verdict" in csv_text.splitlines()[0] and ",better" in csv_text
    assert table.comparison("c") == results.comparisons["c"]
    assert table.to_dict()["comparisons"]["oracle (pref)"]["verdict"] == "better"
    # Same seed, same intervals; a named baseline; none.
    again = evaluate(rows, [OracleSelector("pref"), best, FixedModelSelector("c")], seed=5)
    assert again.comparisons["oracle (pref)"] == oracle
    named = evaluate(rows, [OracleSelector("pref"), FixedModelSelector("c")], baseline="c")
    assert set(named.comparisons) == {"oracle (pref)"}
    plain = evaluate(rows, [OracleSelector("pref"), FixedModelSelector("c")])
    assert plain.baseline is None and plain.comparisons == {}
    assert "Δ vs" not in plain.table().to_markdown()
    with pytest.raises(ValueError, match="baseline 'nope'"):
        evaluate(rows, [OracleSelector("pref")], baseline="nope")
