"""The ``Trainer`` subclass of a PairRanker run: pairwise loss, pair evaluation, checkpoints.

:class:`PairRankerTrainer` subclasses transformers' ``Trainer``, so it is built on first access
(transformers loads lazily). The run around it is :mod:`blender_core.training.ranker_run`; this
module's former names (``train_ranker``, ``RankerTrainingConfig``, ``PairDataset``, ...) stay
importable from here.

Example:
    .. code-block:: python

        from blender_core.training.ranker_trainer import PairRankerTrainer

        trainer = PairRankerTrainer(model=model, args=args, train_dataset=pairs, loss_name="bce")
"""

from __future__ import annotations

import functools
import importlib
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blender_core.checkpoints import write_ranker_files
from blender_core.data import MixRecord
from blender_core.training.batches import TokenBudgetBatchSampler
from blender_core.training.losses import normalize_loss_name, pair_loss
from blender_core.training.metrics import pairwise_accuracy
from blender_core.training.ranker_data import PairDataset
from blender_core.training.ranker_eval import evaluate_rankings, rank_with_model

if TYPE_CHECKING:
    from transformers import Trainer as PairRankerTrainer

__all__ = ["PairRankerTrainer", "trainer_class"]

# Names this module held before the split, and where they live now.
_MOVED = {
    "RankerTrainingConfig": "blender_core.training.ranker_config",
    "PairDataset": "blender_core.training.ranker_data",
    "PairCollator": "blender_core.training.ranker_data",
    "evaluate_rankings": "blender_core.training.ranker_eval",
    "rank_with_model": "blender_core.training.ranker_eval",
    "build_ranker_report": "blender_core.training.ranker_report",
    "load_start_model": "blender_core.training.ranker_run",
    "train_ranker": "blender_core.training.ranker_run",
    "find_last_checkpoint": "blender_core.training.runs",
    "warmup_arguments": "blender_core.training.runs",
    "write_ranker_files": "blender_core.checkpoints",
}


@functools.cache
def trainer_class() -> Any:
    """Build the ``Trainer`` subclass on first use (transformers loads lazily)."""

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
            batch_tokens: Length-bucketed training batches of at most this many padded tokens
                (:class:`~blender_core.training.batches.TokenBudgetBatchSampler`; needs a
                :class:`PairDataset`); ``None``: the ``Trainer``'s fixed-size batches.
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
            batch_tokens: int | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            if batch_tokens is not None and not isinstance(self.train_dataset, PairDataset):
                raise TypeError("batch_tokens needs a PairDataset (it measures pair lengths)")
            self.batch_tokens = batch_tokens
            self.batch_sampler: TokenBudgetBatchSampler | None = None
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

        def get_train_dataloader(self) -> Any:
            """Token-budget batches when ``batch_tokens`` is set, else the ``Trainer``'s own."""
            if self.batch_tokens is None:
                return super().get_train_dataloader()
            from torch.utils.data import DataLoader

            dataset = self.train_dataset
            assert isinstance(dataset, PairDataset)
            self.batch_sampler = TokenBudgetBatchSampler(
                dataset.pair_lengths,
                max_tokens=self.batch_tokens,
                seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
                on_epoch=dataset.set_epoch,
            )
            loader: Any = DataLoader(
                dataset,  # type: ignore[arg-type]
                batch_sampler=self.batch_sampler,
                collate_fn=self.data_collator,
                num_workers=self.args.dataloader_num_workers,
                pin_memory=self.args.dataloader_pin_memory,
            )
            return self.accelerator.prepare(loader)

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

    return _PairRankerTrainer


def __getattr__(name: str) -> Any:
    if name == "PairRankerTrainer":
        return trainer_class()
    module = _MOVED.get(name)
    if module is not None:
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
