"""``blender train-ranker`` and ``blender train-fuser``: train PairRanker and GenFuser models.

Both read MixInstruct JSONL, train with the Hugging Face Trainer (progress bars, checkpoints
that ``--resume`` picks up, seeds) and end with a short report printed and written to
``report.json``/``report.md`` in the output directory.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from blender_core.cli import app
from blender_core.cli._errors import cli_errors, error_line

__all__ = ["parse_training_args", "train_fuser_command", "train_ranker_command"]


def parse_training_args(items: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict; values are Python/JSON literals when they parse, else str."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key:
            raise typer.BadParameter(f"--training-arg expects KEY=VALUE, got {item!r}")
        value: Any
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                value = raw
        out[key] = value
    return out


# Options both commands take, with the same meaning (each command keeps its own default).
_Out = Annotated[Path, typer.Option(help="Run directory (model, checkpoints, report).")]
_CandidateMaxlength = Annotated[int, typer.Option(help="Tokens per candidate.")]
_Epochs = Annotated[float, typer.Option(help="Passes over the training pairs.")]
_LearningRate = Annotated[float, typer.Option(help="Learning rate.")]
_GradAccum = Annotated[int, typer.Option(help="Gradient accumulation steps.")]
_WarmupRatio = Annotated[
    float, typer.Option(help="Share of the steps with a rising learning rate.")
]
_WeightDecay = Annotated[float, typer.Option(help="AdamW weight decay.")]
_MaxSteps = Annotated[int, typer.Option(help="Stop after N steps (-1: epochs).")]
_SaveSteps = Annotated[
    int | None, typer.Option(help="Checkpoint every N steps (default: each epoch).")
]
_Resume = Annotated[bool, typer.Option(help="Resume from the last checkpoint in --out.")]
_TrainLimit = Annotated[int | None, typer.Option(help="First N train records.")]
_DevLimit = Annotated[int | None, typer.Option(help="First N dev records.")]
_Threads = Annotated[
    int | None, typer.Option(help="torch CPU threads (default: the cores the load leaves free).")
]
_DeepSpeed = Annotated[str | None, typer.Option(help="DeepSpeed config (JSON path).")]
_Progress = Annotated[bool, typer.Option(help="Progress bars.")]

#: A command parameter -> the config field it sets, where the names differ (the others match).
_CONFIG_FIELDS = {
    "data": "train_file",
    "out": "output_dir",
    "dev": "dev_file",
    "metric": "metrics",
    "lr": "learning_rate",
    "early_stopping": "early_stopping_patience",
    "threads": "num_threads",
    "progress": "show_progress",
}


def _extra_training_args(items: list[str] | None, deepspeed: str | None) -> dict[str, Any]:
    """``--training-arg`` items parsed, plus ``--deepspeed`` when given."""
    extra = parse_training_args(items)
    if deepspeed:
        extra["deepspeed"] = deepspeed
    return extra


def _fail(exc: BaseException) -> typer.Exit:
    typer.echo(error_line(exc), err=True)
    return typer.Exit(code=2)


def _train(
    make_config: Callable[..., Any], train: Callable[[Any], object], options: dict[str, Any]
) -> None:
    """Check ``--out``, build the config from a command's options, train, print the report.

    Args:
        make_config: The config class (``RankerTrainingConfig``, ``FuserTrainingConfig``).
        train: Its training function.
        options: The command's parameters by name (:data:`_CONFIG_FIELDS` renames them).
    """
    from blender_core.io import check_output_dir

    settings = dict(options)
    out = check_output_dir(settings["out"])  # a bad --out fails now, not after training
    settings["training_args"] = _extra_training_args(
        settings.pop("training_arg"), settings.pop("deepspeed")
    )
    if "max_minutes" in settings:
        minutes = settings.pop("max_minutes")
        settings["max_train_seconds"] = minutes * 60 if minutes else None
    try:
        train(make_config(**{_CONFIG_FIELDS.get(k, k): v for k, v in settings.items()}))
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise _fail(exc) from exc
    sys.stdout.write((out / "report.md").read_text(encoding="utf-8"))


@app.command("train-ranker")
@cli_errors
def train_ranker_command(
    data: Annotated[Path, typer.Argument(help="MixInstruct JSONL with candidate scores.")],
    backbone: Annotated[
        str,
        typer.Option(help="Encoder (DeBERTa-v3, BERT, MiniLM...) or a PairRanker checkpoint."),
    ],
    metric: Annotated[list[str], typer.Option(help="Score to learn (repeat for several tasks).")],
    out: _Out,
    dev: Annotated[Path | None, typer.Option(help="Dev MixInstruct JSONL.")] = None,
    loss: Annotated[
        str, typer.Option(help="instructgpt, bce or margin (weighted by the score gap).")
    ] = "instructgpt",
    pair_mode: Annotated[
        str, typer.Option(help="random, top-bottom, all or informative (gap- and top-weighted).")
    ] = "random",
    num_pairs: Annotated[int, typer.Option(help="Pairs per instruction.")] = 5,
    min_score_gap: Annotated[
        float, typer.Option(help="Score gaps up to this count as ties.")
    ] = 0.0,
    include_ties: Annotated[bool, typer.Option(help="Train on tied pairs too.")] = False,
    source_maxlength: Annotated[int, typer.Option(help="Source tokens.")] = 128,
    candidate_maxlength: _CandidateMaxlength = 128,
    epochs: _Epochs = 1.0,
    lr: _LearningRate = 3e-5,
    batch_size: Annotated[int, typer.Option(help="Pairs per device batch.")] = 8,
    grad_accum: _GradAccum = 1,
    warmup_ratio: _WarmupRatio = 0.05,
    weight_decay: _WeightDecay = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of pair sampling, init and data order.")] = 42,
    bf16: Annotated[
        bool | None,
        typer.Option(
            "--bf16/--no-bf16",
            help="bf16 autocast (default: on where the GPU or CPU computes bf16 natively).",
        ),
    ] = None,
    token_budget: Annotated[
        bool,
        typer.Option(help="Length-bucketed batches of batch-size x max pair length tokens."),
    ] = True,
    early_stopping: Annotated[
        int | None,
        typer.Option(help="Stop after N evaluations without a better dev top-1 (keeps the best)."),
    ] = None,
    max_steps: _MaxSteps = -1,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop training after this wall time.")
    ] = None,
    eval_steps: Annotated[
        int | None, typer.Option(help="Evaluate every N steps (default: each epoch).")
    ] = None,
    save_steps: _SaveSteps = None,
    eval_rank_limit: Annotated[
        int | None,
        typer.Option(help="Dev records ranked at periodic evals (0: none; final: all)."),
    ] = None,
    rank_strategy: Annotated[
        str, typer.Option(help="max_logits, max_wins or bubble (dev top-1).")
    ] = "max_logits",
    resume: _Resume = False,
    train_limit: _TrainLimit = None,
    dev_limit: _DevLimit = None,
    threads: _Threads = None,
    deepspeed: _DeepSpeed = None,
    training_arg: Annotated[
        list[str] | None,
        typer.Option(help="Extra TrainingArguments field, KEY=VALUE (repeatable)."),
    ] = None,
    progress: _Progress = True,
) -> None:
    """Train a PairRanker on MixInstruct data (Hugging Face Trainer)."""
    options = dict(locals())  # the parameters only: taken before anything else is bound
    from blender_core.training import RankerTrainingConfig, train_ranker

    _train(RankerTrainingConfig, train_ranker, options)


@app.command("train-fuser")
@cli_errors
def train_fuser_command(
    data: Annotated[Path, typer.Argument(help="MixInstruct JSONL with reference outputs.")],
    base: Annotated[str, typer.Option(help="Seq2seq model to fine-tune (e.g. a Flan-T5).")],
    out: _Out,
    ranker: Annotated[
        str | None,
        typer.Option(help="Ranker choosing the top-K (PairRanker path/id, consensus, random)."),
    ] = None,
    rank_by_metric: Annotated[
        str | None, typer.Option(help="Choose the top-K by this stored score instead.")
    ] = None,
    top_k: Annotated[int, typer.Option(help="Candidates per prompt.")] = 3,
    dev: Annotated[Path | None, typer.Option(help="Dev MixInstruct JSONL (eval loss).")] = None,
    max_length: Annotated[int, typer.Option(help="Prompt tokens.")] = 1024,
    candidate_maxlength: _CandidateMaxlength = 128,
    max_target_length: Annotated[int, typer.Option(help="Target tokens.")] = 128,
    epochs: _Epochs = 1.0,
    lr: _LearningRate = 1e-4,
    batch_size: Annotated[int, typer.Option(help="Prompts per device batch.")] = 4,
    grad_accum: _GradAccum = 1,
    warmup_ratio: _WarmupRatio = 0.0,
    weight_decay: _WeightDecay = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of initialisation and data order.")] = 42,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast.")] = False,
    max_steps: _MaxSteps = -1,
    save_steps: _SaveSteps = None,
    resume: _Resume = False,
    train_limit: _TrainLimit = None,
    dev_limit: _DevLimit = None,
    threads: _Threads = None,
    deepspeed: _DeepSpeed = None,
    training_arg: Annotated[
        list[str] | None,
        typer.Option(help="Extra Seq2SeqTrainingArguments field, KEY=VALUE (repeatable)."),
    ] = None,
    progress: _Progress = True,
) -> None:
    """Fine-tune a GenFuser: prompt over the top-K candidates, target = reference output."""
    options = dict(locals())  # the parameters only: taken before anything else is bound
    from blender_core.training.fuser_trainer import FuserTrainingConfig, train_fuser

    _train(FuserTrainingConfig, train_fuser, options)
