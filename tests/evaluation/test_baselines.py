"""Baseline pickers: longest, oracle, single models, random expectation, any ranker."""

from __future__ import annotations

import pytest

from blender_core.data import MixRecord
from blender_core.rankers.baselines import (
    FixedModelSelector,
    LongestRanker,
    OracleSelector,
    RankerSelector,
    UniformSelector,
    best_single_model,
    model_means,
    record_prompt,
)
from blender_core.rankers.random import RandomRanker


def test_longest_ranker_ties_keep_input_order() -> None:
    ranking = LongestRanker().rank("q", ["ab", "abcd", "wxyz", "a"])
    assert ranking.best == 1
    assert ranking.order == (1, 2, 0, 3)
    assert ranking.ranks == (3, 1, 1, 4)
    with pytest.raises(TypeError):
        LongestRanker().rank("q", "not a list")  # type: ignore[arg-type]


def test_selectors(records: list[MixRecord]) -> None:
    assert OracleSelector("pref").select(records) == [{1: 1.0}, {0: 1.0}, {0: 1.0}]
    assert FixedModelSelector("c").select(records) == [{2: 1.0}] * 3
    uniform = UniformSelector().select(records)
    assert uniform[0] == pytest.approx({0: 1 / 3, 1: 1 / 3, 2: 1 / 3})
    longest = RankerSelector(LongestRanker(), name="longest", batch_size=2)
    assert longest.select(records) == [{1: 1.0}, {0: 1.0}, {1: 1.0}]
    assert len(longest.rankings) == 3


def test_selector_errors(records: list[MixRecord]) -> None:
    with pytest.raises(KeyError, match="no candidate from model 'zz'"):
        FixedModelSelector("zz").select(records)
    with pytest.raises(KeyError, match="no score 'bleu'"):
        OracleSelector("bleu").select(records)
    with pytest.raises(TypeError, match="rank_batch"):
        RankerSelector(object())  # type: ignore[arg-type]


def test_random_draw_is_seeded(records: list[MixRecord]) -> None:
    first = RankerSelector(RandomRanker(3)).select(records)
    assert RankerSelector(RandomRanker(3)).select(records) == first


def test_model_means_and_best_single(records: list[MixRecord]) -> None:
    assert model_means(records, "pref") == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.5})
    assert best_single_model(records, "pref") == "a"  # first on ties
    assert best_single_model(records[:1], "pref") == "b"
    with pytest.raises(ValueError, match="no records"):
        best_single_model([], "pref")


def test_record_prompt_adds_input() -> None:
    record = MixRecord(id="a", instruction="Translate", input="hola", candidates=())
    assert record_prompt(record) == "Translate\n\nhola"
