"""PairRankerEvaluator: scores, consensus across orders, ties, the real tiny PairRM."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.evaluation.pairwise import EvaluationSource

from llamaindex_blender import PairRankerEvaluator


class ScriptedCompare:
    """compare_batch returns fixed logits per (a, b) pair."""

    def __init__(self, logits: dict[tuple[str, str], float]) -> None:
        self.logits = logits

    def compare(self, instruction: str, a: str, b: str, *, both_directions: bool = True) -> float:
        return self.logits[(a, b)]

    def compare_batch(self, instructions: Any, as_: Any, bs: Any, **kw: Any) -> list[float]:
        return [self.logits[(a, b)] for a, b in zip(as_, bs, strict=True)]


def evaluate(logits: dict[tuple[str, str], float], **kw: Any) -> Any:
    evaluator = PairRankerEvaluator(ranker=ScriptedCompare(logits), **kw)
    return evaluator.evaluate(query="q", response="A", second_response="B")


def test_first_wins() -> None:
    result = evaluate({("A", "B"): 2.0, ("B", "A"): -1.0})
    assert (result.score, result.passing) == (1.0, True)
    assert result.pairwise_source == EvaluationSource.ORIGINAL
    assert "margin +1.5000" in (result.feedback or "")


def test_second_wins() -> None:
    result = evaluate({("A", "B"): -0.5, ("B", "A"): 0.7})
    assert (result.score, result.passing) == (0.0, False)


def test_disagreeing_orders_are_inconclusive() -> None:
    result = evaluate({("A", "B"): 1.0, ("B", "A"): 0.5})
    assert (result.score, result.passing) == (0.5, None)
    assert result.pairwise_source == EvaluationSource.NEITHER
    relaxed = evaluate({("A", "B"): 1.0, ("B", "A"): 0.5}, enforce_consensus=False)
    assert relaxed.score == 1.0  # margin +0.25 decides


def test_tie_margin() -> None:
    result = evaluate({("A", "B"): 0.2, ("B", "A"): -0.2}, tie_margin=0.5)
    assert (result.score, result.passing) == (0.5, None)
    assert "Tie" in (result.feedback or "")


def test_reference_is_reported_as_unused_and_inputs_checked() -> None:
    evaluator = PairRankerEvaluator(ranker=ScriptedCompare({("A", "B"): 1.0, ("B", "A"): -1.0}))
    result = evaluator.evaluate(query="q", response="A", second_response="B", reference="R")
    assert "does not read the reference" in (result.feedback or "")
    with pytest.raises(ValueError, match="second_response"):
        evaluator.evaluate(query="q", response="A")
    with pytest.raises(TypeError, match="compare"):
        PairRankerEvaluator(ranker=object())
    with pytest.raises(ValueError, match="tie_margin"):
        PairRankerEvaluator(tie_margin=-1)


def test_tiny_pairrm_is_order_symmetric(tiny_pairrm_dir: Path) -> None:
    evaluator = PairRankerEvaluator(str(tiny_pairrm_dir))
    query = "Give me three tips for staying healthy."
    a, b = "Eat well, sleep enough and move every day.", "Get out!"
    forward = evaluator.evaluate(query=query, response=a, second_response=b)
    backward = asyncio.run(evaluator.aevaluate(query=query, response=b, second_response=a))
    assert forward.score in (0.0, 0.5, 1.0)
    assert forward.score == pytest.approx(1.0 - backward.score)


def test_a_loaded_ranker_given_positionally_is_the_ranker() -> None:
    # Regression: PairRankerEvaluator(<loaded PairRanker>) was accepted, then failed on first
    # use with a TypeError from pathlib (the ranker was taken as a checkpoint path).
    evaluator = PairRankerEvaluator(ScriptedCompare({("A", "B"): 2.0, ("B", "A"): -1.0}))
    result = evaluator.evaluate(query="q", response="A", second_response="B")
    assert result.score == 1.0
    with pytest.raises(TypeError, match="once"):
        PairRankerEvaluator(ScriptedCompare({}), ranker=ScriptedCompare({}))
