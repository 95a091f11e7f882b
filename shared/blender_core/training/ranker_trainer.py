"""Train a PairRanker on MixInstruct-format data with the Hugging Face ``Trainer``.

The recipe of LLM-Blender: pairs of candidates of the same instruction (see
:mod:`blender_core.training.pairs`), the ranker's pair encoding, and a pairwise loss
(``instructgpt`` or ``bce``, :mod:`blender_core.training.losses`). Any encoder backbone works
(DeBERTa-v3, BERT, MiniLM, ...), and so does a published PairRanker checkpoint (continued
training). Everything else (multi-GPU, DeepSpeed, mixed precision, checkpointing, resuming) is
the ``Trainer``'s: pass any ``TrainingArguments`` field through ``training_args``.

Dev evaluation reports the loss and pairwise accuracy on sampled dev pairs, and ranks the dev
records with the in-training model through :class:`~blender_core.pair_ranker.PairRanker`
(MaxLogits by default): the mean metric of the top-1 pick and the pairwise accuracy over every
untied pair of the full pair matrix.

Example:
    .. code-block:: python

        from blender_core.training import RankerTrainingConfig, train_ranker

        result = train_ranker(
            RankerTrainingConfig(
                train_file="alpaca-v2/train.jsonl",
                dev_file="alpaca-v2/dev.jsonl",
                backbone="microsoft/deberta-v3-small",
                metrics=["gpt4t_pref"],
                output_dir="runs/ranker",
                epochs=2,
            )
        )
        print(result.metrics["eval_top1_gpt4t_pref"])
        # PairRanker.from_pretrained("runs/ranker") loads the trained model.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blender_core.data import MixRecord, read_mixinstruct
from blender_core.training.losses import normalize_loss_name, pair_loss
from blender_core.training.metrics import (
    mean,
    pairwise_accuracy,
    selection_baselines,
    top1_mean,
)
from blender_core.training.pairs import PAIR_MODES, CandidatePair, build_pairs
from blender_core.training.report import TrainResult, write_report

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase
    from transformers import Trainer as PairRankerTrainer  # noqa: F401  (built lazily)

    from blender_core.encoding import PairEncoder
    from blender_core.modeling import PairRankerModel
    from blender_core.ranking import Ranking

__all__ = [
    "PairCollator",
    "PairDataset",
    "RankerTrainingConfig",
    "evaluate_rankings",
    "find_last_checkpoint",
    "load_start_model",
    "train_ranker",
]

_STRATEGIES = ("max_logits", "max_wins", "bubble")


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
        loss: ``"instructgpt"`` or ``"bce"``.
        pair_mode: ``"random"``, ``"top-bottom"`` or ``"all"`` (see
            :func:`~blender_core.training.pairs.sample_pairs`); pairs are re-drawn each epoch.
        num_pairs: Pairs per instruction for ``random`` and ``top-bottom``.
        min_score_gap: Pairs whose score gap is not larger count as ties (skipped unless
            ``include_ties``). Useful with continuous judge probabilities.
        include_ties: Train on tied pairs too (no signal for ``instructgpt``; ``bce`` pushes
            both sides down).
        source_maxlength: Source token budget; ``candidate_maxlength``: per-candidate budget.
        epochs, learning_rate, batch_size, grad_accum, warmup_ratio, weight_decay,
        lr_scheduler, seed, bf16, max_steps: The usual ``TrainingArguments``.
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
        num_threads: ``torch.set_num_threads`` for CPU runs (``None`` leaves torch's default).
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
    bf16: bool = False
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
        if self.rank_strategy not in _STRATEGIES:
            raise ValueError(
                f"unknown rank strategy {self.rank_strategy!r}; choose one of "
                f"{', '.join(_STRATEGIES)}"
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
        if self.min_score_gap < 0:
            raise ValueError(f"min_score_gap must be >= 0, got {self.min_score_gap}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError("epochs must be > 0 (or set max_steps)")
        if not Path(self.train_file).is_file():
            raise FileNotFoundError(f"train file not found: {self.train_file}")
        if self.dev_file is not None and not Path(self.dev_file).is_file():
            raise FileNotFoundError(f"dev file not found: {self.dev_file}")


class PairDataset:
    """A ``torch`` map-style dataset of encoded training pairs, re-drawn each epoch.

    Items are ``{"input_ids": list[int], "scores_a": tuple, "scores_b": tuple}``. The pairs of
    epoch ``e`` are drawn with seed ``seed + e``, so a resumed run sees the same pairs.
    """

    def __init__(
        self,
        records: Sequence[MixRecord],
        metrics: Sequence[str],
        encoder: PairEncoder,
        *,
        mode: str = "random",
        num_pairs: int = 5,
        seed: int = 0,
        include_ties: bool = False,
        min_gap: float = 0.0,
        swap: bool = True,
    ) -> None:
        self.records = list(records)
        self.metrics = list(metrics)
        self.encoder = encoder
        self._options = {
            "mode": mode,
            "num_pairs": num_pairs,
            "include_ties": include_ties,
            "min_gap": min_gap,
            "swap": swap,
        }
        self.seed = seed
        self.epoch = 0
        self.pairs: list[CandidatePair] = self._draw(0)
        if not self.pairs:
            raise ValueError(
                "no training pairs: every record's candidates are tied (or duplicates); "
                "lower min_score_gap or set include_ties"
            )

    def _draw(self, epoch: int) -> list[CandidatePair]:
        return build_pairs(self.records, self.metrics, seed=self.seed + epoch, **self._options)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """Draw the pairs of ``epoch`` (same count every epoch, different pairs and swaps)."""
        if epoch == self.epoch:
            return
        pairs = self._draw(epoch)
        if len(pairs) != len(self.pairs):  # pragma: no cover - sample sizes depend on data only
            raise RuntimeError("the number of pairs changed between epochs")
        self.pairs, self.epoch = pairs, epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        record = self.records[pair.record_index]
        ids = self.encoder.encode_pair(
            record.source, record.candidates[pair.a].text, record.candidates[pair.b].text
        )
        return {"input_ids": ids, "scores_a": pair.scores_a, "scores_b": pair.scores_b}


class PairCollator:
    """Pads encoded pairs at the end and stacks their scores: the ``Trainer``'s data collator."""

    def __init__(self, encoder: PairEncoder, *, pad_to_multiple_of: int | None = None) -> None:
        self.encoder = encoder
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        batch = self.encoder.collate(
            [f["input_ids"] for f in features], pad_to_multiple_of=self.pad_to_multiple_of
        )
        batch["scores_a"] = torch.tensor([f["scores_a"] for f in features], dtype=torch.float32)
        batch["scores_b"] = torch.tensor([f["scores_b"] for f in features], dtype=torch.float32)
        return batch


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


