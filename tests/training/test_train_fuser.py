"""train-fuser end to end on a tiny T5; top-K selection; the output loads as a GenFuser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from suite_helpers import cli_args

from blender_core.data import read_mixinstruct
from blender_core.training.fuser_trainer import FuserTrainingConfig, select_top_k, train_fuser

pytest.importorskip("torch")


def test_select_top_k_by_metric_drops_duplicates(toy_data: tuple[Path, Path]) -> None:
    train, _ = toy_data
    records = read_mixinstruct(train, limit=5)
    top = select_top_k(records, 2, metric="q")
    for record, texts in zip(records, top, strict=True):
        assert len(texts) == 2 and all("!" in t for t in texts)
        assert set(texts) <= set(record.texts)
    with pytest.raises(ValueError, match="exactly one"):
        select_top_k(records, 2)


def test_select_top_k_by_ranker(toy_data: tuple[Path, Path]) -> None:
    from blender_core.ranking import BaseRanker, Ranking

    class LongestFirst(BaseRanker):
        def rank_batch(self, instructions, candidate_lists):
            return [Ranking.from_scores([len(c) for c in cands]) for cands in candidate_lists]

    train, _ = toy_data
    records = read_mixinstruct(train, limit=3)
    top = select_top_k(records, 1, ranker=LongestFirst())
    assert [t[0] for t in top] == [max(r.texts, key=len) for r in records]


def test_train_fuser_end_to_end(
    toy_data: tuple[Path, Path], tiny_genfuser_dir: Path, tmp_path: Path
) -> None:
    from blender_core import GenFuser

    train, dev = toy_data
    out = tmp_path / "fuser"
    result = train_fuser(
        FuserTrainingConfig(
            train_file=train,
            dev_file=dev,
            base=tiny_genfuser_dir,
            output_dir=out,
            rank_by_metric="q",
            top_k=3,
            max_length=96,
            candidate_maxlength=16,
            max_target_length=16,
            max_steps=3,
            batch_size=4,
            learning_rate=1e-3,
            train_limit=12,
            dev_limit=4,
            num_threads=1,
        )
    )
    assert result.train_metrics["train_loss"] > 0
    assert "eval_loss" in result.metrics
    report = json.loads((out / "report.json").read_text())
    assert report["training"]["train_examples"] == 12
    assert report["top_k_by"] == "metric q"
    fuser = GenFuser.from_pretrained(out)
    text = fuser.fuse("say hi", ["hi !", "hello !"], max_new_tokens=4, num_beams=1)
    assert isinstance(text, str)


def test_cli_train_fuser(
    toy_data: tuple[Path, Path], tiny_genfuser_dir: Path, tmp_path: Path, blender_cli: Any
) -> None:
    from blender_core import GenFuser

    train, _ = toy_data
    out = tmp_path / "cli_fuser"
    options: dict[str, Any] = dict(
        base=tiny_genfuser_dir, out=out, ranker="random", top_k=2, max_steps=2, batch_size=2,
        train_limit=4, max_length=64, threads=1, no_progress=True,
    )  # fmt: skip
    result = blender_cli(cli_args("train-fuser", train, **options))
    assert result.exit_code == 0, result.output
    assert "GenFuser training report" in result.output
    GenFuser.from_pretrained(out)

    neither = blender_cli(cli_args("train-fuser", train, **{**options, "ranker": None}))
    assert neither.exit_code == 2
    assert "exactly one of ranker" in neither.output
