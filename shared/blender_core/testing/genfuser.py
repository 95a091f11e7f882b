"""A tiny random GenFuser checkpoint (T5 with a T5-style tokenizer), built offline in seconds."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["make_tiny_genfuser"]

NUM_SENTINELS = 16
"""Number of ``<extra_id_N>`` sentinel tokens (the GenFuser prompt uses one per candidate)."""

_CORPUS = (
    "Instruction: Input: Candidate 0: 1: 2: 3:",
    "Summarize candidates into a better one for the given instruction:",
    "The capital of France is Paris. Paris is a large city in Europe.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Write a short poem about the sea and the sky.",
    "Explain how photosynthesis works in simple words.",
    "Plants use sunlight, water and carbon dioxide to make sugar and oxygen.",
    "Give me three tips for staying healthy: sleep well, eat vegetables, move every day.",
    "Translate the following sentence into German, please.",
    "The quick brown fox jumps over the lazy dog.",
    "Python is a programming language that is easy to read and write.",
    "A good answer is correct, complete, clear and concise.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Punctuation: , . ; : ! ? ' \" ( ) - ...",
    "What is the best way to learn a new language? Practice speaking every day.",
    "Summarize the article in two sentences and list the main points.",
    "The answer is yes, because the model compares candidates and picks the best one.",
)


_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()-_/<>=+*&%$#@[]{}"
)


def _unigram_vocab() -> list[tuple[str, float]]:
    """A deterministic SentencePiece-style vocabulary: corpus words, then single characters.

    (``tokenizers``' Unigram trainer is not deterministic across runs, so the vocabulary and its
    log-probabilities are computed here instead.)
    """
    counts = Counter("▁" + word for line in _CORPUS for word in re.findall(r"[A-Za-z0-9]+", line))
    total = sum(counts.values()) + 2 * len(_ALPHABET)
    words = sorted(counts, key=lambda w: (-counts[w], w))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", math.log(1 / total))]
    vocab += [(w, math.log(counts[w] / total)) for w in words]
    # Characters, alone or starting a word, make any text reachable (less likely than words).
    char_score = math.log(0.5 / total)
    vocab += [(c, char_score) for c in _ALPHABET]
    vocab += [("▁" + c, char_score) for c in _ALPHABET if "▁" + c not in counts]
    return vocab


def _build_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    tokenizer = Tokenizer(Unigram(_unigram_vocab(), unk_id=2, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    # T5 layout: sentinels are the last ids, <extra_id_0> the highest.
    specials = ["<pad>", "</s>", "<unk>"]
    specials += [f"<extra_id_{i}>" for i in range(NUM_SENTINELS - 1, -1, -1)]
    tokenizer.add_special_tokens(specials)
    eos_id = tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos_id)]
    )
    return tokenizer


def make_tiny_genfuser(path: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random ``T5ForConditionalGeneration`` and its tokenizer to ``path``.

    The tokenizer is a SentencePiece-style Unigram model built on the spot, with T5's special
    tokens (``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2) and ``<extra_id_N>`` sentinels, so the
    GenFuser prompt tokenises as with the published checkpoint. Nothing is downloaded.

    Args:
        path: Output directory (created if missing).
        seed: Seed of the random weights.

    Returns:
        ``path`` as a :class:`~pathlib.Path`, loadable with ``GenFuser.from_pretrained``.

    Example:
        .. code-block:: python

            from blender_core import GenFuser
            from blender_core.testing import make_tiny_genfuser

            fuser = GenFuser.from_pretrained(make_tiny_genfuser(tmp_path / "fuser"))
            fuser.fuse("Say hi", ["hi", "hello"], max_new_tokens=8)
    """
    import torch
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)

    backend = _build_tokenizer()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=[f"<extra_id_{i}>" for i in range(NUM_SENTINELS)],
        model_max_length=1024,
    )
    tokenizer.save_pretrained(out)

    torch.manual_seed(seed)
    config = T5Config(  # type: ignore[call-arg]
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    model = T5ForConditionalGeneration(config)
    # T5's default init makes a random model emit <pad> forever, and beam search would pick an
    # immediate </s>; wider weights and silenced special tokens (</s> included: answers run to
    # max_new_tokens) give varied, input-dependent text, so tests can see fusion do something.
    sentinels = [f"<extra_id_{i}>" for i in range(NUM_SENTINELS)]
    special_ids = [tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id]
    special_ids.append(tokenizer.convert_tokens_to_ids("▁"))  # a lone space would decode to ''
    special_ids += [tokenizer.convert_tokens_to_ids(token) for token in sentinels]
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layer_norm" not in name:
                param.normal_(0.0, 0.3)
        model.lm_head.weight[special_ids] = 0.0
    model.eval()
    model.save_pretrained(out)
    return out
