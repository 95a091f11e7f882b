from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import pytest

from blender_core.ranking import BaseRanker, Ranker, Ranking, validate_rank_inputs


def test_from_scores_order_ranks_and_ties() -> None:
    ranking = Ranking.from_scores([1.0, 3.0, 3.0, 0.0], strategy="max_logits")
    assert ranking.order == (1, 2, 0, 3)
    assert ranking.ranks == (3, 1, 1, 4)
    assert ranking.best == 1
    assert ranking.top_k(2) == (1, 2)
    assert len(ranking) == 4
    assert ranking.to_dict() == {
        "order": [1, 2, 0, 3],
        "ranks": [3, 1, 1, 4],
        "scores": [1.0, 3.0, 3.0, 0.0],
        "best": 1,
        "strategy": "max_logits",
    }


def test_ranking_is_immutable_and_hashable() -> None:
    ranking = Ranking.from_scores([0.5, 0.2], matrix=[[0, 1], [-1, 0]])
    with pytest.raises(dataclasses.FrozenInstanceError):
        ranking.order = (1, 0)  # type: ignore[misc]
    assert hash(ranking) == hash(Ranking.from_scores([0.5, 0.2], matrix=[[0, 1], [-1, 0]]))
    assert ranking.to_dict()["matrix"] == [[0.0, 1.0], [-1.0, 0.0]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": (), "ranks": (), "scores": ()}, "at least one"),
        ({"order": (0,), "ranks": (1, 2), "scores": (1.0, 2.0)}, "same length"),
        ({"order": (0, 0), "ranks": (1, 2), "scores": (1.0, 2.0)}, "permutation"),
        ({"order": (0, 1), "ranks": (1, 2), "scores": (1.0, 2.0), "matrix": ((0.0,),)}, "2x2"),
    ],
)
def test_ranking_validates(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Ranking(**kwargs)


def test_top_k_rejects_zero() -> None:
    with pytest.raises(ValueError, match="k must be"):
        Ranking.from_scores([1.0]).top_k(0)


@pytest.mark.parametrize(
    ("instructions", "candidate_lists", "error", "message"),
    [
        ("hi", [["a"]], TypeError, "instructions must be a list"),
        (["hi"], "a", TypeError, "candidate_lists must be"),
        (["hi", "yo"], [["a"]], ValueError, "same length"),
        ([None], [["a"]], TypeError, "instruction 0 must be a string"),
        (["hi"], [[]], ValueError, "input 0 is empty"),
        (["hi"], ["ab"], TypeError, "candidates of input 0 must be a list"),
        (["hi"], [["a", None]], TypeError, "candidate 1 of input 0 must be a string"),
        (["hi"], [["a", 3]], TypeError, "got int"),
    ],
)
def test_validate_rank_inputs(
    instructions: object, candidate_lists: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        validate_rank_inputs(instructions, candidate_lists)  # type: ignore[arg-type]


class LengthRanker(BaseRanker):
    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        validate_rank_inputs(instructions, candidate_lists)
        return [Ranking.from_scores([len(c) for c in cands]) for cands in candidate_lists]


def test_base_ranker_derives_rank_and_async_forms() -> None:
    ranker = LengthRanker()
    assert isinstance(ranker, Ranker)
    assert ranker.rank("q", ["a", "abc", "ab"]).order == (1, 2, 0)
    assert asyncio.run(ranker.arank("q", ["a", "abc"])).best == 1
    batch = asyncio.run(ranker.arank_batch(["q", "r"], [["aa", "a"], ["b", "bbb"]]))
    assert [r.best for r in batch] == [0, 1]
    with pytest.raises(TypeError, match="single string"):
        ranker.rank("q", "abc")  # type: ignore[arg-type]
