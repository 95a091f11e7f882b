"""Training of PairRanker and GenFuser models on MixInstruct-format data.

Heavy libraries (torch, transformers) load on first use: each public name is imported from its
module when first accessed.

Example:
    .. code-block:: python

        from blender_core.training import RankerTrainingConfig, train_ranker

        result = train_ranker(
            RankerTrainingConfig(
                train_file="train.jsonl",
                dev_file="dev.jsonl",
                backbone="microsoft/deberta-v3-small",
                metrics=["gpt4t_pref"],
                output_dir="runs/ranker",
            )
        )
        result.metrics["eval_pairwise_accuracy"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blender_core.lazy import lazy_exports

_EXPORTS = {
    "CandidatePair": "blender_core.training.pairs",
    "build_pairs": "blender_core.training.pairs",
    "sample_pairs": "blender_core.training.pairs",
    "pair_loss": "blender_core.training.losses",
    "instructgpt_loss": "blender_core.training.losses",
    "bce_loss": "blender_core.training.losses",
    "pairwise_accuracy": "blender_core.training.metrics",
    "selection_baselines": "blender_core.training.metrics",
    "top1_mean": "blender_core.training.metrics",
    "RankerTrainingConfig": "blender_core.training.ranker_config",
    "PairRankerTrainer": "blender_core.training.ranker_trainer",
    "train_ranker": "blender_core.training.ranker_run",
    "FuserTrainingConfig": "blender_core.training.fuser_trainer",
    "train_fuser": "blender_core.training.fuser_trainer",
    "TrainResult": "blender_core.training.report",
}

__all__ = [
    "CandidatePair",
    "FuserTrainingConfig",
    "PairRankerTrainer",
    "RankerTrainingConfig",
    "TrainResult",
    "bce_loss",
    "build_pairs",
    "instructgpt_loss",
    "pair_loss",
    "pairwise_accuracy",
    "sample_pairs",
    "selection_baselines",
    "top1_mean",
    "train_fuser",
    "train_ranker",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from blender_core.training.fuser_trainer import FuserTrainingConfig, train_fuser
    from blender_core.training.losses import bce_loss, instructgpt_loss, pair_loss
    from blender_core.training.metrics import pairwise_accuracy, selection_baselines, top1_mean
    from blender_core.training.pairs import CandidatePair, build_pairs, sample_pairs
    from blender_core.training.ranker_config import RankerTrainingConfig
    from blender_core.training.ranker_run import train_ranker
    from blender_core.training.ranker_trainer import PairRankerTrainer
    from blender_core.training.report import TrainResult
