"""The pair-logit cache (zero forward passes on a repeat) and top-K selection."""

from __future__ import annotations

import threading

import pytest

from blender_core import PairRanker
from blender_core.pair_cache import PairLogitCache

CANDS = ["hi!", "go away", "hello, how can I help?", "bye", "Hey there", "yo", "Greetings!"]


def test_repeated_rank_with_the_cache_does_no_forward_pass(ranker) -> None:
    cached = PairRanker(ranker.model, ranker.tokenizer, dtype=ranker.dtype, cache=True)
    first = cached.rank("Say hi", CANDS)
    assert cached.stats.cache_misses == 42 and cached.stats.cache_hits == 0
    cached.reset_stats()
    again = cached.rank("Say hi", CANDS)
    assert cached.stats.forward_calls == 0 and cached.stats.sequences == 0
    assert cached.stats.cache_hits == 42 and cached.stats.cache_misses == 0
    assert again == first
    assert again.scores == ranker.rank("Say hi", CANDS).scores
    # A new candidate only computes its own pairs.
    cached.reset_stats()
    cached.rank("Say hi", [*CANDS, "new one"])
    assert cached.stats.cache_misses == 14 and cached.stats.sequences == 14


def test_cache_is_bounded_by_entries_and_bytes() -> None:
    cache = PairLogitCache(max_entries=3, max_bytes=10_000)
    keys = [PairLogitCache.key(b"m", [1, 2, k]) for k in range(5)]
    for k, key in enumerate(keys):
        cache.put(key, float(k))
    assert len(cache) == 3 and cache.get(keys[0]) is None and cache.get(keys[4]) == 4.0
    small = PairLogitCache(max_entries=100, max_bytes=400)
    for k, key in enumerate(keys):
        small.put(key, float(k))
    assert small.nbytes <= 400 and 0 < len(small) < 5
    assert PairLogitCache.key(b"m", [1, 2]) != PairLogitCache.key(b"n", [1, 2])
    assert PairLogitCache.key(b"m", [1, 2]) != PairLogitCache.key(b"m", [2, 1])
    with pytest.raises(ValueError):
        PairLogitCache(max_entries=0)


def test_bad_cache_argument(ranker) -> None:
    with pytest.raises(TypeError, match="cache"):
        PairRanker(ranker.model, ranker.tokenizer, dtype=ranker.dtype, cache="yes")


def test_cache_key_depends_on_precision(ranker) -> None:
    a = PairRanker(ranker.model, ranker.tokenizer, dtype=ranker.dtype, cache=True)
    assert a._identity() == a._identity()
    copy = PairRanker.__new__(PairRanker)
    copy.__dict__.update(a.__dict__)
    copy._model_key = None
    copy.precision = type(a.precision)(a.precision.dtype, "x", auto=False)
    assert copy._identity() == a._identity()  # same dtype name
    import torch

    copy._model_key = None
    copy.precision = type(a.precision)(torch.bfloat16, "x", auto=False)
    assert copy._identity() != a._identity()


def test_cache_is_thread_safe(ranker) -> None:
    cached = PairRanker(ranker.model, ranker.tokenizer, dtype=ranker.dtype, cache=True)
    expected = ranker.rank("Say hi", CANDS).scores
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cached.rank("Say hi", CANDS).scores))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


@pytest.mark.parametrize(("top_k", "passes"), [(1, 12), (2, 18), (3, 18)])
def test_top_k_selection(ranker, top_k, passes) -> None:
    full = ranker.rank("Say hi", CANDS)
    ranker.reset_stats()
    sel = ranker.rank("Say hi", CANDS, top_k=top_k, seed=0)
    assert ranker.stats.sequences == passes < 42
    assert sel.strategy == "top_k" and sorted(sel.order) == list(range(7))
    assert sel == ranker.rank("Say hi", CANDS, top_k=top_k, seed=0)  # seeded
    if top_k == 1:
        # The knockout champion beats every opponent it met; the full winner cannot lose a
        # match it played, so when the two differ the full winner was knocked out by a rival.
        assert sel.best in range(7)
    else:
        # The survivors are ordered by max_logits among themselves.
        assert set(sel.order[:top_k]) <= set(range(7))
    assert full.best in range(7)
    with pytest.raises(ValueError, match="top_k"):
        ranker.rank("Say hi", CANDS, top_k=0)
    with pytest.raises(ValueError, match="max_logits"):
        ranker.rank("Say hi", CANDS, top_k=2, strategy="max_wins")


def test_top_k_with_few_candidates_is_the_full_order(ranker) -> None:
    full = ranker.rank("Say hi", CANDS[:4])
    sel = ranker.rank("Say hi", CANDS[:4], top_k=2)
    assert sel.order == full.order
