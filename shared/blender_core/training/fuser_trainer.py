"""Fine-tune a GenFuser (any seq2seq model, e.g. Flan-T5) on the trained GenFuser prompt.

Each training example is one MixInstruct record: the input is GenFuser's prompt over the record's
top-K candidates (chosen by a ranker, or by a stored metric), built and cut exactly as
:meth:`GenFuser.encode_prompt <blender_core.fusion.gen_fuser.GenFuser.encode_prompt>` does at
inference; the target is the record's reference ``output``. Training runs on the Hugging Face
``Seq2SeqTrainer``; the final directory loads with ``GenFuser.from_pretrained``.

Example:
    .. code-block:: python

        from blender_core.training import FuserTrainingConfig, train_fuser

        result = train_fuser(
            FuserTrainingConfig(
                train_file="train.jsonl",
                base="google/flan-t5-small",
                output_dir="runs/fuser",
                rank_by_metric="gpt4t_pref",
                top_k=3,
            )
        )
        # GenFuser.from_pretrained("runs/fuser")
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from blender_core.data import MixRecord
from blender_core.training.pairs import unique_candidate_indices
from blender_core.training.report import TrainResult, write_report
from blender_core.training.runs import (
    common_training_kwargs,
    config_settings,
    resolve_resume,
    start_run,
)

if TYPE_CHECKING:
    from blender_core.fusion.gen_fuser import GenFuser
    from blender_core.ranking import Ranker

__all__ = ["FuserTrainingConfig", "select_top_k", "train_fuser"]


@dataclass
class FuserTrainingConfig:
    """Settings of :func:`train_fuser` (the ``blender train-fuser`` options).

    Attributes:
        train_file: MixInstruct JSONL; each record needs a reference ``output`` (records without
            one are skipped and counted in the report).
        base: The seq2seq model to fine-tune (hub id or directory, with its tokenizer).
        output_dir: Run directory: final model + tokenizer, ``checkpoint-*``, the report.
        dev_file: Optional MixInstruct JSONL for the eval loss.
        ranker: A ranker spec for :func:`blender_core.loading.load_ranker` (a PairRanker
            checkpoint, ``"consensus"``, ``"random"``) or a ``Ranker`` object, choosing the top-K.
        rank_by_metric: Choose the top-K by this stored candidate score instead.
        top_k: Candidates per prompt (distinct texts, best first).
        max_length: Prompt token budget (GenFuser's ``max_length``).
        candidate_maxlength: Per-candidate token budget (GenFuser's ``candidate_maxlength``).
        max_target_length: Reference tokens kept as the target.
        epochs, learning_rate, batch_size, grad_accum, warmup_ratio, weight_decay, seed, bf16,
        max_steps, save_steps, save_total_limit, logging_steps: The usual training arguments
            (``save_steps=None`` saves after each epoch).
        resume: ``True`` resumes from the last ``checkpoint-*`` in ``output_dir``, or a path.
        train_limit, dev_limit: Use only the first N records.
        num_threads: ``torch.set_num_threads`` for CPU runs.
        show_progress: Progress bars (ranking and training).
        training_args: Extra ``Seq2SeqTrainingArguments`` fields; they override the above.
    """

    train_file: str | Path
    base: str | Path
    output_dir: str | Path
    dev_file: str | Path | None = None
    ranker: Any = None
    rank_by_metric: str | None = None
    top_k: int = 3
    max_length: int = 1024
    candidate_maxlength: int = 128
    max_target_length: int = 128
    epochs: float = 1.0
    learning_rate: float = 1e-4
    batch_size: int = 4
    grad_accum: int = 1
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    seed: int = 42
    bf16: bool = False
    max_steps: int = -1
    save_steps: int | None = None
    save_total_limit: int | None = 2
    logging_steps: int = 10
    resume: bool | str = False
    train_limit: int | None = None
    dev_limit: int | None = None
    num_threads: int | None = None
    show_progress: bool = False
    training_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.ranker is None) == (self.rank_by_metric is None):
            raise ValueError(
                "give exactly one of ranker (a ranker spec) or rank_by_metric (a stored score) "
                "to choose the top-K candidates"
            )
        for name in ("top_k", "max_length", "candidate_maxlength", "max_target_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be >= 1")
        if not Path(self.train_file).is_file():
            raise FileNotFoundError(f"train file not found: {self.train_file}")
        if self.dev_file is not None and not Path(self.dev_file).is_file():
            raise FileNotFoundError(f"dev file not found: {self.dev_file}")


def select_top_k(
    records: Sequence[MixRecord],
    k: int,
    *,
    ranker: Ranker | None = None,
    metric: str | None = None,
) -> list[list[str]]:
    """The ``k`` best distinct candidate texts of each record, best first.

    Duplicates (same text) are dropped first. With ``metric`` the stored scores decide (ties keep
    file order); with ``ranker`` its ranking of ``record.source`` (instruction + input) decides.
    """
    if (ranker is None) == (metric is None):
        raise ValueError("give exactly one of ranker or metric")
    keep = [unique_candidate_indices(r.texts) for r in records]
    texts = [[r.texts[i] for i in idx] for r, idx in zip(records, keep, strict=True)]
    if metric is not None:
        out = []
        for record, idx, cands in zip(records, keep, texts, strict=True):
            scores = record.scores(metric)
            order = sorted(range(len(idx)), key=lambda j: (-scores[idx[j]], j))
            out.append([cands[j] for j in order[:k]])
        return out
    assert ranker is not None
    rankings = ranker.rank_batch([r.source for r in records], texts)
    return [[cands[j] for j in rk.top_k(k)] for cands, rk in zip(texts, rankings, strict=True)]


class _FuserDataset:
    """Encoded ``{"input_ids", "attention_mask", "labels"}`` examples (map-style)."""

    def __init__(self, items: list[dict[str, list[int]]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]


def _encode(
    fuser: GenFuser,
    records: Sequence[MixRecord],
    top: Sequence[Sequence[str]],
    max_target_length: int,
) -> tuple[_FuserDataset, int]:
    items = []
    skipped = 0
    for record, cands in zip(records, top, strict=True):
        if not record.output.strip() or not cands:
            skipped += 1
            continue
        ids = fuser.encode_prompt(record.instruction, list(cands), record.input)
        labels = fuser.tokenizer(
            text_target=record.output, max_length=max_target_length, truncation=True
        )["input_ids"]
        items.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(labels)})
    return _FuserDataset(items), skipped


def train_fuser(config: FuserTrainingConfig) -> TrainResult:
    """Fine-tune a GenFuser as ``config`` says; the result loads with ``GenFuser.from_pretrained``.

    Raises:
        FileNotFoundError: A data file is missing.
        KeyError: ``rank_by_metric`` names a score some candidate lacks.
        ValueError: Bad settings, or no record with a reference output.
    """
    from transformers import (
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
    )

    from blender_core.fusion.gen_fuser import GenFuser

    started, out, train_records, dev_records = start_run(config)
    ranker = None
    if config.ranker is not None:
        from blender_core.loading import load_ranker

        ranker = load_ranker(config.ranker)
    train_top = select_top_k(
        train_records, config.top_k, ranker=ranker, metric=config.rank_by_metric
    )
    dev_top = (
        select_top_k(dev_records, config.top_k, ranker=ranker, metric=config.rank_by_metric)
        if dev_records
        else []
    )
    del ranker  # free the ranker before the fuser trains

    from blender_core.hub import local_snapshot

    cached = local_snapshot(str(config.base), what="base model")  # offline: cache or one error
    base = str(cached) if cached is not None else str(config.base)
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
    model = AutoModelForSeq2SeqLM.from_pretrained(base, trust_remote_code=False)
    prompt_builder = GenFuser(
        model,
        tokenizer,
        max_length=config.max_length,
        candidate_maxlength=config.candidate_maxlength,
    )
    train_set, skipped = _encode(prompt_builder, train_records, train_top, config.max_target_length)
    if len(train_set) == 0:
        raise ValueError(f"{config.train_file}: no record has a reference output to train on")
    dev_set, dev_skipped = (
        _encode(prompt_builder, dev_records, dev_top, config.max_target_length)
        if dev_records
        else (None, 0)
    )
    if dev_set is not None and len(dev_set) == 0:
        dev_set = None

    kwargs = common_training_kwargs(config, str(out))
    kwargs.update(
        {
            "per_device_eval_batch_size": config.batch_size,
            "eval_strategy": "epoch" if dev_set is not None else "no",
            "predict_with_generate": False,
        }
    )
    kwargs.update(config.training_args)
    args = Seq2SeqTrainingArguments(**kwargs)
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=cast(Any, train_set),
        eval_dataset=cast(Any, dev_set),
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        processing_class=tokenizer,
    )
    resume_from = resolve_resume(config.resume, out)
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model(str(out))
    final = trainer.evaluate() if dev_set is not None else {}
    seconds = time.time() - started

    settings = config_settings(config)
    settings["ranker"] = str(config.ranker) if config.ranker is not None else ""
    report: dict[str, Any] = {
        "title": "GenFuser training report",
        "output_dir": str(out),
        "base": str(config.base),
        "top_k_by": f"ranker {config.ranker}"
        if config.ranker is not None
        else f"metric {config.rank_by_metric}",
        "resumed_from": resume_from or "",
        "training": {
            "train_examples": len(train_set),
            "skipped_without_reference": skipped,
            "dev_examples": len(dev_set) if dev_set is not None else 0,
            "dev_skipped_without_reference": dev_skipped,
            "optimizer_steps": int(trainer.state.global_step),
            "train_loss": float(train_output.metrics.get("train_loss", float("nan"))),
            "seconds": round(seconds, 1),
        },
        "settings": settings,
    }
    if final:
        report["dev"] = {k.removeprefix("eval_"): v for k, v in final.items()}
    if trainer.args.should_save:
        write_report(out, report)
    return TrainResult(
        output_dir=out, metrics=final, train_metrics=dict(train_output.metrics), report=report
    )
