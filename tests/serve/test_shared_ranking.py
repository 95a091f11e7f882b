"""SharedBatchRanker: concurrent requests share rank_batch calls without changing answers; and
the streamed response's clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from blender_core.ranking import BaseRanker, Ranking
from blender_core.serve.batching import SharedBatchRanker


class CountingRanker(BaseRanker):
    """Scores by length; records every rank_batch call; 'boom' in a candidate raises."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        self.gate.wait(10)
        self.calls.append(len(instructions))
        if any("boom" in c for cands in candidate_lists for c in cands):
            raise ValueError("boom candidate")
        return [Ranking.from_scores([float(len(c)) for c in cands]) for cands in candidate_lists]


def test_concurrent_calls_share_one_batch() -> None:
    inner = CountingRanker()
    sizes: list[int] = []
    shared = SharedBatchRanker(inner, max_wait=0.01, on_batch=sizes.append)

    async def main() -> list[Ranking]:
        return await asyncio.gather(
            *(shared.arank(f"q{i}", ["a" * (i + 1), "bb", "c"]) for i in range(20))
        )

    rankings = asyncio.run(main())
    assert inner.calls == [20] and sizes == [20]
    for i, ranking in enumerate(rankings):
        assert ranking == inner.rank(f"q{i}", ["a" * (i + 1), "bb", "c"])


def test_calls_arriving_during_a_batch_form_the_next_one() -> None:
    inner = CountingRanker()
    shared = SharedBatchRanker(inner, max_wait=0.0, max_requests=4)

    async def main() -> None:
        inner.gate.clear()
        first = asyncio.ensure_future(shared.arank("q", ["x", "yy"]))
        await asyncio.sleep(0.05)  # the first batch (one call) is running, blocked
        rest = [asyncio.ensure_future(shared.arank("q", ["x", "yy"])) for _ in range(6)]
        await asyncio.sleep(0.05)
        inner.gate.set()
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert inner.calls == [1, 4, 2]


def test_a_failing_request_fails_alone() -> None:
    inner = CountingRanker()
    shared = SharedBatchRanker(inner, max_wait=0.01)

    async def main() -> list[object]:
        return await asyncio.gather(
            shared.arank("q", ["ok", "fine"]),
            shared.arank("q", ["boom", "x"]),
            shared.arank("q", ["also", "good"]),
            return_exceptions=True,
        )

    good, bad, other = asyncio.run(main())
    assert isinstance(good, Ranking) and isinstance(other, Ranking)
    assert isinstance(bad, ValueError)


def test_a_cancelled_request_leaves_the_others() -> None:
    inner = CountingRanker()
    shared = SharedBatchRanker(inner, max_wait=0.05)

    async def main() -> Ranking:
        doomed = asyncio.ensure_future(shared.arank("q", ["a", "bb"]))
        kept = asyncio.ensure_future(shared.arank("q", ["ccc", "d"]))
        await asyncio.sleep(0)
        doomed.cancel()
        return await kept

    assert asyncio.run(main()).best == 0
    assert inner.calls == [1]  # the cancelled request was dropped before its batch ran


def test_pairranker_answers_do_not_depend_on_the_batch(tiny_pairrm_dir: Path) -> None:
    from blender_core.pair_ranker import PairRanker

    ranker = PairRanker.from_pretrained(tiny_pairrm_dir, device="cpu", dtype="float32")
    shared = SharedBatchRanker(ranker, max_wait=0.01)
    requests = [
        ("Say hi", ["hi!", "go away", "hello there, friend"]),
        ("Add 2 and 2", ["4", "five", "2 + 2 = 4", "four"]),
        ("Name a colour", ["blue", "a banana"]),
    ]

    async def main() -> list[Ranking]:
        return await asyncio.gather(*(shared.arank(q, c) for q, c in requests))

    ranker.reset_stats()
    together = asyncio.run(main())
    assert ranker.stats.sequences == 6 + 12 + 2
    for (query, candidates), ranking in zip(requests, together, strict=True):
        alone = ranker.rank(query, candidates)
        assert ranking.order == alone.order
        assert ranking.scores == pytest.approx(alone.scores, abs=1e-5)


def test_stream_clean_up_runs_when_the_client_left_before_the_first_byte() -> None:
    from blender_core.serve.app import _Stream

    started: list[bool] = []
    cleaned: list[str] = []

    async def body() -> AsyncIterator[bytes]:
        started.append(True)
        yield b"data: never sent\n\n"

    async def main() -> None:
        response = _Stream(body(), media_type="text/event-stream")

        async def cleanup() -> None:
            cleaned.append("done")

        response.cleanups.append(cleanup)

        async def receive() -> dict[str, str]:
            return {"type": "http.disconnect"}  # the client is already gone

        async def send(message: object) -> None:
            await asyncio.sleep(0.05)
            raise OSError("client gone")

        with contextlib.suppress(OSError):
            await response({"type": "http", "asgi": {"spec_version": "2.0"}}, receive, send)

    asyncio.run(main())
    assert started == []  # the body never ran: its own finally could not have cleaned up
    assert cleaned == ["done"]  # the in-flight slot and the blend are released either way
