"""Rank dev records with an (in-training) PairRanker model and score the rankings.

Example:
    .. code-block:: python

        from blender_core.training.ranker_eval import evaluate_rankings, rank_with_model

        rankings = rank_with_model(model, tokenizer, dev_records)
        evaluate_rankings(dev_records, rankings, ["gpt4t_pref"])  # {"top1_gpt4t_pref": ...}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from blender_core.data import MixRecord
from blender_core.training.metrics import pairwise_accuracy, top1_mean

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from blender_core.modeling import PairRankerModel
    from blender_core.ranking import Ranking

__all__ = ["evaluate_rankings", "rank_with_model"]


def evaluate_rankings(
    records: Sequence[MixRecord],
    rankings: Sequence[Ranking],
    metrics: Sequence[str],
    *,
    min_gap: float = 0.0,
) -> dict[str, float]:
    """Numbers of a ranker's rankings of ``records`` against their stored metric scores.

    ``top1_<metric>``: mean metric of the top-1 pick. Where the rankings carry the pair matrix:
    ``rank_pairwise_accuracy`` over every untied candidate pair (both directions:
    ``M[i][j] - M[j][i]``) on the first metric, and ``rank_pairwise_accuracy_gap`` over pairs
    whose gap exceeds ``min_gap`` (when ``min_gap > 0``).
    """
    out: dict[str, float] = {}
    picks = [r.best for r in rankings]
    for metric in metrics:
        out[f"top1_{metric}"] = top1_mean(records, picks, metric)
    logits: list[float] = []
    sa: list[float] = []
    sb: list[float] = []
    gap_logits: list[float] = []
    gap_sa: list[float] = []
    gap_sb: list[float] = []
    for record, ranking in zip(records, rankings, strict=True):
        if ranking.matrix is None:
            continue
        scores = record.scores(metrics[0])
        m = ranking.matrix
        for i in range(len(scores)):
            for j in range(i + 1, len(scores)):
                logit = m[i][j] - m[j][i]
                logits.append(logit)
                sa.append(scores[i])
                sb.append(scores[j])
                if abs(scores[i] - scores[j]) > min_gap:
                    gap_logits.append(logit)
                    gap_sa.append(scores[i])
                    gap_sb.append(scores[j])
    if logits:
        out["rank_pairwise_accuracy"] = pairwise_accuracy(logits, sa, sb)
        if min_gap > 0 and gap_logits:
            out["rank_pairwise_accuracy_gap"] = pairwise_accuracy(gap_logits, gap_sa, gap_sb)
    return out


def rank_with_model(
    model: PairRankerModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[MixRecord],
    *,
    strategy: str = "max_logits",
    batch_size: int = 32,
    seed: int | None = 0,
    show_progress: bool = False,
) -> list[Ranking]:
    """Rank each record's candidates with an (in-training) model via ``PairRanker``."""
    from blender_core.pair_ranker import PairRanker

    param = next(model.parameters())
    # Same device and dtype as the model: PairRanker moves the model to them, a no-op here.
    ranker = PairRanker(
        model,
        tokenizer,
        device=param.device,
        dtype=param.dtype,
        batch_tokens=max(1, batch_size) * model.config.max_pair_length,
    )
    return ranker.rank_batch(
        [r.source for r in records],
        [r.texts for r in records],
        strategy=strategy,  # type: ignore[arg-type]  # checked by RankerTrainingConfig
        seed=seed,
        show_progress=show_progress,
    )
