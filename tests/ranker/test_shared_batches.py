"""Shared batches across callers: concurrent calls coalesced, each result equal to a solo call."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from blender_core import PairRanker
from blender_core.pair_scheduler import PairScheduler
from blender_core.ranking import Ranking

CALLERS = 32
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "hex",
    "bold",
    "jumpers",
]


def _text(seed: int, words: int) -> str:
    return " ".join(WORDS[(seed * 7 + 3 * k) % len(WORDS)] for k in range(words))


def _calls() -> list[tuple[str, Any]]:
    """32 single-record calls of four kinds, with answers of many lengths (many widths)."""
    calls: list[tuple[str, Any]] = []
    for i in range(CALLERS):
        question = f"Question {i}: " + _text(i, 3 + i % 5)
        cands = [_text(i + j, 2 + (i * 13 + j * 29) % 50) for j in range(3 + i % 2)]
        kind = ("rank", "compare", "top1", "bubble")[i % 4]
        calls.append((kind, (question, cands)))
    return calls


def _call(ranker: PairRanker, kind: str, args: Any) -> Any:
    question, cands = args
    if kind == "rank":
        return ranker.rank(question, cands)
    if kind == "compare":
        return ranker.compare(question, cands[0], cands[1])
    if kind == "top1":
        return ranker.rank(question, cands, top_k=1, seed=1)
    return ranker.rank(question, cands, strategy="bubble", seed=2)


async def _acall(ranker: PairRanker, kind: str, args: Any) -> Any:
    question, cands = args
    if kind == "rank":
        return await ranker.arank(question, cands)
    if kind == "compare":
        return await ranker.acompare(question, cands[0], cands[1])
    if kind == "top1":
        return await ranker.arank(question, cands, top_k=1, seed=1)
    return await ranker.arank(question, cands, strategy="bubble", seed=2)


def _as_tensor(result: Any) -> torch.Tensor:
    if isinstance(result, Ranking):
        values = list(result.scores)
        if result.matrix is not None:
            values += [x for row in result.matrix for x in row]
        return torch.tensor(values, dtype=torch.float64)
    return torch.tensor([result], dtype=torch.float64)


def _assert_identical(solo: list[Any], shared: list[Any]) -> None:
    for k, (alone, together) in enumerate(zip(solo, shared, strict=True)):
        assert torch.equal(_as_tensor(alone), _as_tensor(together)), f"caller {k} differs"
        assert alone == together


def _gate_first_round(ranker: PairRanker, callers: int) -> None:
    """Hold the first forward until every caller has its pairs pending (deterministic sharing)."""
    scheduler = ranker._scheduler
    run = scheduler._run_batch
    opened = threading.Event()

    def gated(width: int, seqs: list[Any]) -> list[float]:
        if not opened.is_set():
            for _ in range(2000):
                with scheduler._cond:
                    if scheduler._waiting >= callers:
                        break
                threading.Event().wait(0.005)
            opened.set()
        return run(width, seqs)

    scheduler._run_batch = gated


@pytest.fixture(scope="module")
def small_model(tiny_pairrm_dir: Path) -> tuple[Any, Any]:
    """A random DeBERTa ranker larger than the tiny one (hidden 128), so that the kernels block."""
    from blender_core.modeling import PairRankerModel

    model, tokenizer = PairRankerModel.from_pretrained(tiny_pairrm_dir)
    config = copy.deepcopy(model.config)
    config.backbone.hidden_size = 128
    config.backbone.num_attention_heads = 4
    config.backbone.intermediate_size = 512
    torch.manual_seed(0)
    return PairRankerModel(config), tokenizer


def _solo_results(
    small_model: tuple[Any, Any], dtype: str, **options: Any
) -> tuple[PairRanker, list[tuple[str, Any]], list[Any]]:
    """A ranker over a copy of ``small_model``, the :func:`_calls` and each call's result made
    alone (one request per round); then its stats are reset and its first round waits for all
    the callers (:func:`_gate_first_round`)."""
    model, tokenizer = small_model
    ranker = PairRanker(
        copy.deepcopy(model), tokenizer, dtype=dtype, coalesce_window_ms=50, **options
    )
    calls = _calls()
    solo = [_call(ranker, kind, args) for kind, args in calls]
    assert ranker.stats.requests_per_round == 1.0
    ranker.reset_stats()
    _gate_first_round(ranker, CALLERS)
    return ranker, calls, solo


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "bf16-mixed"])
def test_concurrent_threads_get_their_solo_results(small_model, dtype: str) -> None:
    ranker, calls, solo = _solo_results(small_model, dtype, share_batches=True)
    shared: list[Any] = [None] * CALLERS
    errors: list[BaseException] = []
    start = threading.Barrier(CALLERS)

    def worker(k: int) -> None:
        try:
            start.wait()
            shared[k] = _call(ranker, *calls[k])
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    _assert_identical(solo, shared)
    stats = ranker.stats
    assert stats.rounds < stats.requests and stats.requests_per_round > 1.0
    assert 0.0 < stats.batch_fill <= 1.0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "bf16-mixed"])
def test_concurrent_asyncio_tasks_get_their_solo_results(small_model, dtype: str) -> None:
    ranker, calls, solo = _solo_results(small_model, dtype, share_batches=True)

    async def main() -> list[Any]:
        return await asyncio.gather(*(_acall(ranker, kind, args) for kind, args in calls))

    shared = asyncio.run(main())
    _assert_identical(solo, list(shared))
    assert ranker.stats.requests_per_round > 1.0


def test_cpu_default_serves_each_caller_its_own_batches(small_model) -> None:
    ranker, calls, solo = _solo_results(small_model, "float32")
    assert ranker.share_batches is False  # CPU
    shared: list[Any] = [None] * CALLERS
    start = threading.Barrier(CALLERS)

    def worker(k: int) -> None:
        start.wait()
        shared[k] = _call(ranker, *calls[k])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _assert_identical(solo, shared)
    stats = ranker.stats
    assert stats.requests_per_round == 1.0 and stats.rounds >= CALLERS


def test_scheduler_without_sharing_runs_one_request_per_round() -> None:
    log: list[tuple[int, int]] = []
    rounds: list[Any] = []
    scheduler = PairScheduler(_fake_run(log), batch_tokens=64, share=False, on_round=rounds.append)
    results: list[Any] = [None] * 4
    start = threading.Barrier(4)

    def worker(k: int) -> None:
        start.wait()
        results[k] = scheduler.compute([[k + 1] * 3, [k + 1] * 5])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [[3.0 * (k + 1), 5.0 * (k + 1)] for k in range(4)]
    assert [r.requests for r in rounds] == [1, 1, 1, 1]


def test_a_record_scores_the_same_alone_and_among_others(small_model) -> None:
    model, tokenizer = small_model
    ranker = PairRanker(model, tokenizer, dtype="float32")
    calls = [args for kind, args in _calls() if kind == "rank"]
    questions = [q for q, _ in calls]
    lists = [c for _, c in calls]
    together = ranker.rank_batch(questions, lists)
    alone = [ranker.rank(q, c) for q, c in zip(questions, lists, strict=True)]
    _assert_identical(alone, together)


def _fake_run(log: list[tuple[int, int]]) -> Callable[[int, list[Any]], list[float]]:
    def run(width: int, seqs: list[Any]) -> list[float]:
        assert all(len(s) <= width for s in seqs)
        log.append((width, len(seqs)))
        return [float(sum(s)) for s in seqs]

    return run


def test_scheduler_splits_large_requests_and_deduplicates() -> None:
    log: list[tuple[int, int]] = []
    rounds: list[Any] = []
    scheduler = PairScheduler(
        _fake_run(log), batch_tokens=64, max_round_tokens=64, on_round=rounds.append
    )
    seqs = [[k] * (1 + k % 20) for k in range(30)] + [[1] * 5, [1] * 5]
    done: list[int] = []
    with scheduler.caller():
        out = scheduler.compute(seqs, progress=done.append)
    assert out == [float(sum(s)) for s in seqs]
    assert sum(done) == len(seqs)
    assert len(rounds) > 1  # split over rounds by the 64-token cap
    assert sum(r.pairs for r in rounds) == len(seqs)
    assert sum(r.pairs - r.computed for r in rounds) >= 1  # [1]*5 computed once per round
    assert scheduler.compute([]) == []


def test_scheduler_error_reaches_every_caller_of_the_round() -> None:
    def boom(width: int, seqs: list[Any]) -> list[float]:
        raise MemoryError("out of memory")

    scheduler = PairScheduler(boom, batch_tokens=64)
    with pytest.raises(MemoryError):
        scheduler.compute([[1, 2]])
    # The scheduler is usable again afterwards.
    scheduler._run_batch = _fake_run([])
    assert scheduler.compute([[1, 2]]) == [3.0]


def test_scheduler_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="window_s"):
        PairScheduler(_fake_run([]), batch_tokens=8, window_s=-1)
    with pytest.raises(ValueError, match="max_round_tokens"):
        PairScheduler(_fake_run([]), batch_tokens=8, max_round_tokens=0)
    with pytest.raises(ValueError, match="coalesce_window_ms"):
        PairRanker.__init__(object.__new__(PairRanker), None, None, coalesce_window_ms=-1)  # type: ignore[arg-type]
