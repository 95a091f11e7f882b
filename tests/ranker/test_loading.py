"""Loading the three published layouts strictly, refusing foreign weights, save/load round trips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from blender_core import PairRanker
from blender_core.modeling import CheckpointError, PairRankerConfig, PairRankerModel, detect_layout

TEXTS = ("Say hi", ["hi!", "go away", "hello, how can I help?"])


def _state(path: Path) -> dict[str, torch.Tensor]:
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(path / "model.safetensors"))
    return torch.load(path / "pytorch_model.bin", weights_only=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize("layout", ["pairrm", "hf", "legacy"])
@pytest.mark.parametrize("backbone", ["deberta", "bert"])
def test_each_layout_loads_strictly(tiny_dirs, layout, backbone) -> None:
    path = tiny_dirs[(layout, backbone)]
    assert detect_layout(path) == layout
    model, tokenizer = PairRankerModel.from_pretrained(path)
    # Every weight in the file is used, every model weight comes from the file.
    state = _state(path)
    ignored = {"pretrained_model.embeddings.position_ids", "embeddings.position_ids"}
    file_keys = {
        k if k.startswith(("pretrained_model.", "head_layer.")) else "pretrained_model." + k
        for k in state
        if k not in ignored
    }
    assert file_keys == set(model.state_dict())
    for key, value in model.state_dict().items():
        stored = state.get(key, state.get(key.removeprefix("pretrained_model.")))
        assert torch.equal(value, stored), key
    assert not model.training
    vocab = tokenizer.get_vocab()
    ids = [vocab[t] for t in ("<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>")]
    assert ids == list(range(len(tokenizer) - 4, len(tokenizer)))
    assert model.config.prefix_ids == tuple(ids[:3])
    if backbone == "deberta":
        assert vocab["[MASK]"] == len(tokenizer) - 5  # [MASK] then the four tokens, as in PairRM


def test_published_config_values(tiny_dirs) -> None:
    pairrm = PairRankerConfig.from_pretrained(tiny_dirs[("pairrm", "deberta")])
    assert (pairrm.source_maxlength, pairrm.candidate_maxlength) == (1224, 412)
    assert pairrm.backbone.model_type == "deberta-v2"
    legacy = PairRankerConfig.from_pretrained(tiny_dirs[("legacy", "deberta")])
    assert (legacy.source_maxlength, legacy.candidate_maxlength) == (128, 128)
    raw = json.loads((tiny_dirs[("legacy", "deberta")] / "config.json").read_text())
    assert "source_max_length" in raw and "source_maxlength" not in raw
    hf = json.loads((tiny_dirs[("hf", "deberta")] / "config.json").read_text())
    model, _ = PairRankerModel.from_pretrained(tiny_dirs[("pairrm", "deberta")])
    assert hf["architectures"] == ["DebertaV2PairRM"]
    assert hf["source_prefix_id"] == model.config.source_prefix_id


def test_known_backbone_config_without_download() -> None:
    config = PairRankerConfig.from_ranker_dict(
        {
            "model_name": "microsoft/deberta-v3-large",
            "source_maxlength": 1224,
            "candidate_max_length": 412,
            "n_tasks": 1,
            "drop_out": 0.05,
        }
    )
    backbone = config.backbone
    assert (backbone.hidden_size, backbone.num_hidden_layers, backbone.num_attention_heads) == (
        1024,
        24,
        16,
    )
    assert backbone.intermediate_size == 4096 and backbone.position_buckets == 256
    assert backbone.position_biased_input is False and backbone.type_vocab_size == 0
    assert config.candidate_maxlength == 412


def test_same_weights_same_scores_across_layouts(tiny_dirs) -> None:
    scores = [
        PairRanker.from_pretrained(
            tiny_dirs[(layout, "deberta")], source_maxlength=128, candidate_maxlength=128
        )
        .rank(*TEXTS)
        .scores
        for layout in ("pairrm", "hf", "legacy")
    ]
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)
    assert scores[0] == pytest.approx(scores[2], abs=1e-6)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_foreign_key_is_refused_and_named(tiny_dirs, tmp_path) -> None:
    from safetensors.torch import save_file

    path = _copy(tiny_dirs[("pairrm", "deberta")], tmp_path / "foreign")
    state = _state(path)
    state["head_layer.9.weight"] = torch.zeros(2, 2)
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected keys: head_layer\.9\.weight"):
        PairRanker.from_pretrained(path)


def test_missing_key_is_refused_and_named(tiny_dirs, tmp_path) -> None:
    path = _copy(tiny_dirs[("legacy", "bert")], tmp_path / "missing")
    state = _state(path)
    del state["head_layer.4.bias"]
    torch.save(state, path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"missing keys: head_layer\.4\.bias"):
        PairRanker.from_pretrained(path)


def test_not_a_checkpoint(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json"):
        PairRanker.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="neither a local directory nor a hub id"):
        PairRanker.from_pretrained(str(tmp_path / "nope" / "deeper" / "still"))


@pytest.mark.parametrize("layout", ["pairrm", "hf", "legacy"])
def test_save_load_round_trip(tiny_dirs, tmp_path, layout) -> None:
    original = PairRanker.from_pretrained(tiny_dirs[(layout, "deberta")])
    out = original.save_pretrained(tmp_path / "saved")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["DebertaV2PairRM"]
    assert config["source_maxlength"] == original.config.source_maxlength
    assert detect_layout(out) == "hf"
    again = PairRanker.from_pretrained(out)
    assert again.rank(*TEXTS).scores == pytest.approx(original.rank(*TEXTS).scores, abs=1e-6)
    assert set(again.model.state_dict()) == set(original.model.state_dict())


def test_save_pretrained_is_atomic(tiny_dirs, tmp_path, monkeypatch) -> None:
    import safetensors.torch

    original = PairRanker.from_pretrained(tiny_dirs[("hf", "deberta")])
    out = original.save_pretrained(tmp_path / "saved")
    before = (out / "model.safetensors").read_bytes()

    def killed(state, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        original.save_pretrained(out)
    assert (out / "model.safetensors").read_bytes() == before  # the old weights, whole
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_bert_round_trip_architecture(tiny_dirs, tmp_path) -> None:
    original = PairRanker.from_pretrained(tiny_dirs[("pairrm", "bert")])
    out = original.save_pretrained(tmp_path / "bert")
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertPairRM"]
    again = PairRanker.from_pretrained(out)
    assert again.rank(*TEXTS).scores == pytest.approx(original.rank(*TEXTS).scores, abs=1e-6)


def test_from_backbone_adds_tokens_and_saves(tiny_dirs, tmp_path) -> None:
    # A plain encoder directory (no ranker tokens) as a backbone.
    from transformers import AutoModel, AutoTokenizer

    src = tiny_dirs[("hf", "bert")]
    plain = tmp_path / "plain-bert"
    model, _ = PairRankerModel.from_pretrained(src)
    model.pretrained_model.save_pretrained(plain)
    tokenizer = AutoTokenizer.from_pretrained(src)
    vocab_file = src / "vocab.txt"
    shutil.copy(vocab_file, plain / "vocab.txt")
    type(tokenizer)(vocab=str(plain / "vocab.txt")).save_pretrained(plain)
    assert "<|source|>" not in AutoTokenizer.from_pretrained(plain).get_vocab()
    assert AutoModel.from_pretrained(plain) is not None

    fresh, tok = PairRankerModel.from_backbone(
        plain, source_maxlength=32, candidate_maxlength=32, seed=0
    )
    assert len(tok) == fresh.pretrained_model.get_input_embeddings().weight.shape[0]
    assert fresh.config.prefix_ids == tuple(
        tok.convert_tokens_to_ids(["<|source|>", "<|candidate1|>", "<|candidate2|>"])
    )
    out = fresh.save_pretrained(tmp_path / "trained", tok)
    ranker = PairRanker.from_pretrained(out)
    assert (ranker.config.source_maxlength, ranker.config.candidate_maxlength) == (32, 32)
    assert len(ranker.rank(*TEXTS)) == 3


def test_lengths_beyond_absolute_positions_refused(tiny_dirs) -> None:
    with pytest.raises(ValueError, match="max_position_embeddings"):
        PairRanker.from_pretrained(tiny_dirs[("pairrm", "bert")], source_maxlength=2000)


def test_hub_id_offline_gives_a_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match="cannot fetch 'llm-blender/PairRM'"):
        PairRanker.from_pretrained("llm-blender/PairRM", cache_dir=str(tmp_path))
