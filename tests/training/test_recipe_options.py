"""Recipe options: the margin-weighted loss and informative pair sampling."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
import torch

from blender_core.training.losses import instructgpt_loss, margin_loss, pair_loss
from blender_core.training.pairs import build_pairs, sample_pairs


def test_margin_loss_weights_entries_by_the_gap() -> None:
    left = torch.tensor([[1.0], [0.0], [2.0]])
    right = torch.tensor([[0.0], [1.0], [2.0]])
    a = torch.tensor([[0.9], [0.6], [0.5]])
    b = torch.tensor([[0.1], [0.5], [0.5]])  # gaps 0.8, 0.1, tie
    l1 = -math.log(1 / (1 + math.exp(-1.0)))  # right order, diff 1
    l2 = -math.log(1 / (1 + math.exp(1.0)))  # wrong order, diff -1
    expected = (0.8 * l1 + 0.1 * l2) / 0.9
    assert float(margin_loss(left, right, a, b)) == pytest.approx(expected, rel=1e-5)
    assert float(pair_loss("MARGIN", left, right, a, b)) == pytest.approx(expected, rel=1e-5)
    # Equal gaps: the same as instructgpt.
    same = torch.tensor([[0.7], [0.7]]), torch.tensor([[0.2], [0.2]])
    lr = torch.tensor([[0.3], [-0.4]]), torch.tensor([[0.0], [0.1]])
    assert float(margin_loss(*lr, *same)) == pytest.approx(float(instructgpt_loss(*lr, *same)))


def test_margin_loss_all_tied_is_a_zero_with_gradient() -> None:
    left = torch.tensor([[1.0]], requires_grad=True)
    loss = margin_loss(left, torch.tensor([[0.0]]), torch.tensor([[0.5]]), torch.tensor([[0.5]]))
    loss.backward()
    assert float(loss.detach()) == 0.0 and left.grad is not None


def test_informative_sampling_prefers_large_gaps_and_the_top() -> None:
    scores = [0.95, 0.945, 0.5, 0.45, 0.1, 0.05, 0.5001]
    counts: Counter[frozenset[int]] = Counter()
    for seed in range(400):
        pairs = sample_pairs(
            scores, mode="informative", num_pairs=3, rng=random.Random(seed), min_gap=0.01
        )
        assert len(pairs) == 3 and len({frozenset(p) for p in pairs}) == 3
        for a, b in pairs:
            assert abs(scores[a] - scores[b]) > 0.01  # near ties are never drawn
            counts[frozenset((a, b))] += 1
    assert counts[frozenset((2, 6))] == 0 and counts[frozenset((0, 1))] == 0  # ties (<= 0.01)
    top_big = counts[frozenset((0, 5))]  # gap 0.9, with the best
    mid_big = counts[frozenset((2, 5))]  # gap 0.45, no top candidate
    small = counts[frozenset((2, 3))]  # gap 0.05
    assert top_big > mid_big > small
    # Deterministic for a seed; "informative" builds pairs through build_pairs too.
    first = sample_pairs(scores, mode="informative", num_pairs=2, rng=random.Random(1))
    assert first == sample_pairs(scores, mode="informative", num_pairs=2, rng=random.Random(1))


def test_informative_takes_all_when_few_pairs() -> None:
    from blender_core.data import MixCandidate, MixRecord

    pairs = sample_pairs([1.0, 0.0], mode="informative", num_pairs=5, rng=random.Random(0))
    assert sorted(map(sorted, pairs)) == [[0, 1]]
    records = [
        MixRecord(
            id=f"r{k}",
            instruction="q",
            candidates=tuple(
                MixCandidate(model=f"m{i}", text=f"t{k}-{i}", scores={"q": s})
                for i, s in enumerate([0.9, 0.9, 0.1, 0.1, 0.5])
            ),
        )
        for k in range(8)
    ]
    built = build_pairs(records, ["q"], mode="informative", num_pairs=2, seed=0)
    assert len(built) == 16
    assert built and all(p.scores_a != p.scores_b for p in built)
