"""Concurrent requests share one PairRanker, whose own scheduler coalesces their ranking into
shared rounds (no batching layer in the gateway) without changing answers; the metrics export
the ranker's real stats; and the streamed response's clean-up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from blender_core.serve.config import parse_config
from blender_core.serve.gateway import Gateway

QUESTIONS = [f"question {i}: which answer is best?" for i in range(24)]


def _gateway(pairrm: Path) -> Gateway:
    members = "\n".join(
        f'[members.m{i}]\ntype = "static"\ntext = "{text} {{prompt}}"\n'
        for i, text in enumerate(["Paris, of course:", "maybe Lyon", "I think it is Paris"])
    )
    # share_batches: on CPU a PairRanker serves concurrent callers one at a time by default.
    ranker = (
        f'{{ type = "pairrm", checkpoint = "{pairrm}", device = "cpu", dtype = "float32", '
        "share_batches = true }"
    )
    config = parse_config(
        f"""{members}
[ensembles.ranked]
members = ["m0", "m1", "m2"]
ranker = {ranker}
fuser = {{ type = "select" }}

[ensembles.wins]
members = ["m0", "m1", "m2"]
ranker = {ranker}
fuser = {{ type = "select" }}
strategy = "max_wins"

[rerankers.tiny]
type = "pairrm"
checkpoint = "{pairrm}"
device = "cpu"
dtype = "float32"
share_batches = true
"""
    )
    gateway = Gateway(config)
    gateway.load()
    assert gateway.load_error is None
    return gateway


def test_concurrent_requests_share_the_pairrankers_rounds(tiny_pairrm_dir: Path) -> None:
    from blender_core.pair_ranker import PairRanker

    gateway = _gateway(tiny_pairrm_dir)
    ranker = gateway.rankers["ranked"]
    assert isinstance(ranker, PairRanker)  # the shared ranker itself, no wrapper
    assert gateway.rankers["wins"] is ranker and gateway.rerankers["tiny"] is ranker

    def ask(name: str, question: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": question}]

    async def together(name: str) -> list[object]:
        answers = await asyncio.gather(*(gateway.blend(name, ask(name, q), {}) for q in QUESTIONS))
        return [(a.text, a.blend["ranking"]) for a in answers]

    for name in ("ranked", "wins"):
        ranker.reset_stats()
        shared = asyncio.run(together(name))
        stats = ranker.stats
        assert stats.requests >= len(QUESTIONS)
        assert stats.requests_per_round > 1, stats  # the requests' rank calls overlapped
        alone = []
        for q in QUESTIONS:
            answer = asyncio.run(gateway.blend(name, ask(name, q), {}))
            alone.append((answer.text, answer.blend["ranking"]))
        assert shared == alone  # sharing changes speed, not answers


def test_concurrent_reranks_share_rounds_and_equal_solo(tiny_pairrm_dir: Path) -> None:
    gateway = _gateway(tiny_pairrm_dir)
    ranker = gateway.rerankers["tiny"]
    documents = ["Paris", "Lyon is nice", "the capital is Paris", "bananas"]

    async def together(top_n: int | None) -> list[list[tuple[int, float]]]:
        return list(
            await asyncio.gather(*(gateway.rerank(ranker, q, documents, top_n) for q in QUESTIONS))
        )

    for top_n in (None, 1):
        ranker.reset_stats()  # type: ignore[attr-defined]
        shared = asyncio.run(together(top_n))
        assert ranker.stats.requests_per_round > 1  # type: ignore[attr-defined]
        alone = [asyncio.run(gateway.rerank(ranker, q, documents, top_n)) for q in QUESTIONS]
        assert shared == alone


def test_metrics_export_the_pairrankers_stats(tiny_pairrm_dir: Path) -> None:
    gateway = _gateway(tiny_pairrm_dir)
    ranker = gateway.rankers["ranked"]
    ranker.reset_stats()  # type: ignore[attr-defined]
    asyncio.run(gateway.blend("ranked", [{"role": "user", "content": "hi"}], {}))
    stats = ranker.stats  # type: ignore[attr-defined]
    text = gateway.metrics.render().decode()
    values = {
        line.split("{")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("blender_ranker_") and 'ranker="ensemble:ranked"' in line
    }
    assert values["blender_ranker_pairs_total"] == stats.sequences > 0
    assert values["blender_ranker_forward_calls_total"] == stats.forward_calls
    assert values["blender_ranker_rounds_total"] == stats.rounds >= 1
    assert values["blender_ranker_requests_total"] == stats.requests
    assert values["blender_ranker_requests_per_round"] == stats.requests_per_round
    assert values["blender_ranker_batch_fill"] == stats.batch_fill
    assert values["blender_ranker_padding_efficiency"] == stats.padding_efficiency
    assert 0 < stats.batch_fill <= 1 and 0 < stats.padding_efficiency <= 1


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
