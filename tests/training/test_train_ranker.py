"""End to end: a tiny ranker learns a learnable preference; checkpoints, resume, report, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from small_configs import ranker_config
from suite_helpers import cli_args

from blender_core.data import read_mixinstruct
from blender_core.training.ranker_trainer import (
    evaluate_rankings,
    find_last_checkpoint,
    load_start_model,
    rank_with_model,
    train_ranker,
)

pytest.importorskip("torch")


@pytest.mark.slow
def test_tiny_ranker_learns_the_marker(
    toy_data: tuple[Path, Path], tiny_bert_backbone: Path, tmp_path: Path
) -> None:
    from blender_core import PairRanker

    train, dev = toy_data
    config = ranker_config(train, dev, tiny_bert_backbone, tmp_path / "run")
    dev_records = read_mixinstruct(dev)

    model, tokenizer, kind = load_start_model(config)
    assert kind == "backbone"
    before = evaluate_rankings(dev_records, rank_with_model(model, tokenizer, dev_records), ["q"])
    assert 0.2 < before["rank_pairwise_accuracy"] < 0.8

    result = train_ranker(config)
    after = result.metrics["eval_rank_pairwise_accuracy"]
    assert after > 0.85, result.metrics
    assert after > before["rank_pairwise_accuracy"] + 0.2
    assert result.metrics["eval_top1_q"] > 0.8  # good answers score 0.9, bad 0.1

    # The saved run directory is a PairRanker checkpoint giving the same numbers.
    ranker = PairRanker.from_pretrained(result.output_dir)
    rankings = ranker.rank_batch([r.source for r in dev_records], [r.texts for r in dev_records])
    again = evaluate_rankings(dev_records, rankings, ["q"])
    assert again["rank_pairwise_accuracy"] == pytest.approx(after)

    report = json.loads((result.output_dir / "report.json").read_text())
    assert report["training"]["optimizer_steps"] == result.report["training"]["optimizer_steps"]
    assert report["dev_top1_vs_baselines"][0]["oracle"] == pytest.approx(0.9)
    assert "ranker_top1" in (result.output_dir / "report.md").read_text()


def test_checkpoints_resume_and_bce(
    toy_data: tuple[Path, Path], tiny_bert_backbone: Path, tmp_path: Path
) -> None:
    from blender_core import PairRanker

    train, dev = toy_data
    out = tmp_path / "run"
    common = {
        "loss": "BCE",
        "pair_mode": "random",
        "num_pairs": 2,
        "save_steps": 2,
        "eval_steps": 4,
        "eval_rank_limit": 2,
        "dev_limit": 4,
        "train_limit": 16,
        "training_args": {},
    }
    first = train_ranker(ranker_config(train, dev, tiny_bert_backbone, out, max_steps=4, **common))
    assert first.train_metrics["train_loss"] > 0
    assert first.metrics["eval_ranked_records"] == 4  # the final evaluation ranks every record
    ckpt = find_last_checkpoint(out)
    assert ckpt is not None and ckpt.name == "checkpoint-4"
    PairRanker.from_pretrained(ckpt)  # each checkpoint loads by itself

    second = train_ranker(
        ranker_config(train, dev, tiny_bert_backbone, out, max_steps=6, resume=True, **common)
    )
    assert second.report["resumed_from"].endswith("checkpoint-4")
    assert second.report["training"]["optimizer_steps"] == 6
    evals = second.report["evaluations"]
    assert evals and all("pairwise_accuracy" in h for h in evals)

    # continued training of a PairRanker checkpoint (the run directory)
    third = train_ranker(
        ranker_config(
            train, None, out, tmp_path / "cont", max_steps=2, **{**common, "eval_steps": None}
        )
    )
    assert third.report["started_from"].startswith("checkpoint:")
    assert third.metrics == {}


def test_config_errors(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    train, dev = toy_data
    with pytest.raises(ValueError, match="unknown loss"):
        ranker_config(train, dev, tmp_path, tmp_path, loss="hinge")
    with pytest.raises(ValueError, match="unknown pair mode"):
        ranker_config(train, dev, tmp_path, tmp_path, pair_mode="best")
    with pytest.raises(ValueError, match="at least one metric"):
        ranker_config(train, dev, tmp_path, tmp_path, metrics=[])
    with pytest.raises(FileNotFoundError, match="train file"):
        ranker_config(tmp_path / "missing.jsonl", dev, tmp_path, tmp_path)
    with pytest.raises(ValueError, match="rank strategy"):
        ranker_config(train, dev, tmp_path, tmp_path, rank_strategy="best")


def test_missing_metric_is_named(
    toy_data: tuple[Path, Path], tiny_bert_backbone: Path, tmp_path: Path
) -> None:
    train, dev = toy_data
    with pytest.raises(KeyError, match="has no score 'gpt4_pref'"):
        train_ranker(
            ranker_config(train, dev, tiny_bert_backbone, tmp_path / "x", metrics=["gpt4_pref"])
        )


def test_cli_train_ranker(
    toy_data: tuple[Path, Path], tiny_bert_backbone: Path, tmp_path: Path, blender_cli: Any
) -> None:
    train, dev = toy_data
    out = tmp_path / "cli"
    options: dict[str, Any] = dict(
        backbone=tiny_bert_backbone, metric="q", out=out, dev=dev, max_steps=2, batch_size=4,
        source_maxlength=8, candidate_maxlength=16, dev_limit=3, rank_strategy="bubble",
        eval_rank_limit=0, threads=1, no_progress=True, training_arg="logging_steps=1",
    )  # fmt: skip
    result = blender_cli(cli_args("train-ranker", train, **options))
    assert result.exit_code == 0, result.output
    assert "PairRanker training report" in result.output
    assert (out / "model.safetensors").is_file()
    report = json.loads((out / "report.json").read_text())
    # no ranking at periodic evaluations, but the final one ranks every dev record
    assert report["dev"]["ranked_records"] == 3
    assert 0.0 <= report["dev_top1_vs_baselines"][0]["ranker_top1"] <= 1.0

    bad = blender_cli(cli_args("train-ranker", train, **{**options, "metric": "nope"}))
    assert bad.exit_code == 2
    assert "has no score 'nope'" in bad.output