def find_last_checkpoint(output_dir: str | Path) -> Path | None:
    """The ``checkpoint-<step>`` folder with the highest step in ``output_dir``, if any."""
    from transformers.trainer_utils import get_last_checkpoint

    path = Path(output_dir)
    if not path.is_dir():
        return None
    last = get_last_checkpoint(str(path))
    return Path(last) if last else None


def _is_pairranker_checkpoint(name_or_path: str) -> bool:
    from blender_core.modeling import CheckpointError, detect_layout

    path = Path(name_or_path)
    if path.is_dir():
        try:
            detect_layout(path)
        except CheckpointError:
            return False
        return True
    lowered = name_or_path.lower()
    return lowered.startswith("llm-blender/") and ("pairrm" in lowered or "ranker" in lowered)


def load_start_model(
    config: RankerTrainingConfig,
) -> tuple[PairRankerModel, PreTrainedTokenizerBase, str]:
    """The model to train: a new ranker on ``config.backbone`` or a PairRanker checkpoint.

    Returns ``(model, tokenizer, kind)`` with ``kind`` ``"backbone"`` or ``"checkpoint"``.
    """
    from blender_core.modeling import PairRankerModel

    name = str(config.backbone)
    if _is_pairranker_checkpoint(name):
        model, tokenizer = PairRankerModel.from_pretrained(
            name,
            source_maxlength=config.source_maxlength,
            candidate_maxlength=config.candidate_maxlength,
        )
        if model.config.n_tasks != len(config.metrics):
            raise ValueError(
                f"the checkpoint {name} has {model.config.n_tasks} task(s) but "
                f"{len(config.metrics)} metric(s) were given ({', '.join(config.metrics)})"
            )
        model.config.check_lengths()
        model.train()
        return model, tokenizer, "checkpoint"
    model, tokenizer = PairRankerModel.from_backbone(
        name,
        source_maxlength=config.source_maxlength,
        candidate_maxlength=config.candidate_maxlength,
        n_tasks=len(config.metrics),
        drop_out=config.drop_out,
        seed=config.seed,
    )
    model.config.check_lengths()
    model.train()
    return model, tokenizer, "backbone"


