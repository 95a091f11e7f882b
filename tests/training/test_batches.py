"""Token-budget batches: every pair once, within the budget, the same count every epoch."""

from __future__ import annotations

import random

import pytest

from blender_core.training.batches import TokenBudgetBatchSampler, pack_batches


def _lengths(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(20, 320) for _ in range(n)]


def test_pack_batches_covers_everything_within_the_budget() -> None:
    lengths = [*_lengths(500, 0), 900]  # one item longer than the budget travels alone
    batches = pack_batches(lengths, max_tokens=8 * 320, bucket=128, rng=random.Random(0))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for batch in batches:
        cost = len(batch) * max(lengths[i] for i in batch)
        assert cost <= 8 * 320 or len(batch) == 1
    assert [500] in batches
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    plain = sum(8 * max(lengths[i : i + 8]) for i in range(0, 500, 8))  # batches of 8 as drawn
    assert padded / sum(lengths) < 1.15 < plain / sum(lengths[:500])
    assert batches == pack_batches(lengths, max_tokens=8 * 320, bucket=128, rng=random.Random(0))
    with pytest.raises(ValueError, match="max_tokens"):
        pack_batches(lengths, max_tokens=0, bucket=4, rng=random.Random(0))


def test_sampler_keeps_the_first_epochs_batch_count() -> None:
    current = {"lengths": _lengths(300, 1)}
    seen: list[int] = []

    def redraw(epoch: int) -> None:
        seen.append(epoch)
        current["lengths"] = _lengths(300, 100 + epoch)

    sampler = TokenBudgetBatchSampler(
        lambda: current["lengths"], max_tokens=2000, bucket=64, seed=3, on_epoch=redraw
    )
    first = list(sampler)
    count = len(sampler)
    assert len(first) == count and seen == [0]
    for epoch in range(1, 6):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == count == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(300))
    assert seen == [0, 1, 2, 3, 4, 5]
    assert 1.0 <= sampler.padding_ratio() < 1.3


def test_sampler_splits_when_an_epoch_packs_shorter() -> None:
    current = {"lengths": [300] * 40}
    sampler = TokenBudgetBatchSampler(lambda: current["lengths"], max_tokens=1200, seed=0)
    assert len(list(sampler)) == 10
    current["lengths"] = [10] * 40  # would fit in one batch
    sampler.set_epoch(1)
    batches = list(sampler)
    assert len(batches) == 10 and sorted(i for b in batches for i in b) == list(range(40))
