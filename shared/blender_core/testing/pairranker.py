"""Tiny random PairRanker checkpoints in the exact published layouts, built offline in seconds.

Example:
    .. code-block:: python

        from blender_core import PairRanker
        from blender_core.testing import make_tiny_pairranker

        path = make_tiny_pairranker(tmp_path / "ranker", layout="legacy", backbone="bert")
        ranker = PairRanker.from_pretrained(path)
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "RANDOM_RANKER_SHAPES",
    "RANDOM_WEIGHTS_FILE",
    "TINY_CORPUS",
    "deberta_v3_config",
    "is_random_checkpoint",
    "make_random_pairranker",
    "make_tiny_pairranker",
    "train_deberta_tokenizer",
]

#: Backbone sizes of the benchmarks' random rankers (DeBERTa-v3 structure): ``"mid"`` is a fast
#: stand-in for PairRM, ``"large"`` PairRM's own shape (deberta-v3-large).
RANDOM_RANKER_SHAPES: dict[str, dict[str, int]] = {
    "tiny": {"layers": 2, "hidden": 32, "heads": 2, "ffn": 64},
    "mid": {"layers": 6, "hidden": 384, "heads": 6, "ffn": 1536},
    "large": {"layers": 24, "hidden": 1024, "heads": 16, "ffn": 4096},
}

TINY_CORPUS = """\
The quick brown fox jumps over the lazy dog. Hello, how are you? I am fine, thanks!
Write a short poem about the sea and the sky. The sea is blue and the sky is wide.
What are the best exercises for beginners? Walking, swimming, biking and push-ups are good.
Explain the difference between a list and a tuple in Python. A list can change; a tuple cannot.
Give me three tips for staying healthy. Eat well, sleep enough and move every day.
Translate "good morning" into French. Bonjour! Get out! Bye! I love you too! I hate you!
Summarize the following text in one sentence. The meeting was moved to Friday at noon.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Symbols: < | > [ ] ( ) { } ! ? , . : ; - _ * # @ / \\ ' "
USER: hello Assistant: hi! Response: sure, here is the answer you asked for.
Thanks! You're a good guy! That is not correct, please try again with more detail.
Machine learning models rank candidate answers by comparing them in pairs and picking the best.
"""

Layout = Literal["pairrm", "hf", "legacy"]
Backbone = Literal["deberta", "bert"]

_ADDED = ("<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>")


def _corpus_lines() -> list[str]:
    lines = [line for line in TINY_CORPUS.splitlines() if line.strip()]
    return lines * 20


def _deberta_tokenizer(workdir: Path) -> Any:
    return train_deberta_tokenizer(workdir, _corpus_lines(), vocab_size=300)


def train_deberta_tokenizer(workdir: Path, texts: Iterable[str], *, vocab_size: int) -> Any:
    """A DeBERTa-v3-style tokenizer trained on ``texts``, saved in ``workdir``.

    The sentencepiece vocabulary comes first, then ``[MASK]``, then the four ranker tokens, as in
    the published checkpoints.
    """
    import sentencepiece as spm
    from transformers import DebertaV2Tokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        bos_id=1,
        eos_id=2,
        unk_id=3,
        pad_piece="[PAD]",
        bos_piece="[CLS]",
        eos_piece="[SEP]",
        unk_piece="[UNK]",
        character_coverage=1.0,
        hard_vocab_limit=False,
        split_digits=True,
        num_threads=1,
        minloglevel=2,
    )
    (workdir / "spm.model").write_bytes(model.getvalue())
    # As deberta-v3: the sentencepiece vocabulary, then [MASK], then the four ranker tokens.
    tokenizer = DebertaV2Tokenizer.from_pretrained(str(workdir))
    tokenizer.add_tokens(list(_ADDED), special_tokens=False)
    return tokenizer


def _bert_tokenizer(workdir: Path) -> Any:
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers
    from transformers import BertTokenizer

    # A deterministic wordpiece vocabulary (the tokenizers trainer breaks ties differently per run):
    # specials, every character alone and as a continuation, then the most frequent words.
    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for line in _corpus_lines():
        words.update(w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(line)))
    chars = sorted({c for w in words for c in w})
    frequent = [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1][
        :150
    ]
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *chars,
        *(f"##{c}" for c in chars),
        *frequent,
    ]
    (workdir / "vocab.txt").write_text("".join(f"{tok}\n" for tok in vocab), encoding="utf-8")
    tokenizer = BertTokenizer.from_pretrained(str(workdir))
    tokenizer.add_tokens(list(_ADDED), special_tokens=False)
    return tokenizer


def deberta_v3_config(
    *, vocab_size: int, hidden: int, layers: int, heads: int, ffn: int, **overrides: Any
) -> Any:
    """A ``DebertaV2Config`` with deberta-v3's (and so PairRM's) structure at the given sizes:
    relative attention with 256 log buckets, shared c2p/p2c keys, no absolute positions (the
    structure of :data:`blender_core.modeling.KNOWN_BACKBONES`' deberta-v3 entries)."""
    from transformers import DebertaV2Config

    from blender_core.modeling import DEBERTA_V3_STRUCTURE

    settings: dict[str, Any] = {
        **{k: v for k, v in DEBERTA_V3_STRUCTURE.items() if k != "model_type"},
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
    }
    settings.update(overrides)
    return DebertaV2Config(**settings)


def _backbone_config(backbone: Backbone, vocab_size: int) -> Any:
    from transformers import BertConfig

    sizes = RANDOM_RANKER_SHAPES["tiny"]
    # Larger than the usual 0.02 so that random rankers give clearly different scores.
    common: dict[str, Any] = {"initializer_range": 0.2, "pad_token_id": 0}
    if backbone == "deberta":
        return deberta_v3_config(
            vocab_size=vocab_size,
            **sizes,
            **common,
            hidden_act="gelu",
            max_position_embeddings=512,
        )
    # BERT has absolute positions: room for the longest PairRM pair (1224 + 2 * 412 tokens).
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=sizes["hidden"],
        num_hidden_layers=sizes["layers"],
        num_attention_heads=sizes["heads"],
        intermediate_size=sizes["ffn"],
        max_position_embeddings=2048,
        type_vocab_size=2,
        **common,
    )


