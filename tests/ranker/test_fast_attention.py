"""The fast DeBERTa attention path: same logits as transformers' modules, same weights."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import DebertaV2Config, DebertaV2Model

from blender_core import PairRanker
from blender_core.deberta_attention import (
    FastDebertaV2Encoder,
    FastDisentangledSelfAttention,
    enable_fast_attention,
    relative_index,
)


def _backbone(**overrides) -> DebertaV2Model:
    settings = dict(
        vocab_size=300,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        relative_attention=True,
        position_buckets=16,
        max_relative_positions=-1,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        type_vocab_size=0,
    )
    settings.update(overrides)
    torch.manual_seed(0)
    return DebertaV2Model(DebertaV2Config(**settings)).eval()


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the PairRM layout (shared keys, both terms, log buckets)
        {"share_att_key": False},
        {"pos_att_type": ["c2p"]},
        {"pos_att_type": ["p2c"]},
        {"position_buckets": -1, "max_position_embeddings": 64},
    ],
)
def test_fast_path_equals_transformers(overrides, monkeypatch) -> None:
    model = _backbone(**overrides)
    ids = torch.randint(5, 300, (3, 90))
    mask = torch.ones_like(ids)
    mask[1, 40:] = 0  # padded rows
    mask[2, 75:] = 0
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
        keys = list(model.state_dict())
        assert enable_fast_attention(model)
        assert isinstance(model.encoder, FastDebertaV2Encoder)
        assert list(model.state_dict()) == keys or sorted(model.state_dict()) == sorted(keys)
        got = model(input_ids=ids, attention_mask=mask).last_hidden_state
        # A small bias budget: heads are processed one group at a time, same result.
        monkeypatch.setattr("blender_core.deberta_attention.MAX_BIAS_BYTES", 1)
        grouped = model(input_ids=ids, attention_mask=mask).last_hidden_state
    valid = mask.bool()
    assert (got - expected)[valid].abs().max() < 1e-5
    assert (grouped - expected)[valid].abs().max() < 1e-5


@pytest.mark.parametrize(
    ("buckets", "max_position", "span"), [(256, 512, 256), (-1, -1, 64), (16, 40, 16)]
)
@pytest.mark.parametrize("length", [1, 2, 7, 8, 9, 127, 128, 129, 300, 2048])
def test_relative_index_is_transformers_c2p_and_p2c_index(buckets, max_position, span, length):
    from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position

    hidden = torch.zeros(1, length, 4)
    relative = build_relative_position(
        hidden, hidden, bucket_size=buckets, max_position=max_position
    )
    relative = relative[0]
    c2p = torch.clamp(relative + span, 0, 2 * span - 1)
    p2c = torch.clamp(-relative + span, 0, 2 * span - 1).transpose(0, 1)
    ours = relative_index(length, buckets, max_position, span, torch.device("cpu"))
    assert ours.dtype == torch.long
    assert torch.equal(ours, c2p)
    assert torch.equal(ours, p2c)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_fast_path_matches_transformers(dtype) -> None:
    model = _backbone().to(dtype)
    ids = torch.randint(5, 300, (2, 70))
    mask = torch.ones_like(ids)
    mask[1, 50:] = 0
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        enable_fast_attention(model)
        got = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
    valid = mask.bool()
    # Rounding differs (one fused bias and SDPA instead of separate half-precision tensors).
    assert (got - expected)[valid].abs().max() < 0.1
    assert torch.nn.functional.cosine_similarity(got[valid], expected[valid]).min() > 0.999


def test_half_precision_gather_is_bit_identical() -> None:
    from blender_core.deberta_attention import _gather

    torch.manual_seed(0)
    index = torch.randint(0, 12, (9, 9)).expand(2, 3, 9, 9)
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        values = torch.randn(2, 3, 9, 12).to(dtype)
        values[0, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), -0.0])
        assert torch.equal(
            _gather(values, -1, index).view(torch.uint8),
            torch.gather(values, -1, index).view(torch.uint8),
        )
        transposed = torch.randn(2, 3, 9, 12).to(dtype).transpose(-1, -2)
        assert torch.equal(_gather(transposed, -2, index), torch.gather(transposed, -2, index))


def test_training_and_attention_outputs_use_transformers_code() -> None:
    model = _backbone()
    enable_fast_attention(model)
    enable_fast_attention(model)  # idempotent
    attention = model.encoder.layer[0].attention.self
    assert isinstance(attention, FastDisentangledSelfAttention)
    ids = torch.randint(5, 300, (2, 20))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True)
    assert out.attentions is not None and out.attentions[0].shape == (2, 4, 20, 20)
    model.train()
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.sum()
    loss.backward()
    assert attention.query_proj.weight.grad is not None


def test_ranker_uses_it_and_keeps_the_logits(tiny_pairrm_dir) -> None:
    fast = PairRanker.from_pretrained(tiny_pairrm_dir, dtype="float32")
    slow = PairRanker.from_pretrained(tiny_pairrm_dir, dtype="float32", fast_attention=False)
    assert isinstance(fast.model.pretrained_model.encoder, FastDebertaV2Encoder)
    assert not isinstance(slow.model.pretrained_model.encoder, FastDebertaV2Encoder)
    cands = ["hi!", "go away " * 30, "hello, how can I help?", ""]
    a = fast.rank("Say hi", cands)
    b = slow.rank("Say hi", cands)
    assert a.order == b.order
    assert a.scores == pytest.approx(b.scores, abs=1e-5)


def test_mixed_precision_fast_path_matches_transformers() -> None:
    """bf16 linear layers under autocast, fp32 elsewhere: the bias takes the scores' dtype."""
    from blender_core.devices import choose_precision, compute_context, place_module

    cpu = torch.device("cpu")
    precision = choose_precision("bf16-mixed", cpu)
    model = place_module(_backbone(), precision, cpu)
    ids = torch.randint(5, 300, (2, 70))
    mask = torch.ones_like(ids)
    mask[1, 50:] = 0
    with torch.inference_mode(), compute_context(precision, cpu):
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
        enable_fast_attention(model)
        got = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert got.dtype == torch.float32 and expected.dtype == torch.float32
    valid = mask.bool()
    assert torch.isfinite(got[valid]).all()
    assert (got - expected)[valid].abs().max() < 0.1
    assert torch.nn.functional.cosine_similarity(got[valid], expected[valid]).min() > 0.999


