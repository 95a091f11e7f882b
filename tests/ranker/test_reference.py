"""Logits equal a plain computation from the spec (backbone + head on the documented layout)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, DebertaV2Config, DebertaV2Model

LONG = " ".join(f"word{i} the quick brown fox jumps over the lazy dog" for i in range(30))


def spec_logit(path: Path, source: str, a: str, b: str, s_max: int, c_max: int) -> float:
    """logit(a, b) as pairrm-format.md describes it, from the checkpoint files alone."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    state = load_file(str(path / "model.safetensors"))
    backbone_cfg = json.loads((path / "backbone" / "config.json").read_text())
    backbone_cfg["vocab_size"] = state["pretrained_model.embeddings.word_embeddings.weight"].shape[
        0
    ]
    backbone = DebertaV2Model(DebertaV2Config(**backbone_cfg)).eval()
    backbone.load_state_dict(
        {
            k.removeprefix("pretrained_model."): v
            for k, v in state.items()
            if k.startswith("pretrained_model.")
        }
    )
    # The hf layout's README: encode "<|prefix|>" + text with [CLS]/[SEP], truncated per example.
    s_ids = tokenizer.encode("<|source|>" + source, max_length=s_max, truncation=True)
    limit = c_max + (s_max - len(s_ids)) // 2
    a_ids = tokenizer.encode("<|candidate1|>" + a, max_length=limit, truncation=True)
    b_ids = tokenizer.encode("<|candidate2|>" + b, max_length=limit, truncation=True)
    ids = torch.tensor([s_ids + a_ids + b_ids])
    with torch.no_grad():
        hidden = backbone(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
    h_s, h_1, h_2 = hidden[1], hidden[len(s_ids) + 1], hidden[len(s_ids) + len(a_ids) + 1]

    def head(x: torch.Tensor) -> torch.Tensor:
        inner = torch.tanh(state["head_layer.1.weight"] @ x + state["head_layer.1.bias"])
        return state["head_layer.4.weight"] @ inner + state["head_layer.4.bias"]

    return float((head(torch.cat([h_s, h_1])) - head(torch.cat([h_s, h_2]))).mean())


CASES = [
    ("hello!", "hi!", "f**k off!"),
    ("I love you!", "I hate you!", "I love you, too!"),
    ("Write a poem about the sea.", "The sea is blue and the sky is wide.", ""),
]


@pytest.mark.parametrize(("source", "a", "b"), CASES)
def test_logit_matches_spec_untruncated(ranker, tiny_pairrm_dir, source, a, b) -> None:
    expected = spec_logit(tiny_pairrm_dir, source, a, b, 1224, 412)
    assert ranker.compare(source, a, b, both_directions=False) == pytest.approx(expected, abs=1e-5)
    reverse = spec_logit(tiny_pairrm_dir, source, b, a, 1224, 412)
    assert ranker.compare(source, a, b) == pytest.approx(expected - reverse, abs=1e-5)


@pytest.mark.parametrize(
    ("source", "a", "b"),
    [
        (LONG, LONG, "short answer"),  # source cut to 16, candidates to 12
        ("Say hi", LONG, LONG[::-1]),  # short source: candidates get its unused budget
        ("Say hi", "hi!", LONG),
    ],
)
def test_logit_matches_spec_truncated(short_ranker, tiny_pairrm_dir, source, a, b) -> None:
    ids = short_ranker.encoder.encode_pair(source, a, b)
    assert len(ids) > 16  # really truncated: a long text would give hundreds of tokens
    expected = spec_logit(tiny_pairrm_dir, source, a, b, 16, 12)
    assert short_ranker.compare(source, a, b, both_directions=False) == pytest.approx(
        expected, abs=1e-5
    )


def test_matrix_entries_match_spec(short_ranker, tiny_pairrm_dir) -> None:
    cands = ["hi!", LONG, "bye"]
    ranking = short_ranker.rank("Say hi " + LONG, cands)
    assert ranking.matrix is not None
    for i in range(3):
        for j in range(3):
            if i != j:
                expected = spec_logit(tiny_pairrm_dir, "Say hi " + LONG, cands[i], cands[j], 16, 12)
                assert ranking.matrix[i][j] == pytest.approx(expected, abs=1e-5)


def test_padding_does_not_change_logits(ranker) -> None:
    encoder, model = ranker.encoder, ranker.model
    medium = LONG[:1200]
    seqs = encoder.encode_pairs(["Say hi", "Say hi " + medium], ["hi!", medium], ["go away", "bye"])
    assert len(seqs[0]) < len(seqs[1]) // 4
    with torch.inference_mode():
        together = model.pair_logits(**encoder.collate(seqs))
        alone = [float(model.pair_logits(**encoder.collate([s]))[0]) for s in seqs]
        extra_pad = model.pair_logits(**encoder.collate(seqs, pad_to_multiple_of=256))
    assert together.tolist() == pytest.approx(alone, abs=1e-5)
    assert extra_pad.tolist() == pytest.approx(alone, abs=1e-5)
