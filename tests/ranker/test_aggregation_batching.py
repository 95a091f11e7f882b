"""Pure aggregation formulas, bubble semantics and token-budget batching."""

from __future__ import annotations

import random

import pytest

from blender_core.aggregation import (
    BubblePass,
    bubble,
    bubble_permutation,
    max_logits_scores,
    max_wins_scores,
)
from blender_core.batching import padding_efficiency, plan_batches

M = [[0.0, 1.0, -0.5], [-2.0, 0.0, 0.25], [0.5, 3.0, 0.0]]


def test_max_logits() -> None:
    assert max_logits_scores(M) == pytest.approx(
        [(1 + 2 - 0.5 - 0.5) / 3, (-2 - 1 + 0.25 - 3) / 3, (0.5 + 0.5 + 3 - 0.25) / 3]
    )


def test_max_wins() -> None:
    # i=0: M[0][1]>0 (1) ; M[1][0]<0 (1), M[2][0]<0 no -> 2
    assert max_wins_scores(M) == [2.0, 1.0, 3.0]
    with pytest.raises(ValueError):
        max_wins_scores([[0.0, 1.0]])


def test_bubble_pass_scores_and_champion() -> None:
    strength = [0.3, 0.9, 0.1, 0.5]
    state = bubble([2, 0, 3, 1], lambda a, b: strength[a] - strength[b])
    assert state.champion == 1
    assert state.history[0][:2] == (2, 0) and len(state.history) == 3
    # eliminated: 2 at step 1, 0 at step 2, 3 at step 3; champion scores N.
    assert state.scores() == [2.0, 4.0, 1.0, 3.0]
    with pytest.raises(RuntimeError):
        state.record(1.0)
    assert BubblePass([0]).done and BubblePass([0]).scores() == [1.0]
    with pytest.raises(ValueError):
        BubblePass([0, 0])


def test_ties_keep_the_newcomer() -> None:
    # d <= 0 means `cur` does not stay (the spec: cur stays only if d > 0).
    assert bubble([0, 1], lambda a, b: 0.0).champion == 1


def test_bubble_permutation_seeding() -> None:
    key = ["source", "a", "b", "c", "d"]
    assert bubble_permutation(4, 7, key=key) == bubble_permutation(4, 7, key=key)
    assert sorted(bubble_permutation(4, 7, key=key)) == [0, 1, 2, 3]
    assert len({tuple(bubble_permutation(6, s)) for s in range(20)}) > 5


def test_plan_batches_respects_budget() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(5, 400) for _ in range(300)] + [5000]
    batches = plan_batches(lengths, 2048)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) * width <= 2048 or len(batch) == 1
    assert [5000] in [[lengths[i] for i in b] for b in batches]  # the over-long one alone
    assert padding_efficiency(lengths, batches) > 0.9
    unsorted = [list(range(k, min(k + 8, len(lengths)))) for k in range(0, len(lengths), 8)]
    assert padding_efficiency(lengths, unsorted) < padding_efficiency(lengths, batches)
    assert plan_batches([3, 3, 3], 100, max_batch_size=2) == [[0, 1], [2]]
    with pytest.raises(ValueError):
        plan_batches([1], 0)
    assert plan_batches([], 10) == [] and padding_efficiency([], []) == 1.0
