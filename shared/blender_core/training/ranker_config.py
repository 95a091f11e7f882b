"""The settings of a PairRanker training run (:func:`~blender_core.training.train_ranker`).

Example:
    .. code-block:: python

        from blender_core.training.ranker_config import RankerTrainingConfig

        config = RankerTrainingConfig(
            train_file="train.jsonl",
            backbone="microsoft/deberta-v3-small",
            metrics=["gpt4t_pref"],
            output_dir="runs/ranker",
        )
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blender_core.training.losses import normalize_loss_name
from blender_core.training.pairs import PAIR_MODES

__all__ = ["RANK_STRATEGIES", "RankerTrainingConfig"]

#: Aggregations for the dev ranking's top-1 pick.
RANK_STRATEGIES = ("max_logits", "max_wins", "bubble")


@dataclass
class RankerTrainingConfig:
    """Settings of :func:`train_ranker` (the ``blender train-ranker`` options).

    Attributes:
        train_file: MixInstruct JSONL with the candidates' metric scores.
        backbone: An encoder (hub id or directory: DeBERTa-v3, BERT, MiniLM, ...) to start a new
            ranker from, or a PairRanker checkpoint to continue training.
        metrics: The score(s) to learn, one head output (task) each.
        output_dir: Run directory: final model, ``checkpoint-*``, ``report.json``/``report.md``.
        dev_file: Optional MixInstruct JSONL to evaluate on during and after training.
        loss: ``"instructgpt"``, ``"bce"`` or ``"margin"`` (instructgpt weighted by the score
            gap, for continuous judge scores; see :mod:`blender_core.training.losses`).
        pair_mode: ``"random"``, ``"top-bottom"``, ``"all"`` or ``"informative"`` (see
            :func:`~blender_core.training.pairs.sample_pairs`); pairs are re-drawn each epoch.
        num_pairs: Pairs per instruction for ``random`` and ``top-bottom``.
        min_score_gap: Pairs whose score gap is not larger count as ties (skipped unless
            ``include_ties``). Useful with continuous judge probabilities.
        include_ties: Train on tied pairs too (no signal for ``instructgpt``; ``bce`` pushes
            both sides down).
        source_maxlength: Source token budget; ``candidate_maxlength``: per-candidate budget.
        epochs, learning_rate, batch_size, grad_accum, warmup_ratio, weight_decay,
        lr_scheduler, seed, max_steps: The usual ``TrainingArguments``.
        bf16: bf16 autocast; ``None`` (default) decides by the hardware: on where a GPU
            supports bf16 or the CPU has native bf16 units (AMX / AVX512-BF16, see
            :func:`~blender_core.devices.cpu_bf16_support`), fp32 elsewhere (emulated bf16 is
            slower than fp32). On a CPU the run then sets ``use_cpu=True`` (transformers
            refuses bf16 on CPU without it).
        token_budget: Length-bucketed batches of up to ``batch_size x max pair length``
            padded tokens (:class:`~blender_core.training.batches.TokenBudgetBatchSampler`):
            short pairs travel many to a batch, padding is nearly gone. ``False``: batches of
            ``batch_size`` pairs in draw order.
        early_stopping_patience: Stop when the dev top-1 (``eval_top1_<first metric>``) has not
            improved for this many evaluations, and keep the best checkpoint (needs
            ``dev_file`` and ranking at the periodic evaluations: ``eval_rank_limit`` not 0).
        eval_steps: Evaluate every this many steps; ``None`` evaluates after each epoch.
        save_steps: Save a checkpoint every this many steps; ``None`` saves after each epoch.
        save_total_limit: Checkpoints kept.
        logging_steps: Loss logging interval.
        resume: ``True`` resumes from the last ``checkpoint-*`` in ``output_dir`` (a fresh start
            when there is none), or give a checkpoint path.
        dev_num_pairs: Sampled untied dev pairs per record for the eval loss and accuracy.
        eval_rank_limit: Rank at most this many dev records at the periodic evaluations (the
            final evaluation ranks all); ``0`` skips ranking during training.
        rank_strategy: Aggregation for the top-1 pick: ``max_logits`` (default), ``max_wins``
            or ``bubble``.
        eval_batch_size: Pairs per forward pass in evaluation.
        train_limit, dev_limit: Use only the first N records (quick runs).
        drop_out: Head dropout of a new ranker.
        max_train_seconds: Stop training (and save) once this much wall time has passed.
        num_threads: ``torch.set_num_threads`` for CPU runs; ``None``: the thread budget of
            :func:`~blender_core.threads.thread_budget` (the cores the load average leaves
            free; ``LLM_BLENDER_KIT_TORCH_THREADS`` overrides it).
        show_progress: Trainer progress bars.
        training_args: Extra ``TrainingArguments`` fields (e.g. ``{"deepspeed": "ds.json"}``);
            they override the ones derived above.
    """

    train_file: str | Path
    backbone: str | Path
    metrics: Sequence[str]
    output_dir: str | Path
    dev_file: str | Path | None = None
    loss: str = "instructgpt"
    pair_mode: str = "random"
    num_pairs: int = 5
    min_score_gap: float = 0.0
    include_ties: bool = False
    source_maxlength: int = 128
    candidate_maxlength: int = 128
    epochs: float = 1.0
    learning_rate: float = 3e-5
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.05
    weight_decay: float = 0.1
    lr_scheduler: str = "linear"
    seed: int = 42
    bf16: bool | None = None
    token_budget: bool = True
    early_stopping_patience: int | None = None
    max_steps: int = -1
    eval_steps: int | None = None
    save_steps: int | None = None
    save_total_limit: int | None = 2
    logging_steps: int = 10
    resume: bool | str = False
    dev_num_pairs: int = 5
    eval_rank_limit: int | None = None
    rank_strategy: str = "max_logits"
    eval_batch_size: int = 32
    train_limit: int | None = None
    dev_limit: int | None = None
    drop_out: float = 0.05
    max_train_seconds: float | None = None
    num_threads: int | None = None
    show_progress: bool = False
    training_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.metrics, str):
            self.metrics = [self.metrics]
        self.metrics = list(self.metrics)
        if not self.metrics:
            raise ValueError("at least one metric is needed (e.g. metrics=['gpt4t_pref'])")
        self.loss = normalize_loss_name(self.loss)
        if self.pair_mode not in PAIR_MODES:
            raise ValueError(
                f"unknown pair mode {self.pair_mode!r}; choose one of {', '.join(PAIR_MODES)}"
            )
        if self.rank_strategy not in RANK_STRATEGIES:
            raise ValueError(
                f"unknown rank strategy {self.rank_strategy!r}; choose one of "
                f"{', '.join(RANK_STRATEGIES)}"
            )
        positive = {
            "num_pairs": self.num_pairs,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "dev_num_pairs": self.dev_num_pairs,
            "eval_batch_size": self.eval_batch_size,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise ValueError(
                    f"early_stopping_patience must be >= 1, got {self.early_stopping_patience}"
                )
            if self.dev_file is None or self.eval_rank_limit == 0:
                raise ValueError(
                    "early stopping watches the dev top-1: give dev_file and let the periodic "
                    "evaluations rank (eval_rank_limit not 0)"
                )
        if self.min_score_gap < 0:
            raise ValueError(f"min_score_gap must be >= 0, got {self.min_score_gap}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError("epochs must be > 0 (or set max_steps)")
        if not Path(self.train_file).is_file():
            raise FileNotFoundError(f"train file not found: {self.train_file}")
        if self.dev_file is not None and not Path(self.dev_file).is_file():
            raise FileNotFoundError(f"dev file not found: {self.dev_file}")
