"""Pair sampling: modes, duplicates, ties, seeded swapping."""

from __future__ import annotations

import random
from itertools import combinations

import pytest

from blender_core.data import MixCandidate, MixRecord
from blender_core.training.pairs import (
    CandidatePair,
    build_pairs,
    sample_pairs,
    unique_candidate_indices,
)


def _record(texts: list[str], scores: list[float], rid: str = "r") -> MixRecord:
    cands = tuple(
        MixCandidate(model=f"m{i}", text=t, scores={"q": s})
        for i, (t, s) in enumerate(zip(texts, scores, strict=True))
    )
    return MixRecord(id=rid, instruction="do it", candidates=cands)


def test_unique_candidate_indices_keeps_first_occurrence() -> None:
    assert unique_candidate_indices(["a", "b", "a", "c", "b"]) == [0, 1, 3]


def test_all_mode_without_swap_lists_every_untied_pair_better_first() -> None:
    scores = [0.1, 0.9, 0.5, 0.3]
    pairs = sample_pairs(scores, mode="all", rng=random.Random(0), swap=False)
    assert len(pairs) == 6
    assert {frozenset(p) for p in pairs} == {frozenset(c) for c in combinations(range(4), 2)}
    assert all(scores[a] > scores[b] for a, b in pairs)


def test_ties_are_skipped_unless_included() -> None:
    scores = [0.5, 0.5, 0.1]
    pairs = sample_pairs(scores, mode="all", rng=random.Random(0), swap=False)
    assert sorted(pairs) == [(0, 2), (1, 2)]
    with_ties = sample_pairs(
        scores, mode="all", rng=random.Random(0), swap=False, include_ties=True
    )
    assert len(with_ties) == 3


def test_min_gap_treats_small_gaps_as_ties() -> None:
    scores = [1e-7, 2e-7, 0.6]
    pairs = sample_pairs(scores, mode="all", rng=random.Random(0), swap=False, min_gap=0.05)
    assert sorted(pairs) == [(2, 0), (2, 1)]


def test_random_mode_samples_num_pairs_distinct_pairs() -> None:
    scores = [float(i) for i in range(8)]
    pairs = sample_pairs(scores, mode="random", num_pairs=5, rng=random.Random(1))
    assert len(pairs) == 5
    assert len({frozenset(p) for p in pairs}) == 5
    # fewer eligible pairs than asked: all of them
    assert len(sample_pairs([0.0, 1.0, 2.0], mode="random", num_pairs=5, rng=random.Random(1))) == 3


def test_top_bottom_pairs_ith_best_with_ith_worst() -> None:
    scores = [0.2, 0.9, 0.4, 0.0, 0.7, 0.6]
    pairs = sample_pairs(scores, mode="top-bottom", num_pairs=5, rng=random.Random(0), swap=False)
    # ranked: 1 (0.9), 4 (0.7), 5 (0.6), 2 (0.4), 0 (0.2), 3 (0.0)
    assert pairs == [(1, 3), (4, 0), (5, 2)]
    two = sample_pairs(scores, mode="top-bottom", num_pairs=2, rng=random.Random(0), swap=False)
    assert two == [(1, 3), (4, 0)]


def test_swap_is_seeded_and_about_half() -> None:
    scores = [float(i) for i in range(30)]
    first = sample_pairs(scores, mode="all", rng=random.Random(7))
    again = sample_pairs(scores, mode="all", rng=random.Random(7))
    other = sample_pairs(scores, mode="all", rng=random.Random(8))
    assert first == again
    assert first != other
    swapped = sum(1 for a, b in first if scores[a] < scores[b])
    assert 0.4 * len(first) < swapped < 0.6 * len(first)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown pair mode"):
        sample_pairs([0.0, 1.0], mode="best", rng=random.Random(0))
    with pytest.raises(ValueError, match="num_pairs"):
        sample_pairs([0.0, 1.0], mode="random", num_pairs=0, rng=random.Random(0))
    with pytest.raises(ValueError, match="out of range"):
        sample_pairs([0.0, 1.0], mode="all", rng=random.Random(0), candidates=[0, 5])


def test_build_pairs_drops_duplicates_and_carries_scores() -> None:
    records = [
        _record(["x", "y", "x", "z"], [0.9, 0.5, 0.1, 0.0], "a"),
        _record(["p", "q"], [0.3, 0.3], "b"),  # all tied: no pairs
    ]
    pairs = build_pairs(records, ["q"], mode="all", seed=3)
    assert {frozenset((p.a, p.b)) for p in pairs} == {
        frozenset((0, 1)),
        frozenset((0, 3)),
        frozenset((1, 3)),
    }
    assert all(p.record_index == 0 for p in pairs)
    for p in pairs:
        assert isinstance(p, CandidatePair)
        assert p.scores_a == (records[0].scores("q")[p.a],)
        assert p.scores_b == (records[0].scores("q")[p.b],)
    assert build_pairs(records, ["q"], mode="all", seed=3) == pairs


def test_build_pairs_names_missing_metric() -> None:
    with pytest.raises(KeyError, match="has no score 'other'"):
        build_pairs([_record(["a", "b"], [0.1, 0.2])], ["other"])
