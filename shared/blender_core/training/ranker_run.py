"""Run a PairRanker training (:func:`train_ranker`) on MixInstruct data with the HF ``Trainer``.

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

The pieces, one job each (after sentence-transformers' ``cross_encoder`` training layout):
:mod:`~blender_core.training.ranker_config` (settings), :mod:`~blender_core.training.ranker_data`
(pairs data set and collator), :mod:`~blender_core.training.ranker_trainer` (the ``Trainer``
subclass), this module (the run), :mod:`~blender_core.training.ranker_eval` (dev ranking) and
:mod:`~blender_core.training.ranker_report` (the report).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blender_core.training.ranker_config import RankerTrainingConfig
from blender_core.training.ranker_data import PairCollator, PairDataset
from blender_core.training.ranker_report import build_ranker_report
from blender_core.training.ranker_trainer import trainer_class
from blender_core.training.report import TrainResult, write_report
from blender_core.training.runs import common_training_kwargs, resolve_resume, start_run

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from blender_core.modeling import PairRankerModel

__all__ = ["load_start_model", "train_ranker"]


def _is_pairranker_checkpoint(name_or_path: str) -> bool:
    from blender_core.checkpoints import CheckpointError, detect_layout

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
    from blender_core.hub import local_snapshot

    # Offline, a hub id resolves from the local cache or fails now with the library's message,
    # instead of transformers retrying the unreachable hub for most of a minute.
    cached = local_snapshot(name, what="backbone model")
    model, tokenizer = PairRankerModel.from_backbone(
        str(cached) if cached is not None else name,
        source_maxlength=config.source_maxlength,
        candidate_maxlength=config.candidate_maxlength,
        n_tasks=len(config.metrics),
        drop_out=config.drop_out,
        seed=config.seed,
    )
    if cached is not None:
        model.config.model_name = name  # the checkpoint names the hub id, not this cache path
    model.config.check_lengths()
    model.train()
    return model, tokenizer, "backbone"


def _training_arguments(config: RankerTrainingConfig, has_dev: bool) -> Any:
    from transformers import TrainingArguments

    per_epoch = config.eval_steps is None
    kwargs = common_training_kwargs(config, str(config.output_dir))
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
    if config.early_stopping_patience is not None:
        # EarlyStoppingCallback needs the best checkpoint kept and loaded at the end, so
        # checkpoints follow the evaluations.
        kwargs["metric_for_best_model"] = f"eval_top1_{config.metrics[0]}"
        kwargs["greater_is_better"] = True
        kwargs["load_best_model_at_end"] = True
        kwargs["save_strategy"] = kwargs["eval_strategy"]
        if not per_epoch:
            kwargs["save_steps"] = config.eval_steps
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

    started, out, train_records, dev_records = start_run(config)
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
    batch_tokens = config.batch_size * model.config.max_pair_length if config.token_budget else None
    trainer_cls = trainer_class()
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
        batch_tokens=batch_tokens,
    )
    trainer.compute_metrics = trainer._pair_metrics
    if config.early_stopping_patience is not None:
        from transformers import EarlyStoppingCallback

        trainer.add_callback(EarlyStoppingCallback(config.early_stopping_patience))

    resume_from = resolve_resume(config.resume, out)
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
    import torch

    report["training"]["precision"] = "bf16 autocast" if trainer.args.bf16 else "fp32"
    report["training"]["torch_threads"] = torch.get_num_threads()
    report["training"]["batches"] = (
        f"token budget {batch_tokens} (padded/real {trainer.batch_sampler.padding_ratio():.2f})"
        if trainer.batch_sampler is not None
        else f"fixed, {config.batch_size} pairs"
    )
    if config.early_stopping_patience is not None:
        report["training"]["best_checkpoint"] = trainer.state.best_model_checkpoint or ""
        report["training"]["best_dev_top1"] = trainer.state.best_metric
    if trainer.args.should_save:
        write_report(out, report)
    return TrainResult(
        output_dir=out,
        metrics=final,
        train_metrics=dict(train_output.metrics),
        report=report,
    )
