"""Pairwise ranking losses of the LLM-Blender PairRanker.

``left`` and ``right`` are the ranker head's per-task scores of the two candidates of each pair
(shape ``[batch, n_tasks]``); ``scores_a`` and ``scores_b`` are their metric scores (same shape).

- ``instructgpt``: ``-log sigmoid((left - right) * sign(Q_A - Q_B))``, averaged over the
  untied (pair, task) entries; tied entries carry no signal.
- ``bce``: binary cross-entropy of ``left`` against ``1[Q_A > Q_B]`` plus that of ``right``
  against ``1[Q_A < Q_B]``.
- ``margin``: instructgpt with each untied entry weighted by its score gap ``|Q_A - Q_B|``
  (a weighted mean): with continuous judge scores (alpaca-v2's probabilities) a pair the judge
  separates by 0.9 counts nine times as much as one it separates by 0.1.

Example:
    .. code-block:: python

        import torch
        from blender_core.training.losses import pair_loss

        left, right = torch.tensor([[1.0]]), torch.tensor([[0.0]])
        pair_loss("instructgpt", left, right, torch.tensor([[0.9]]), torch.tensor([[0.1]]))
        # tensor(0.3133) == -log(sigmoid(1))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "LOSS_NAMES",
    "bce_loss",
    "instructgpt_loss",
    "margin_loss",
    "normalize_loss_name",
    "pair_loss",
]

LOSS_NAMES: tuple[str, ...] = ("instructgpt", "bce", "margin")


def normalize_loss_name(name: str) -> str:
    """``"BCE"`` -> ``"bce"``; raises ``ValueError`` for an unknown loss."""
    key = name.strip().lower()
    if key not in LOSS_NAMES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    return key


def _check_shapes(*tensors: torch.Tensor) -> None:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(
            "left, right, scores_a and scores_b must have the same shape [batch, n_tasks], "
            f"got {[tuple(t.shape) for t in tensors]}"
        )


def instructgpt_loss(
    left: torch.Tensor, right: torch.Tensor, scores_a: torch.Tensor, scores_b: torch.Tensor
) -> torch.Tensor:
    """Mean of ``-log sigmoid((left - right) * sign(Q_A - Q_B))`` over untied entries.

    When every entry is tied the loss is a zero that still depends on the inputs (so that
    backward works and no step is skipped by the trainer).
    """
    import torch.nn.functional as F

    _check_shapes(left, right, scores_a, scores_b)
    diff = (left - right).float()
    sign = (scores_a - scores_b).to(diff.device).float().sign()
    mask = sign != 0
    if not bool(mask.any()):
        return diff.sum() * 0.0
    return -F.logsigmoid(diff[mask] * sign[mask]).mean()


def margin_loss(
    left: torch.Tensor, right: torch.Tensor, scores_a: torch.Tensor, scores_b: torch.Tensor
) -> torch.Tensor:
    """``sum(w * -log sigmoid((left - right) * sign)) / sum(w)`` with ``w = |Q_A - Q_B|``.

    Tied entries have weight 0; when every entry is tied the loss is a zero that still depends
    on the inputs (as :func:`instructgpt_loss`).
    """
    import torch.nn.functional as F

    _check_shapes(left, right, scores_a, scores_b)
    diff = (left - right).float()
    gap = (scores_a - scores_b).to(diff.device).float()
    weight = gap.abs()
    total = weight.sum()
    if not bool(total > 0):
        return diff.sum() * 0.0
    return (-F.logsigmoid(diff * gap.sign()) * weight).sum() / total


def bce_loss(
    left: torch.Tensor, right: torch.Tensor, scores_a: torch.Tensor, scores_b: torch.Tensor
) -> torch.Tensor:
    """``BCE(left, 1[Q_A > Q_B]) + BCE(right, 1[Q_A < Q_B])``, each a mean over entries."""
    import torch.nn.functional as F

    _check_shapes(left, right, scores_a, scores_b)
    left_f, right_f = left.float(), right.float()
    scores_a = scores_a.to(left_f.device)
    scores_b = scores_b.to(left_f.device)
    target_left = (scores_a > scores_b).float()
    target_right = (scores_a < scores_b).float()
    return F.binary_cross_entropy_with_logits(
        left_f, target_left
    ) + F.binary_cross_entropy_with_logits(right_f, target_right)


def pair_loss(
    name: str,
    left: torch.Tensor,
    right: torch.Tensor,
    scores_a: torch.Tensor,
    scores_b: torch.Tensor,
) -> torch.Tensor:
    """The loss called ``name`` (``"instructgpt"``, ``"bce"`` or ``"margin"``, any case)."""
    key = normalize_loss_name(name)
    if key == "instructgpt":
        return instructgpt_loss(left, right, scores_a, scores_b)
    if key == "margin":
        return margin_loss(left, right, scores_a, scores_b)
    return bce_loss(left, right, scores_a, scores_b)
