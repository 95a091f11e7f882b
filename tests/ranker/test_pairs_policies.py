"""pairs="one-way": each unordered pair once, seeded direction, antisymmetric matrix."""

from __future__ import annotations

import pytest

from blender_core.aggregation import one_way_pairs

CANDS = ["hi!", "go away", "hello, how can I help?", "bye", "Hey there"]


def test_one_way_pairs_cover_each_unordered_pair_once() -> None:
    pairs = one_way_pairs(6, seed=1, key=["x"])
    assert len(pairs) == 15
    assert {frozenset(p) for p in pairs} == {
        frozenset((i, j)) for i in range(6) for j in range(i + 1, 6)
    }
    assert pairs == one_way_pairs(6, seed=1, key=["x"])
    assert pairs != one_way_pairs(6, seed=2, key=["x"])
    assert one_way_pairs(1, seed=0) == []
    with pytest.raises(ValueError):
        one_way_pairs(0, seed=0)


def test_one_way_rank_halves_the_passes(ranker) -> None:
    ranker.reset_stats()
    full = ranker.rank("Say hi", CANDS)
    assert ranker.stats.sequences == 20
    ranker.reset_stats()
    half = ranker.rank("Say hi", CANDS, pairs="one-way", seed=0)
    assert ranker.stats.sequences == 10
    assert half.matrix is not None and full.matrix is not None
    for i in range(5):
        for j in range(5):
            assert half.matrix[i][j] == -half.matrix[j][i]
            # each entry is one of the two directions computed by the full run
            if i != j:
                m = half.matrix[i][j]
                assert m == pytest.approx(full.matrix[i][j], abs=1e-5) or m == pytest.approx(
                    -full.matrix[j][i], abs=1e-5
                )
    again = ranker.rank_batch(["x", "Say hi"], [["a", "b"], CANDS], pairs="one-way", seed=0)[1]
    assert again.scores == pytest.approx(half.scores, abs=1e-5)
    with pytest.raises(ValueError, match="pairs"):
        ranker.rank("Say hi", CANDS, pairs="both")  # type: ignore[arg-type]