def _trainer_class() -> Any:
    """Build the ``Trainer`` subclass on first use (transformers loads lazily)."""
    global _TRAINER_CLASS
    if _TRAINER_CLASS is not None:
        return _TRAINER_CLASS

    import torch
    from transformers import Trainer, TrainerCallback

    class _EpochPairs(TrainerCallback):
        """Re-draws the training pairs at each epoch start (seed + epoch)."""

        def __init__(self, dataset: PairDataset) -> None:
            self.dataset = dataset

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.dataset.set_epoch(math.floor((state.epoch or 0.0) + 1e-6))

    class _TimeBudget(TrainerCallback):
        """Stops training once ``seconds`` of wall time have passed since training began."""

        def __init__(self, seconds: float) -> None:
            self.seconds = seconds
            self.started = time.time()
            self.stopped_early = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.time()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if time.time() - self.started >= self.seconds:
                self.stopped_early = True
                control.should_training_stop = True
                control.should_save = True

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # The final evaluation follows at once; skip the epoch-end one of a cut epoch.
            if self.stopped_early:
                control.should_evaluate = False

    class _PairRankerTrainer(Trainer):
        """``Trainer`` with the pairwise loss, pair evaluation and PairRanker checkpoints.

        Args:
            loss_name: ``"instructgpt"`` or ``"bce"``.
            ranker_tokenizer: Saved beside each checkpoint (so each loads by itself).
            rank_records: Dev records to rank with the in-training model at each evaluation.
            metrics: The metric names (tasks), for the ranking numbers.
            rank_strategy: Aggregation of the ranking.
            rank_limit: Rank at most this many records at periodic evaluations.
            min_gap: For the extra ``rank_pairwise_accuracy_gap`` number.
            rank_batch_size: Pairs per forward pass when ranking.
            max_train_seconds: Stop training (and save) after this much wall time.
        """

        loss_is_scaled_for_ga = False

        def __init__(
            self,
            *args: Any,
            loss_name: str = "instructgpt",
            ranker_tokenizer: Any = None,
            rank_records: Sequence[MixRecord] = (),
            metrics: Sequence[str] = (),
            rank_strategy: str = "max_logits",
            rank_limit: int | None = None,
            min_gap: float = 0.0,
            rank_batch_size: int = 32,
            max_train_seconds: float | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.time_budget = _TimeBudget(max_train_seconds) if max_train_seconds else None
            if self.time_budget is not None:
                self.add_callback(self.time_budget)
            self.loss_name = normalize_loss_name(loss_name)
            self.ranker_tokenizer = ranker_tokenizer
            self.rank_records = list(rank_records)
            self.task_metrics = list(metrics)
            self.rank_strategy = rank_strategy
            self.rank_limit = rank_limit
            self.min_gap = min_gap
            self.rank_batch_size = rank_batch_size
            self.full_ranking = False
            if isinstance(self.train_dataset, PairDataset):
                self.add_callback(_EpochPairs(self.train_dataset))

        # -- training ---------------------------------------------------------------------

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            scores_a = inputs["scores_a"]
            scores_b = inputs["scores_b"]
            left, right = model(inputs["input_ids"], inputs["attention_mask"])
            loss = pair_loss(self.loss_name, left, right, scores_a, scores_b)
            return (loss, (left, right)) if return_outputs else loss

        # -- evaluation -------------------------------------------------------------------

        def prediction_step(
            self,
            model: Any,
            inputs: dict[str, Any],
            prediction_loss_only: bool,
            ignore_keys: list[str] | None = None,
        ) -> tuple[Any, Any, Any]:
            inputs = self._prepare_inputs(inputs)
            with torch.no_grad(), self.compute_loss_context_manager():
                loss, (left, right) = self.compute_loss(model, inputs, return_outputs=True)
            if prediction_loss_only:
                return loss.detach(), None, None
            logits = (left.float() - right.float()).mean(-1)
            # labels: the score gap on the first metric, and the pair's first-metric scores
            labels = torch.stack([inputs["scores_a"][:, 0], inputs["scores_b"][:, 0]], dim=-1)
            return loss.detach(), logits.detach(), labels.detach()

        def _pair_metrics(self, prediction: Any) -> dict[str, float]:
            logits = [float(x) for x in prediction.predictions.reshape(-1)]
            labels = prediction.label_ids.reshape(-1, 2)
            sa = [float(x) for x in labels[:, 0]]
            sb = [float(x) for x in labels[:, 1]]
            out = {"pairwise_accuracy": pairwise_accuracy(logits, sa, sb)}
            if self.min_gap > 0:
                keep = [k for k in range(len(sa)) if abs(sa[k] - sb[k]) > self.min_gap]
                out["pairwise_accuracy_gap"] = pairwise_accuracy(
                    [logits[k] for k in keep], [sa[k] for k in keep], [sb[k] for k in keep]
                )
            if self.rank_records and (
                self.full_ranking or self.rank_limit is None or self.rank_limit > 0
            ):
                out.update(self.rank_dev(full=self.full_ranking))
            return out

        def rank_dev(self, *, full: bool = True) -> dict[str, float]:
            """Rank the dev records with the current model; top-1 and pair-matrix numbers."""
            records = self.rank_records
            if not full and self.rank_limit is not None:
                records = records[: self.rank_limit]
            if not records:
                return {}
            model = self.accelerator.unwrap_model(self.model)
            was_training = model.training
            model.eval()
            try:
                with self.autocast_smart_context_manager():
                    rankings = rank_with_model(
                        model,
                        self.ranker_tokenizer,
                        records,
                        strategy=self.rank_strategy,
                        batch_size=self.rank_batch_size,
                        seed=self.args.seed,
                    )
            finally:
                model.train(was_training)
            out = evaluate_rankings(records, rankings, self.task_metrics, min_gap=self.min_gap)
            out["ranked_records"] = float(len(records))
            return out

        # -- saving -----------------------------------------------------------------------

        def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
            super()._save(output_dir, state_dict=state_dict)
            if not self.args.should_save:
                return
            out = Path(str(output_dir if output_dir is not None else self.args.output_dir))
            model = self.accelerator.unwrap_model(self.model)
            write_ranker_files(model, self.ranker_tokenizer, out)

    _TRAINER_CLASS = _PairRankerTrainer
    return _TRAINER_CLASS


_TRAINER_CLASS: Any = None


def __getattr__(name: str) -> Any:
    # ``PairRankerTrainer`` subclasses transformers' Trainer, so it is built on first access.
    if name == "PairRankerTrainer":
        return _trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def write_ranker_files(model: Any, tokenizer: Any, out: Path) -> None:
    """Write the hf-layout ``config.json`` and the tokenizer beside saved weights."""
    import json

    config = model.config
    config.backbone.vocab_size = int(model.pretrained_model.get_input_embeddings().weight.shape[0])
    (out / "config.json").write_text(
        json.dumps(config.to_hf_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))


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


def _common_training_kwargs(config: Any, output_dir: str) -> dict[str, Any]:
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
        "bf16": config.bf16,
        "logging_steps": config.logging_steps,
        "save_strategy": "epoch" if config.save_steps is None else "steps",
        "save_total_limit": config.save_total_limit,
        "remove_unused_columns": False,
        "report_to": "none",
        "disable_tqdm": not config.show_progress,
        "dataloader_pin_memory": _has_accelerator(),
        **warmup_arguments(config.warmup_ratio),
    }
    if config.save_steps is not None:
        kwargs["save_steps"] = config.save_steps
    return kwargs


