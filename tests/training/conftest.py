"""Shared fixtures of the training tests: learnable toy data and a tiny BERT backbone."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from blender_core.data import MixCandidate, MixRecord, write_mixinstruct

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def toy_records(n: int, seed: int) -> list[MixRecord]:
    """Four candidates per instruction; the two that carry a ``!`` after every word score 0.9.

    The other two score 0.1, so the only untied pairs are good-vs-bad and the rule is learnable.
    """
    rng = random.Random(seed)
    records = []
    for k in range(n):
        cands = []
        for i in range(4):
            good = i < 2
            words = [
                "".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 4)))
                for _ in range(rng.randint(3, 5))
            ]
            text = (" ! ".join(words) + " !") if good else " ".join(words)
            cands.append(MixCandidate(model=f"m{i}", text=text, scores={"q": 0.9 if good else 0.1}))
        rng.shuffle(cands)
        records.append(
            MixRecord(
                id=f"toy{k}",
                instruction="say " + rng.choice(LETTERS) * 3,
                candidates=tuple(cands),
                output="ok " + " ".join(rng.choice(LETTERS) for _ in range(3)),
            )
        )
    return records


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(train.jsonl with 64 records, dev.jsonl with 16 records)."""
    root = tmp_path_factory.mktemp("toy_data")
    write_mixinstruct(root / "train.jsonl", toy_records(64, 0))
    write_mixinstruct(root / "dev.jsonl", toy_records(16, 1))
    return root / "train.jsonl", root / "dev.jsonl"


@pytest.fixture(scope="session")
def tiny_bert_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random plain BERT encoder with a wordpiece tokenizer (no PairRanker tokens).

    Built from the tokenizer of the tiny PairRanker checkpoint, with the usual BERT init, so
    that ``PairRankerModel.from_backbone`` is exercised as with a real encoder.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from blender_core.testing import make_tiny_pairranker

    ckpt = make_tiny_pairranker(
        tmp_path_factory.mktemp("tiny_bert_ckpt"), layout="hf", backbone="bert"
    )
    tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
    out = tmp_path_factory.mktemp("tiny_bert_backbone")
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture
def blender_cli() -> Callable[[list[str]], Any]:
    """Runs ``blender <args>`` in this process (Typer's ``CliRunner``); returns its result."""
    from typer.testing import CliRunner

    from blender_core.cli import _register_commands, app

    _register_commands()
    runner = CliRunner()
    return lambda args: runner.invoke(app, args)
