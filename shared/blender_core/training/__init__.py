"""Training of PairRanker and GenFuser models on MixInstruct-format data.

Heavy libraries (torch, transformers) load on first use: each public name is imported from its
module when first accessed.

Examples: :func:`train_ranker` (a PairRanker, :mod:`blender_core.training.ranker_run`) and
:func:`train_fuser` (a GenFuser, :mod:`blender_core.training.fuser_trainer`); the command line
is ``blender train-ranker`` / ``blender train-fuser``.
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