def _start_run(config: Any) -> tuple[float, Path, list[MixRecord], list[MixRecord]]:
    """Common start of a training run: threads, seed, output folder, train/dev records.

    Returns the start time, the output folder and the train and dev records.
    """
    import torch
    from transformers import set_seed

    started = time.time()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    set_seed(config.seed)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_records = read_mixinstruct(config.train_file, limit=config.train_limit)
    dev_records = (
        read_mixinstruct(config.dev_file, limit=config.dev_limit) if config.dev_file else []
    )
    return started, out, train_records, dev_records


def _resolve_resume(resume: bool | str | Path, out: Path) -> str | None:
    """The checkpoint to resume from: the last in ``out`` for ``True``, a given path, or None."""
    if resume is True:
        last = find_last_checkpoint(out)
        return str(last) if last else None
    if isinstance(resume, (str, Path)) and str(resume):
        return str(resume)
    return None


def _config_settings(config: Any) -> dict[str, Any]:
    """A config's fields for a report (paths as strings, ``training_args`` left out)."""
    return {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in asdict(config).items()
        if k != "training_args"
    }


def _training_arguments(config: RankerTrainingConfig, has_dev: bool) -> Any:
    from transformers import TrainingArguments

    per_epoch = config.eval_steps is None
    kwargs = _common_training_kwargs(config, str(config.output_dir))
    kwargs.update(
        {
            "per_device_eval_batch_size": config.eval_batch_size,
            "lr_scheduler_type": config.lr_scheduler,
            "eval_strategy": ("epoch" if per_epoch else "steps") if has_dev else "no",
            "dataloader_num_workers": 0,
            "label_names": ["scores_a", "scores_b"],
        }
    )
    if not per_epoch and has_dev:
        kwargs["eval_steps"] = config.eval_steps
    kwargs.update(config.training_args)
    return TrainingArguments(**kwargs)


