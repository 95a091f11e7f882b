"""What the ranker and the fuser training runs share: ``TrainingArguments`` fields set the same
way, the start of a run (threads, seed, output folder, records), resuming and report settings.

Both configs (:class:`~blender_core.training.ranker_config.RankerTrainingConfig`,
:class:`~blender_core.training.fuser_trainer.FuserTrainingConfig`) share the field names read here.

Example:
    .. code-block:: python

        from blender_core.training.runs import find_last_checkpoint

        find_last_checkpoint("runs/ranker")  # Path("runs/ranker/checkpoint-120") or None
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from blender_core.data import MixRecord, read_mixinstruct

__all__ = [
    "common_training_kwargs",
    "config_settings",
    "find_last_checkpoint",
    "has_accelerator",
    "precision_kwargs",
    "resolve_bf16",
    "resolve_resume",
    "start_run",
    "warmup_arguments",
]


def find_last_checkpoint(output_dir: str | Path) -> Path | None:
    """The ``checkpoint-<step>`` folder with the highest step in ``output_dir``, if any."""
    from transformers.trainer_utils import get_last_checkpoint

    path = Path(output_dir)
    if not path.is_dir():
        return None
    last = get_last_checkpoint(str(path))
    return Path(last) if last else None


def warmup_arguments(ratio: float) -> dict[str, Any]:
    """The warm-up as a ratio of all steps, spelled for the installed transformers.

    transformers 5 folds ``warmup_ratio`` into ``warmup_steps`` (a float < 1 is a ratio).
    """
    import dataclasses

    from transformers import TrainingArguments

    if not 0 <= ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {ratio}")
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "warmup_ratio" in names:
        return {"warmup_ratio": ratio}
    return {"warmup_steps": float(ratio)}


def common_training_kwargs(config: Any, output_dir: str) -> dict[str, Any]:
    """``TrainingArguments`` kwargs both trainers set the same way from their config (the
    ranker's and the fuser's share these field names); each trainer adds its own and then
    ``config.training_args``."""
    kwargs: dict[str, Any] = {
        "output_dir": output_dir,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "learning_rate": config.learning_rate,
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "weight_decay": config.weight_decay,
        "seed": config.seed,
        "data_seed": config.seed,
        **precision_kwargs(config.bf16),
        "logging_steps": config.logging_steps,
        "save_strategy": "epoch" if config.save_steps is None else "steps",
        "save_total_limit": config.save_total_limit,
        "remove_unused_columns": False,
        "report_to": "none",
        "disable_tqdm": not config.show_progress,
        "dataloader_pin_memory": has_accelerator(),
        **warmup_arguments(config.warmup_ratio),
    }
    if config.save_steps is not None:
        kwargs["save_steps"] = config.save_steps
    return kwargs


def resolve_bf16(bf16: bool | None) -> bool:
    """``bf16=None``: on where the hardware computes bf16 natively (a bf16 GPU, or a CPU with
    AMX / AVX512-BF16), off elsewhere; ``True``/``False`` as given."""
    if bf16 is not None:
        return bool(bf16)
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    from blender_core.devices import cpu_bf16_support

    return cpu_bf16_support().native


def precision_kwargs(bf16: bool | None) -> dict[str, Any]:
    """``TrainingArguments`` fields for the precision: ``bf16`` and, for bf16 on a machine
    without a GPU, ``use_cpu=True`` (transformers refuses CPU bf16 without it)."""
    import torch

    on = resolve_bf16(bf16)
    kwargs: dict[str, Any] = {"bf16": on}
    if on and not torch.cuda.is_available():
        kwargs["use_cpu"] = True
    return kwargs


def start_run(config: Any) -> tuple[float, Path, list[MixRecord], list[MixRecord]]:
    """Common start of a training run: threads, seed, output folder, train/dev records.

    Returns the start time, the output folder and the train and dev records.
    """
    import torch
    from transformers import set_seed

    started = time.time()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    else:
        from blender_core.threads import apply_thread_budget

        apply_thread_budget()  # the cores the load leaves free (or the env override)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    set_seed(config.seed)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_records = read_mixinstruct(config.train_file, limit=config.train_limit)
    dev_records = (
        read_mixinstruct(config.dev_file, limit=config.dev_limit) if config.dev_file else []
    )
    return started, out, train_records, dev_records


def resolve_resume(resume: bool | str | Path, out: Path) -> str | None:
    """The checkpoint to resume from: the last in ``out`` for ``True``, a given path, or None."""
    if resume is True:
        last = find_last_checkpoint(out)
        return str(last) if last else None
    if isinstance(resume, (str, Path)) and str(resume):
        return str(resume)
    return None


def config_settings(config: Any) -> dict[str, Any]:
    """A config's fields for a report (paths as strings, ``training_args`` left out)."""
    return {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in asdict(config).items()
        if k != "training_args"
    }


def has_accelerator() -> bool:
    """Pinned memory only helps (and only works) with a GPU."""
    import torch

    return bool(torch.cuda.is_available())
