"""Acceptance: the table's baseline rows match ../shared/data/README.md (to 0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from blender_core.data import read_mixinstruct
from blender_core.evaluation.runner import detect_judge_metric, evaluate
from blender_core.evaluation.specs import build_methods

# set -> (judge metric, best model, best single, oracle, longest, random), dev split, in %.
README_DEV = {
    "alpaca-v1": ("gpt4_pref", "ultralm-13b", 80.4, 98.3, 70.0, 62.8),
    "alpaca-v2": ("gpt4t_pref", "FuseChat-Gemma-2-9B-Instruct", 72.1, 84.7, 58.6, 17.3),
}


@pytest.mark.parametrize("name", sorted(README_DEV))
def test_dev_baselines_match_readme(data_dir: Path, name: str) -> None:
    metric, best, single, oracle, longest, random = README_DEV[name]
    dev = read_mixinstruct(data_dir / name / "dev.jsonl")
    train = read_mixinstruct(data_dir / name / "train.jsonl")
    assert detect_judge_metric(dev) == metric
    methods = build_methods(
        "oracle,random,longest,single", dev, judge_metric=metric, train_records=train
    )
    table = evaluate(dev, methods, beats_reference=train).table()
    best_row = f"best single: {best} (on train)"
    assert best_row in table.row_names
    expected = {
        best_row: single,
        f"oracle ({metric})": oracle,
        "longest": longest,
        "random (expected)": random,
    }
    for row, value in expected.items():
        assert table.formatted(row, "judge") == f"{value:.1f}", row
        assert abs(100 * (table.value(row, "judge") or 0) - value) <= 0.05 + 1e-9, row
    # every model has its own row, and the best one matches the best-single row
    for model in dev[0].models:
        assert model in table.row_names
    assert table.value(best, "judge") == table.value(best_row, "judge")
