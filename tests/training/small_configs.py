"""A small ranker training config for the training tests (tiny data, fast settings)."""

from __future__ import annotations

from pathlib import Path

from blender_core.training.ranker_config import RankerTrainingConfig


def ranker_config(
    train: Path, dev: Path | None, backbone: Path, out: Path, **kw: object
) -> RankerTrainingConfig:
    """A config over the toy data: the shared small settings, ``kw`` overriding them."""
    settings: dict[str, object] = {
        "train_file": train,
        "dev_file": dev,
        "backbone": backbone,
        "metrics": ["q"],
        "output_dir": out,
        "source_maxlength": 8,
        "candidate_maxlength": 24,
        "pair_mode": "all",
        "epochs": 12,
        "learning_rate": 3e-3,
        "batch_size": 16,
        "warmup_ratio": 0.0,
        "weight_decay": 0.0,
        "num_threads": 1,
        "training_args": {"eval_strategy": "no", "save_strategy": "no"},
    }
    settings.update(kw)
    return RankerTrainingConfig(**settings)  # type: ignore[arg-type]
