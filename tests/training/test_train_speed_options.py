"""Faster steps and early stopping: token-budget batches, bf16 by the hardware, dev top-1 stop."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
from small_configs import ranker_config

from blender_core.training import runs
from blender_core.training.ranker_config import RankerTrainingConfig
from blender_core.training.ranker_run import train_ranker

pytest.importorskip("torch")


# Fast steps: one epoch of small fixed batches, fp32.
_config = partial(ranker_config, epochs=1, batch_size=4, bf16=False)


def test_token_budget_packs_more_short_pairs_per_step(
    toy_data: tuple[Path, Path], tiny_bert_backbone: Path, tmp_path: Path
) -> None:
    train, _ = toy_data
    fixed = train_ranker(
        _config(train, None, tiny_bert_backbone, tmp_path / "f", token_budget=False)
    )
    budget = train_ranker(_config(train, None, tiny_bert_backbone, tmp_path / "b"))
    pairs = fixed.report["training"]["pairs_per_epoch"]
    assert fixed.report["training"]["optimizer_steps"] == -(-pairs // 4)
    # Toy pairs are far shorter than the 56-token maximum: a 4 x 56 budget holds more of them.
    assert (
        budget.report["training"]["optimizer_steps"] < fixed.report["training"]["optimizer_steps"]
    )
    assert budget.report["training"]["batches"].startswith("token budget 224 (padded/real")
    assert fixed.report["training"]["batches"] == "fixed, 4 pairs"
    assert fixed.report["training"]["precision"] == "fp32"
    assert fixed.report["training"]["torch_threads"] == 1


def test_early_stopping_on_dev_top1_keeps_the_best(
    toy_data: tuple[Path, Path], tiny_bert_backbone: Path, tmp_path: Path
) -> None:
    train, dev = toy_data
    config = _config(
        train,
        dev,
        tiny_bert_backbone,
        tmp_path / "es",
        epochs=20,
        batch_size=16,
        eval_steps=3,
        eval_rank_limit=8,
        early_stopping_patience=1,
        save_total_limit=None,
        training_args={},
    )
    result = train_ranker(config)
    training = result.report["training"]
    full = 20 * -(-training["pairs_per_epoch"] // 16)
    assert training["optimizer_steps"] < full  # stopped early (the toy rule is learnt fast)
    assert training["best_checkpoint"] and training["best_dev_top1"] > 0.5
    report = json.loads((result.output_dir / "report.json").read_text())
    assert report["training"]["best_dev_top1"] == training["best_dev_top1"]


def test_early_stopping_needs_a_ranked_dev(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    train, dev = toy_data
    with pytest.raises(ValueError, match="dev top-1"):
        RankerTrainingConfig(train, "b", ["q"], tmp_path, early_stopping_patience=2)
    with pytest.raises(ValueError, match="dev top-1"):
        RankerTrainingConfig(
            train, "b", ["q"], tmp_path, dev_file=dev, eval_rank_limit=0, early_stopping_patience=2
        )
    with pytest.raises(ValueError, match=">= 1"):
        RankerTrainingConfig(train, "b", ["q"], tmp_path, dev_file=dev, early_stopping_patience=0)


def test_bf16_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from blender_core import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    native = devices.CpuBf16Support(native=True, flags=("avx512_bf16",), capability="AVX512")
    emulated = devices.CpuBf16Support(native=False, flags=(), capability="AVX2")
    monkeypatch.setattr(devices, "cpu_bf16_support", lambda: native)
    assert runs.resolve_bf16(None) is True
    assert runs.precision_kwargs(None) == {"bf16": True, "use_cpu": True}
    monkeypatch.setattr(devices, "cpu_bf16_support", lambda: emulated)
    assert runs.resolve_bf16(None) is False
    assert runs.precision_kwargs(None) == {"bf16": False}
    assert runs.precision_kwargs(True) == {"bf16": True, "use_cpu": True}
    assert runs.resolve_bf16(False) is False
