"""metrics.png: every value label lies inside its panel (the 100.0 of a perfect row too)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from eval_helpers import LengthRatio

from blender_core.data import MixRecord, parse_record
from blender_core.evaluation.plots import metrics_figure
from blender_core.evaluation.runner import evaluate
from blender_core.rankers.baselines import (
    FixedModelSelector,
    LongestRanker,
    OracleSelector,
    RankerSelector,
    UniformSelector,
)


def _labels_inside(figure: object) -> list[tuple[str, bool]]:
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    checked = []
    for axes in figure.axes:  # type: ignore[attr-defined]
        panel = axes.get_window_extent(renderer)
        for text in axes.texts:
            box = text.get_window_extent(renderer)
            inside = box.x0 >= panel.x0 - 0.5 and box.x1 <= panel.x1 + 0.5
            checked.append((text.get_text().strip(), inside))
    return checked


def test_metric_labels_stay_inside_their_panels(records: list[MixRecord]) -> None:
    pytest.importorskip("matplotlib")
    methods = [
        OracleSelector("pref"),  # judge 83.3: its label used to cross the border
        UniformSelector(),
        RankerSelector(LongestRanker(), name="longest"),
        FixedModelSelector("a"),
    ]
    results = evaluate(records, methods, metrics=[LengthRatio()])
    figure = metrics_figure(results)
    checked = _labels_inside(figure)
    assert len(checked) == 2 * 4  # two panels (judge, ratio), four rows each
    assert [label for label, inside in checked if not inside] == []
    if os.environ.get("BLENDER_KIT_KEEP_PLOTS"):  # to look at it by hand
        figure.savefig(Path(os.environ["BLENDER_KIT_KEEP_PLOTS"]) / "metrics.png")


def test_a_perfect_row_gets_its_label_inside_the_bar() -> None:
    pytest.importorskip("matplotlib")
    record = parse_record(
        {
            "id": "r",
            "instruction": "q",
            "output": "ref",
            "candidates": [
                {"model": "a", "text": "short", "scores": {"pref": 1.0}},
                {"model": "b", "text": "much longer", "scores": {"pref": 0.5}},
            ],
        }
    )
    # 100 and 50: the axis ends at 107.5, too close to 100 for the label after the bar
    results = evaluate([record], [FixedModelSelector("a"), FixedModelSelector("b")])
    figure = metrics_figure(results)
    assert all(inside for _, inside in _labels_inside(figure))
    hundred = [t for t in figure.axes[0].texts if t.get_text().strip() == "100.0"]
    assert len(hundred) == 1 and hundred[0].get_ha() == "right"  # moved into its bar