def train_ranker(config: RankerTrainingConfig) -> TrainResult:
    """Train a PairRanker as ``config`` says; the final model loads with ``PairRanker``.

    Returns:
        The run directory, the final dev metrics, the train summary and the report.

    Raises:
        FileNotFoundError: A data file is missing.
        KeyError: A candidate lacks one of the metrics (record and candidate named).
        ValueError: Bad settings, or no untied pair to train on.
    """
    from blender_core.encoding import PairEncoder

    started, out, train_records, dev_records = _start_run(config)
    if not train_records:
        raise ValueError(f"{config.train_file} has no records")
    model, tokenizer, start_kind = load_start_model(config)
    encoder = PairEncoder(tokenizer, model.config)
    train_set = PairDataset(
        train_records,
        config.metrics,
        encoder,
        mode=config.pair_mode,
        num_pairs=config.num_pairs,
        seed=config.seed,
        include_ties=config.include_ties,
        min_gap=config.min_score_gap,
    )
    dev_set = (
        PairDataset(
            dev_records,
            config.metrics,
            encoder,
            mode="random",
            num_pairs=config.dev_num_pairs,
            seed=config.seed + 10_000,
        )
        if dev_records
        else None
    )
    args = _training_arguments(config, has_dev=dev_set is not None)
    trainer_cls = _trainer_class()
    trainer: Any = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=dev_set,
        data_collator=PairCollator(encoder),
        loss_name=config.loss,
        ranker_tokenizer=tokenizer,
        rank_records=dev_records,
        metrics=config.metrics,
        rank_strategy=config.rank_strategy,
        rank_limit=config.eval_rank_limit,
        min_gap=config.min_score_gap,
        rank_batch_size=config.eval_batch_size,
        max_train_seconds=config.max_train_seconds,
    )
    trainer.compute_metrics = trainer._pair_metrics

    resume_from = _resolve_resume(config.resume, out)
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.time() - started

    trainer.save_model(str(out))
    final: dict[str, float] = {}
    eval_seconds = 0.0
    periodic_log = list(trainer.state.log_history)
    if dev_set is not None:
        t0 = time.time()
        trainer.full_ranking = True
        final = trainer.evaluate()
        eval_seconds = time.time() - t0

    report = build_ranker_report(
        config,
        start_kind=start_kind,
        train_metrics=dict(train_output.metrics),
        final=final,
        train_records=train_records,
        dev_records=dev_records,
        train_pairs=len(train_set),
        steps=int(trainer.state.global_step),
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        resumed_from=resume_from,
        log_history=periodic_log,
    )
    if trainer.time_budget is not None:
        report["training"]["stopped_by_time_budget"] = trainer.time_budget.stopped_early
    if trainer.args.should_save:
        write_report(out, report)
    return TrainResult(
        output_dir=out,
        metrics=final,
        train_metrics=dict(train_output.metrics),
        report=report,
    )