def _position_scores(dtype, terms, length=37, batch=2, heads=3, span=16):
    from blender_core.deberta_attention import _KeyBias, relative_table

    generator = torch.Generator().manual_seed(0)
    c2p = torch.randn(batch, heads, length, 2 * span, generator=generator).to(dtype)
    p2c = torch.randn(batch, heads, length, 2 * span, generator=generator).to(dtype)
    additive = torch.zeros(batch, 1, 1, length, dtype=dtype)
    additive[1, ..., 30:] = torch.finfo(dtype).min  # a padded row
    table = relative_table(length, 8, 24, span, torch.device("cpu"))
    return (
        c2p if "c2p" in terms else None,
        p2c if "p2c" in terms else None,
        _KeyBias(additive, table),
    )


def _copies(*tensors):
    return tuple(None if t is None else t.clone() for t in tensors)


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("clang++")), reason="no C++ compiler")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("terms", [("c2p", "p2c"), ("c2p",), ("p2c",)])
def test_compiled_bias_gives_the_eager_bits(dtype, terms, monkeypatch) -> None:
    """The opt-in: one inductor loop, the same bits as the eager gathers and adds."""
    from blender_core import deberta_attention as da

    monkeypatch.setenv(da.COMPILE_ENV, "1")
    with torch.inference_mode():
        c2p, p2c, mask = _position_scores(dtype, terms)
        eager = da._bias_eager(*_copies(c2p, p2c), mask)  # consumes p2c
        compiled = da._build_bias(c2p, p2c, mask)
        shorter = _position_scores(dtype, terms, length=23, batch=3)  # dynamic shapes
        eager_2 = da._bias_eager(*_copies(*shorter[:2]), shorter[2])
        compiled_2 = da._build_bias(*shorter)
    assert not da._compiled_bias._failed  # it compiled here, it did not fall back
    assert ("c2p" in terms, "p2c" in terms, dtype) in da._compiled_bias._warmed
    assert compiled.shape == eager.shape == (2, 3, 37, 37)
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    assert torch.equal(compiled.view(bits), eager.view(bits))
    assert torch.equal(compiled_2, eager_2)


def test_compile_is_opt_in_and_falls_back(monkeypatch, caplog) -> None:
    from blender_core import deberta_attention as da

    c2p, p2c, mask = _position_scores(torch.float32, ("c2p", "p2c"))
    with torch.inference_mode():
        eager = da._bias_eager(*_copies(c2p, p2c), mask)
        # Not opted in (the default) or opted out: the compiled builder is never called.
        monkeypatch.setattr(da, "_compiled_bias", None)
        monkeypatch.delenv(da.COMPILE_ENV, raising=False)
        assert torch.equal(da._build_bias(*_copies(c2p, p2c), mask), eager)
        monkeypatch.setenv(da.COMPILE_ENV, "0")
        assert torch.equal(da._build_bias(*_copies(c2p, p2c), mask), eager)
        # A compiler that fails: one warning, the eager result, no further attempts.
        monkeypatch.setenv(da.COMPILE_ENV, "1")
        builder = da._CompiledBias()
        monkeypatch.setattr(da, "_compiled_bias", builder)
        calls = []

        def broken(*args, **kwargs):
            calls.append(1)
            raise RuntimeError("no compiler here")

        monkeypatch.setattr(torch, "compile", broken)
        with caplog.at_level("WARNING", logger=da.__name__):
            assert torch.equal(da._build_bias(*_copies(c2p, p2c), mask), eager)
            assert torch.equal(da._build_bias(*_copies(c2p, p2c), mask), eager)
    assert builder._failed and not builder.available
    assert len(calls) == 1
    assert sum("no compiler here" in r.getMessage() for r in caplog.records) == 1