def make_random_pairranker(
    path: str | os.PathLike[str],
    texts: Iterable[str],
    *,
    shape: str = "mid",
    vocab_size: int = 8000,
    seed: int = 0,
) -> Path:
    """Write a random PairRanker of a benchmark ``shape`` with PairRM's lengths (1224/412).

    Its sentencepiece tokenizer is trained on ``texts`` (the benchmark's own data, so that
    token counts are realistic); ``path/tokenizer`` holds it and ``path/ranker`` the checkpoint
    (``save_pretrained`` layout), which is returned.
    """
    import torch

    from blender_core.modeling import PairRankerConfig, PairRankerModel

    if shape not in RANDOM_RANKER_SHAPES:
        raise ValueError(
            f"unknown shape {shape!r}; choose one of {', '.join(RANDOM_RANKER_SHAPES)}"
        )
    workdir = Path(path)
    tok_dir = workdir / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_deberta_tokenizer(tok_dir, texts, vocab_size=vocab_size)
    backbone = deberta_v3_config(vocab_size=len(tokenizer), **RANDOM_RANKER_SHAPES[shape])
    config = PairRankerConfig(backbone=backbone, source_maxlength=1224, candidate_maxlength=412)
    config.set_token_ids(tokenizer)
    torch.manual_seed(seed)
    out = workdir / "ranker"
    PairRankerModel(config).save_pretrained(out, tokenizer)
    (out / RANDOM_WEIGHTS_FILE).write_text(_RANDOM_NOTE.format(seed=seed), encoding="utf-8")
    return out


RANDOM_WEIGHTS_FILE = "RANDOM_WEIGHTS.txt"
"""The note :func:`make_tiny_pairranker` leaves in its checkpoint: its weights are random."""

_RANDOM_NOTE = (
    "This PairRanker checkpoint was written by blender_core.testing (random weights).\n"
    "Its weights are random (seed {seed}): it loads and runs like llm-blender/PairRM, in the\n"
    "same file layout, but its rankings are arbitrary. Use it for offline tests only.\n"
)


