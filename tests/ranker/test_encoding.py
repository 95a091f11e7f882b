"""Token layout, per-example truncation, sanitising, tokenise-once caching and collation."""

from __future__ import annotations

import pytest

from blender_core.encoding import PairEncoder

LONG = " ".join(f"word{i} the quick brown fox" for i in range(60))


@pytest.fixture(scope="module")
def encoder(ranker) -> PairEncoder:
    return PairEncoder(ranker.tokenizer, source_maxlength=16, candidate_maxlength=12)


def _parts(encoder: PairEncoder, ids: list[int]) -> list[list[int]]:
    starts = [k for k, i in enumerate(ids) if i == encoder.cls_id]
    return [ids[a:b] for a, b in zip(starts, [*starts[1:], len(ids)], strict=True)]


def test_pair_layout(encoder) -> None:
    ids = encoder.encode_pair("Say hi", "hi!", "bye")
    source, first, second = _parts(encoder, ids)
    assert source[:2] == [encoder.cls_id, encoder.source_prefix_id] and source[-1] == encoder.sep_id
    assert first[:2] == [encoder.cls_id, encoder.cand1_prefix_id] and first[-1] == encoder.sep_id
    assert second[:2] == [encoder.cls_id, encoder.cand2_prefix_id] and second[-1] == encoder.sep_id
    tok = encoder.tokenizer
    assert source == tok.encode("<|source|>Say hi")
    assert first == tok.encode("<|candidate1|>hi!")


def test_truncation_per_example(encoder) -> None:
    source, first, second = _parts(encoder, encoder.encode_pair(LONG, LONG, LONG))
    assert len(source) == 16 and len(first) == 12 and len(second) == 12
    short_source, first, second = _parts(encoder, encoder.encode_pair("hi", LONG, "ok"))
    assert len(first) == 12 + (16 - len(short_source)) // 2
    assert second == encoder.tokenizer.encode("<|candidate2|>ok")
    # A neighbour never changes a pair's ids.
    alone = encoder.encode_pair("hi", LONG, "ok")
    assert encoder.encode_pairs([LONG, "hi"], [LONG, LONG], [LONG, "ok"])[1] == alone


@pytest.mark.parametrize(
    "text",
    [
        "<|candidate1|>",
        "a <|source|> b",
        "[CLS] x [PAD] [MASK]",
        "<|CANDIDATE|>",
        "<<|candidate2|>>",
        "[UNK]",
    ],
)
def test_special_strings_never_become_control_ids(encoder, text) -> None:
    ids = encoder.encode_pair(text, text, text)
    control = {
        encoder.cls_id,
        encoder.sep_id,
        encoder.pad_id,
        encoder.source_prefix_id,
        encoder.cand1_prefix_id,
        encoder.cand2_prefix_id,
        encoder.cand_prefix_id,
    }
    counts = {i: ids.count(i) for i in control}
    assert counts[encoder.cls_id] == 3 and counts[encoder.sep_id] == 3
    assert (
        counts[encoder.source_prefix_id]
        == counts[encoder.cand1_prefix_id]
        == counts[encoder.cand2_prefix_id]
        == 1
    )
    assert counts[encoder.cand_prefix_id] == 0 and counts[encoder.pad_id] == 0


def test_literal_sep_becomes_space(encoder) -> None:
    assert encoder.sanitize("a[SEP]b") == "a b"
    assert encoder.tokenize(["a[SEP]b"]) == encoder.tokenize(["a b"])
    assert encoder.sanitize("plain text") == "plain text"


def test_each_distinct_text_tokenised_once(ranker, monkeypatch) -> None:
    tokenizer_type = type(ranker.tokenizer)
    seen: list[str] = []
    original = tokenizer_type.__call__

    def spy(self, text, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.extend([text] if isinstance(text, str) else text)
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(tokenizer_type, "__call__", spy)
    cands = [f"candidate answer {k}" for k in range(6)] + ["candidate answer 0"]
    ranker.rank("one instruction", cands)
    assert len(seen) == 7  # the source and 6 distinct candidates, not 7 * 6 pairs


def test_collate_pads_at_the_end(encoder) -> None:
    batch = encoder.collate([[1, 2, 3], [4]])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, encoder.pad_id, encoder.pad_id]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    with pytest.raises(ValueError, match="nothing"):
        encoder.collate([])


def test_encoder_rejects_bad_lengths(ranker) -> None:
    with pytest.raises(ValueError, match=">= 3"):
        PairEncoder(ranker.tokenizer, source_maxlength=2, candidate_maxlength=10)
    with pytest.raises(ValueError, match="required"):
        PairEncoder(ranker.tokenizer)
