"""Losses against hand computations; evaluation metrics and baselines."""

from __future__ import annotations

import math

import pytest

from blender_core.data import MixCandidate, MixRecord
from blender_core.training.metrics import pairwise_accuracy, selection_baselines, top1_mean

torch = pytest.importorskip("torch")

from blender_core.training.losses import (  # noqa: E402
    bce_loss,
    instructgpt_loss,
    normalize_loss_name,
    pair_loss,
)


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_instructgpt_loss_by_hand() -> None:
    left = torch.tensor([[2.0], [0.5], [1.0]])
    right = torch.tensor([[1.0], [1.5], [3.0]])
    qa = torch.tensor([[0.9], [0.2], [0.4]])
    qb = torch.tensor([[0.1], [0.2], [0.8]])
    # pair 0: A better, diff 1 -> -log s(1); pair 1 tied: no signal; pair 2: B better, diff -2
    expected = (-math.log(_sig(1.0)) - math.log(_sig(2.0))) / 2
    assert instructgpt_loss(left, right, qa, qb).item() == pytest.approx(expected, rel=1e-6)
    assert pair_loss("InstructGPT", left, right, qa, qb).item() == pytest.approx(expected, rel=1e-6)


def test_instructgpt_all_tied_is_zero_with_gradient() -> None:
    left = torch.tensor([[2.0]], requires_grad=True)
    right = torch.tensor([[1.0]])
    q = torch.tensor([[0.5]])
    loss = instructgpt_loss(left, right, q, q)
    assert loss.item() == 0.0
    loss.backward()
    assert left.grad is not None


def test_bce_loss_by_hand() -> None:
    left = torch.tensor([[2.0], [0.0]])
    right = torch.tensor([[-1.0], [1.0]])
    qa = torch.tensor([[0.9], [0.1]])
    qb = torch.tensor([[0.1], [0.1]])
    # targets: left [1, 0], right [0, 0]
    bce_l = (-math.log(_sig(2.0)) - math.log(1 - _sig(0.0))) / 2
    bce_r = (-math.log(1 - _sig(-1.0)) - math.log(1 - _sig(1.0))) / 2
    assert bce_loss(left, right, qa, qb).item() == pytest.approx(bce_l + bce_r, rel=1e-6)
    assert pair_loss("BCE", left, right, qa, qb).item() == pytest.approx(bce_l + bce_r, rel=1e-6)


def test_loss_errors() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        normalize_loss_name("hinge")
    with pytest.raises(ValueError, match="same shape"):
        instructgpt_loss(torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2), torch.zeros(2, 1))


def test_pairwise_accuracy_skips_ties_and_halves_zero_logits() -> None:
    assert pairwise_accuracy([1.0, -2.0, 3.0], [0.9, 0.1, 0.5], [0.1, 0.8, 0.5]) == 1.0
    assert pairwise_accuracy([1.0, 0.0], [0.1, 0.9], [0.9, 0.1]) == 0.25
    assert math.isnan(pairwise_accuracy([1.0], [0.5], [0.5]))
    with pytest.raises(ValueError, match="same length"):
        pairwise_accuracy([1.0], [0.5, 0.2], [0.5])


def _rec(scores: list[float], lengths: list[int]) -> MixRecord:
    cands = tuple(
        MixCandidate(model=f"m{i}", text="x" * n, scores={"q": s})
        for i, (s, n) in enumerate(zip(scores, lengths, strict=True))
    )
    return MixRecord(id="r", instruction="i", candidates=cands)


def test_top1_mean_and_baselines() -> None:
    recs = [_rec([0.2, 0.8, 0.5], [10, 5, 20]), _rec([0.6, 0.4, 0.0], [1, 2, 3])]
    assert top1_mean(recs, [1, 0], "q") == pytest.approx(0.7)
    base = selection_baselines(recs, "q")
    assert base["best_single_model"] == "m1"  # means: m0 0.4, m1 0.6, m2 0.25
    assert base["best_single"] == pytest.approx(0.6)
    assert base["longest"] == pytest.approx(0.25)
    assert base["random"] == pytest.approx((0.5 + 1.0 / 3) / 2)
    assert base["oracle"] == pytest.approx(0.7)
    chosen_on_train = selection_baselines(recs[1:], "q", train_records=recs[:1])
    assert chosen_on_train["best_single_model"] == "m1"
    assert chosen_on_train["best_single"] == pytest.approx(0.4)