def is_random_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a checkpoint written by :func:`make_tiny_pairranker` (random weights)."""
    return (Path(path) / RANDOM_WEIGHTS_FILE).is_file()


def make_tiny_pairranker(
    path: str | os.PathLike[str],
    *,
    layout: Layout = "pairrm",
    backbone: Backbone = "deberta",
    seed: int = 0,
) -> Path:
    """Write a tiny random PairRanker checkpoint in a published layout and return its directory.

    Args:
        path: Directory to create (may exist).
        layout: ``"pairrm"`` (``llm-blender/PairRM``: ranker ``config.json`` =
            ``ranker_config.json``, ``model.safetensors``, lengths 1224/412), ``"hf"``
            (``llm-blender/PairRM-hf``: a transformers config with ``architectures:
            ["DebertaV2PairRM"]`` and the prefix ids, keys without the ``pretrained_model.``
            prefix), or ``"legacy"``
            (``llm-blender/pair-ranker``: ``pytorch_model.bin`` with an old ``position_ids`` key,
            lengths 128/128 spelled ``source_max_length``/``candidate_max_length``).
        backbone: ``"deberta"`` (DeBERTa-v3 structure, sentencepiece tokenizer) or ``"bert"``
            (wordpiece tokenizer).
        seed: Seed of the random weights.

    For the ranker-config layouts the backbone's ``config.json`` is written to ``backbone/`` in the
    checkpoint and ``model_name`` is ``"backbone"`` (a local directory, resolved against the
    checkpoint), where the published files say ``"microsoft/deberta-v3-large"``.

    The weights are random, so its rankings are arbitrary (it may well prefer "I don't know."
    to "Paris."): the checkpoint holds a ``RANDOM_WEIGHTS.txt`` note saying so, and
    ``blender rank`` warns on stderr when it ranks with one (:func:`is_random_checkpoint`).
    """
    import torch
    from safetensors.torch import save_file

    from blender_core.modeling import PairRankerConfig, PairRankerModel

    if layout not in ("pairrm", "hf", "legacy"):
        raise ValueError(f"layout must be 'pairrm', 'hf' or 'legacy', got {layout!r}")
    if backbone not in ("deberta", "bert"):
        raise ValueError(f"backbone must be 'deberta' or 'bert', got {backbone!r}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / RANDOM_WEIGHTS_FILE).write_text(_RANDOM_NOTE.format(seed=seed), encoding="utf-8")

    with tempfile.TemporaryDirectory() as tmp:
        build = _deberta_tokenizer if backbone == "deberta" else _bert_tokenizer
        tokenizer = build(Path(tmp))
        tokenizer.save_pretrained(str(out))
        for name in ("spm.model", "vocab.txt"):
            if (Path(tmp) / name).is_file() and not (out / name).is_file():
                (out / name).write_bytes((Path(tmp) / name).read_bytes())
    added = {token: tokenizer.convert_tokens_to_ids(token) for token in _ADDED}
    (out / "added_tokens.json").write_text(json.dumps(added, indent=2) + "\n", encoding="utf-8")
    (out / "special_tokens_map.json").write_text(
        json.dumps(
            {
                key: str(getattr(tokenizer, key))
                for key in (
                    "bos_token",
                    "eos_token",
                    "unk_token",
                    "sep_token",
                    "pad_token",
                    "cls_token",
                    "mask_token",
                )
                if getattr(tokenizer, key, None) is not None
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )

    legacy = layout == "legacy"
    config = PairRankerConfig(
        backbone=_backbone_config(backbone, len(tokenizer)),
        model_name="backbone",
        n_tasks=1,
        drop_out=0.05,
        source_maxlength=128 if legacy else 1224,
        candidate_maxlength=128 if legacy else 412,
        layout=layout,
    )
    config.set_token_ids(tokenizer)
    torch.manual_seed(seed)
    model = PairRankerModel(config)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}

    if layout == "hf":
        hf = config.to_hf_dict()
        for key in ("source_maxlength", "candidate_maxlength", "_name_or_path"):
            hf.pop(
                key, None
            )  # the hub's PairRM-hf config has no lengths (its README uses 1224/412)
        (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")
        save_file(
            {k.removeprefix("pretrained_model."): v for k, v in state.items()},
            str(out / "model.safetensors"),
        )
        return out

    backbone_dir = out / "backbone"
    backbone_dir.mkdir(exist_ok=True)
    config.backbone.to_json_file(str(backbone_dir / "config.json"))
    ranker = config.to_ranker_dict(legacy=legacy)
    ranker.update(
        {"fp16": True, "inference_mode": "bubble", "loss_type": "instructgpt", "cache_dir": None}
    )
    text = json.dumps(ranker, indent=2) + "\n"
    (out / "config.json").write_text(text, encoding="utf-8")
    if legacy:
        positions = config.backbone.max_position_embeddings
        state["pretrained_model.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
        torch.save(state, out / "pytorch_model.bin")
    else:
        (out / "ranker_config.json").write_text(text, encoding="utf-8")
        save_file(state, str(out / "model.safetensors"))
    return out