def build_ranker_report(
    config: RankerTrainingConfig,
    *,
    start_kind: str,
    train_metrics: dict[str, float],
    final: dict[str, float],
    train_records: Sequence[MixRecord],
    dev_records: Sequence[MixRecord],
    train_pairs: int,
    steps: int,
    train_seconds: float,
    eval_seconds: float,
    resumed_from: str | None,
    log_history: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The report dict of a ranker run: settings, timings, dev numbers beside baselines."""
    settings = _config_settings(config)
    settings["metrics"] = ", ".join(config.metrics)
    report: dict[str, Any] = {
        "title": "PairRanker training report",
        "output_dir": str(config.output_dir),
        "started_from": f"{start_kind}: {config.backbone}",
        "resumed_from": resumed_from or "",
        "training": {
            "train_records": len(train_records),
            "pairs_per_epoch": train_pairs,
            "optimizer_steps": steps,
            "train_loss": train_metrics.get("train_loss", float("nan")),
            "train_seconds": round(train_seconds, 1),
            "final_eval_seconds": round(eval_seconds, 1),
        },
        "settings": settings,
    }
    losses = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    if losses:
        first, last = losses[: max(1, len(losses) // 5)], losses[-max(1, len(losses) // 5) :]
        report["training"]["loss_first_fifth"] = mean([v for _, v in first])
        report["training"]["loss_last_fifth"] = mean([v for _, v in last])
    evals = [h for h in log_history if "eval_pairwise_accuracy" in h]
    if evals:
        report["evaluations"] = [
            {
                "step": h.get("step"),
                "eval_loss": h.get("eval_loss", float("nan")),
                "pairwise_accuracy": h.get("eval_pairwise_accuracy", float("nan")),
                **{f"top1_{m}": h.get(f"eval_top1_{m}", float("nan")) for m in config.metrics[:1]},
            }
            for h in evals
        ]
    if dev_records:
        report["dev"] = {k.removeprefix("eval_"): v for k, v in final.items()}
        rows = []
        for metric in config.metrics:
            base = selection_baselines(dev_records, metric, train_records=train_records)
            rows.append(
                {
                    "metric": metric,
                    "ranker_top1": final.get(f"eval_top1_{metric}", float("nan")),
                    "best_single": base["best_single"],
                    "best_single_model": base["best_single_model"],
                    "longest": base["longest"],
                    "random": base["random"],
                    "oracle": base["oracle"],
                }
            )
        report["dev_top1_vs_baselines"] = rows
    return report


def _has_accelerator() -> bool:
    """Pinned memory only helps (and only works) with a GPU."""
    import torch

    return bool(torch.cuda.is_available())
