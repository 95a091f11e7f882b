"""The ranking step the adapters trace: RankStep, planned passes, the rank_tracer hook."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from blender_core import CallableGenerator
from blender_core.blend import Blender, RankStep, planned_passes
from blender_core.loading import load_ranker
from blender_core.ranking import Ranking


def _generators(n: int) -> list[CallableGenerator]:
    return [
        CallableGenerator(lambda p, i=i: f"answer number {i} " + "x" * i, name=f"m{i}")
        for i in range(n)
    ]


def test_planned_passes_of_other_rankers_is_unknown() -> None:
    assert planned_passes(load_ranker("random"), 5, None, 2) is None


def test_the_tracer_sees_the_step_and_returns_the_ranking() -> None:
    seen: list[RankStep] = []

    async def tracer(step: RankStep, rank: Callable[[], Awaitable[Ranking]]) -> Ranking:
        seen.append(step)
        return await rank()

    blender = Blender(_generators(4), "consensus", "select", top_k=2, rank_tracer=tracer)
    result = blender.blend("q")
    (step,) = seen
    assert (step.ranker, step.n, step.strategy, step.top_k, step.passes) == (
        "ConsensusRanker",
        4,
        None,
        2,
        None,
    )
    assert step.to_dict() == {
        "ranker": "ConsensusRanker",
        "n": 4,
        "strategy": None,
        "top_k": 2,
        "passes": None,
    }
    assert len(result.ranking) == 4


def test_a_failing_tracer_fails_the_blend() -> None:
    async def tracer(step: RankStep, rank: Callable[[], Awaitable[Ranking]]) -> Ranking:
        raise RuntimeError("tracing broke")

    blender = Blender(_generators(2), "consensus", "select", rank_tracer=tracer)
    with pytest.raises(RuntimeError, match="tracing broke"):
        asyncio.run(blender.ablend("q"))


@pytest.mark.parametrize(
    ("n", "strategy", "top_k"),
    [
        (10, None, 1),
        (10, None, 3),
        (7, None, 2),
        (5, "max_wins", 2),
        (6, "bubble", 1),
        (3, None, 3),
    ],
)
def test_planned_passes_match_the_pairs_a_pair_ranker_scores(
    tiny_pairrm_dir: Path, n: int, strategy: str | None, top_k: int
) -> None:
    ranker = load_ranker(str(tiny_pairrm_dir), device="cpu")
    seen: list[RankStep] = []

    async def tracer(step: RankStep, rank: Callable[[], Awaitable[Ranking]]) -> Ranking:
        seen.append(step)
        return await rank()

    blender = Blender(
        _generators(n), ranker, "select", top_k=top_k, strategy=strategy, rank_tracer=tracer
    )
    ranker.reset_stats()  # type: ignore[attr-defined]
    blender.blend("Which answer is best?")
    (step,) = seen
    assert step.ranker == "PairRanker"
    assert step.passes == ranker.stats.sequences  # type: ignore[attr-defined]
    expected = {(10, 1): 18, (10, 3): 30}.get((n, top_k))
    if strategy is None and expected is not None:
        assert step.passes == expected  # the figures of PairRanker.rank's docs


class _Pieces(CallableGenerator):
    """Answers in three streamed pieces."""

    def stream(self, prompt: object, **kwargs: object):  # type: ignore[no-untyped-def,override]
        yield from ("fused ", "in ", "pieces")

    async def astream(self, prompt: object, **kwargs: object):  # type: ignore[no-untyped-def,override]
        for piece in ("fused ", "in ", "pieces"):
            yield piece


def test_stream_candidates_streams_the_fusion_of_given_answers() -> None:
    from blender_core import LLMFuser

    fuser = LLMFuser(_Pieces(lambda p: "fused in pieces", name="fuser"))
    blender = Blender(ranker="consensus", fuser=fuser, top_k=2)
    answers = {"a": "one answer", "b": "another answer"}
    events = list(blender.stream_candidates("q", answers, latencies={"a": 1.0}))
    deltas = [e.text for e in events if e.kind == "delta"]
    assert len(deltas) == 3 and "".join(deltas) == "fused in pieces"
    result = events[-1].result
    assert result is not None and result.text == "fused in pieces"
    assert result.candidates == answers and result.latencies == {"a": 1.0}

    async def collect() -> list[str]:
        return [e.text async for e in blender.astream_candidates("q", answers) if e.kind == "delta"]

    deltas = asyncio.run(collect())  # the async path streams the same three pieces
    assert len(deltas) == 3 and "".join(deltas) == "fused in pieces"
    with pytest.raises(TypeError, match="candidates"):
        list(blender.stream_candidates("q", "not a list"))  # type: ignore[arg-type]
