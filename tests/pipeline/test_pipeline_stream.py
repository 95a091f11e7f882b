"""Blender.stream / astream and the stage deadlines (members, ranking, fusion)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from pipeline_fakes import FakeGenerator, LengthRanker, RecordingFuser

from blender_core import BlendStreamEvent, LLMFuser
from blender_core.blend import Blender, BlendError
from blender_core.generators.base import BaseGenerator
from blender_core.ranking import BaseRanker, Ranking


class StreamingLLM(BaseGenerator):
    """A fusion LLM that streams scripted pieces, ``delay`` seconds before each."""

    def __init__(self, pieces: Sequence[str], *, delay: float = 0.0, name: str = "fuse-llm"):
        super().__init__(name)
        self.pieces = list(pieces)
        self.delay = delay

    def generate(self, prompt: Any, **kwargs: Any) -> str:
        time.sleep(self.delay * len(self.pieces))
        return "".join(self.pieces)

    async def agenerate(self, prompt: Any, **kwargs: Any) -> str:
        await asyncio.sleep(self.delay * len(self.pieces))
        return "".join(self.pieces)

    def stream(self, prompt: Any, **kwargs: Any) -> Iterator[str]:
        for piece in self.pieces:
            time.sleep(self.delay)
            yield piece

    async def astream(self, prompt: Any, **kwargs: Any) -> AsyncIterator[str]:
        for piece in self.pieces:
            await asyncio.sleep(self.delay)
            yield piece


class SlowRanker(BaseRanker):
    def __init__(self, delay: float) -> None:
        self.delay = delay

    def rank_batch(self, instructions: Any, candidate_lists: Any) -> list[Ranking]:
        time.sleep(self.delay)
        return [Ranking.from_scores([0.0] * len(c)) for c in candidate_lists]


class TimeoutRanker(BaseRanker):
    def rank_batch(self, instructions: Any, candidate_lists: Any) -> list[Ranking]:
        raise TimeoutError("judge call timed out")


def members() -> list[FakeGenerator]:
    return [FakeGenerator("a", "short"), FakeGenerator("b", "the longest answer")]


def split(events: list[BlendStreamEvent]) -> tuple[list[str], Any]:
    assert events[-1].kind == "result" and events[-1].result is not None
    assert all(e.kind == "delta" and e.result is None for e in events[:-1])
    return [e.text for e in events[:-1]], events[-1].result


def test_stream_yields_the_fused_answer_as_deltas_then_the_result() -> None:
    fuser = LLMFuser(StreamingLLM(["The ", "fused ", "answer."]))
    blender = Blender(members(), ranker=LengthRanker(), fuser=fuser, top_k=2)
    deltas, result = split(list(blender.stream("q")))
    assert deltas == ["The", " fused", " answer."]
    assert result.text == "".join(deltas) == "The fused answer."
    assert result.top_k == ("the longest answer", "short")
    assert set(result.candidates) == {"a", "b"} and not result.failures
    assert result.fuse_latency >= 0 and result.rank_latency >= 0
    # Same pipeline as blend().
    blended = blender.blend("q")
    assert blended.text == result.text and blended.ranking == result.ranking


async def test_astream_matches_stream() -> None:
    fuser = LLMFuser(StreamingLLM(["x", "y", "z"]))
    blender = Blender(members(), ranker=LengthRanker(), fuser=fuser)
    deltas, result = split([e async for e in blender.astream("q", input="ctx")])
    assert deltas == ["x", "y", "z"] and result.text == "xyz" and result.input == "ctx"


async def test_a_non_streaming_fuser_gives_one_delta() -> None:
    blender = Blender(members(), ranker=LengthRanker(), fuser=RecordingFuser())
    deltas, result = split([e async for e in blender.astream("q")])
    assert deltas == ["the longest answer | short"] == [result.text]
    select = Blender(members(), ranker=LengthRanker(), fuser="select")
    deltas, result = split(await asyncio.to_thread(lambda: list(select.stream("q"))))
    assert deltas == ["the longest answer"] and result.text == result.best


def test_stream_raises_blend_error_when_too_few_answer() -> None:
    blender = Blender(
        [FakeGenerator("x", error=RuntimeError("boom"))], ranker=LengthRanker(), fuser="select"
    )
    with pytest.raises(BlendError, match=r"x \(error: RuntimeError: boom\)"):
        list(blender.stream("q"))


async def test_sync_stream_works_inside_a_running_loop() -> None:
    # The one sync bridge runs it in a worker thread (a notebook cell calling the sync API).
    blender = Blender(members(), ranker=LengthRanker(), fuser="select")
    deltas, result = split(list(blender.stream("q")))
    assert deltas == ["the longest answer"] and result.text == result.best
    assert blender.blend("q").text == result.text


def test_closing_the_stream_early_is_clean() -> None:
    fuser = LLMFuser(StreamingLLM(["a"] * 20, delay=0.01))
    blender = Blender(members(), ranker=LengthRanker(), fuser=fuser)
    events = blender.stream("q")
    assert next(events).kind == "delta"
    events.close()


# -- stage deadlines ------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["blend", "ablend"])
async def test_a_slow_fuser_falls_back_to_the_best_candidate(api: str) -> None:
    fuser = LLMFuser(StreamingLLM(["never"], delay=30.0, name="slowpoke"))
    blender = Blender(members(), ranker=LengthRanker(), fuser=fuser, fuse_timeout=0.3)
    start = time.perf_counter()
    if api == "blend":
        result = await asyncio.to_thread(blender.blend, "q")
    else:
        result = await blender.ablend("q")
    assert time.perf_counter() - start < 3.0
    assert result.text == "the longest answer" == result.best
    (failure,) = result.failures
    assert failure.stage == "fusion" and failure.kind == "timeout"
    assert failure.model == "LLMFuser(slowpoke)"
    assert "no fused answer within 0.3 s" in failure.message
    assert failure.to_dict()["stage"] == "fusion"
    assert "fusion timeout" in str(failure)


def test_a_sync_fuser_stuck_in_a_thread_is_abandoned() -> None:
    class Stuck:
        def fuse(self, instruction: str, candidates: Any, *, input: str = "", **kw: Any) -> str:
            time.sleep(5)
            return "late"

        async def afuse(self, instruction: str, candidates: Any, **kw: Any) -> str:
            return await asyncio.to_thread(self.fuse, instruction, candidates)

    blender = Blender(members(), ranker=LengthRanker(), fuser=Stuck(), fuse_timeout=0.3)
    start = time.perf_counter()
    result = blender.blend("q")
    assert time.perf_counter() - start < 2.0
    assert result.text == "the longest answer"
    assert result.failures[0].model == "Stuck"


async def test_streamed_fusion_cut_at_the_deadline_keeps_what_was_sent() -> None:
    fuser = LLMFuser(StreamingLLM(["one", " two", " three", " four"] * 10, delay=0.2))
    blender = Blender(members(), ranker=LengthRanker(), fuser=fuser, fuse_timeout=0.5)
    start = time.perf_counter()
    deltas, result = split([e async for e in blender.astream("q")])
    assert time.perf_counter() - start < 3.0
    assert 1 <= len(deltas) < 40 and result.text == "".join(deltas)
    (failure,) = result.failures
    assert failure.stage == "fusion" and "stops after the" in failure.message


async def test_streamed_fusion_with_nothing_before_the_deadline_gives_the_best() -> None:
    fuser = LLMFuser(StreamingLLM(["late"], delay=10))
    blender = Blender(members(), ranker=LengthRanker(), fuser=fuser, fuse_timeout=0.3)
    deltas, result = split([e async for e in blender.astream("q")])
    assert deltas == ["the longest answer"] == [result.text]
    assert result.failures[0].stage == "fusion"


async def test_the_fusers_own_timeout_also_falls_back() -> None:
    fuser = LLMFuser(StreamingLLM(["late"], delay=10), timeout=0.2)
    blender = Blender(members(), ranker=LengthRanker(), fuser=fuser, fuse_timeout=None)
    result = await blender.ablend("q")
    assert result.text == "the longest answer"
    assert "GeneratorTimeoutError" in result.failures[0].message


@pytest.mark.parametrize("api", ["blend", "stream"])
def test_a_slow_ranker_raises_a_blend_error_naming_the_stage(api: str) -> None:
    blender = Blender(
        [*members(), FakeGenerator("c", error=ValueError("bad"))],
        ranker=SlowRanker(5.0),
        rank_timeout=0.3,
    )
    start = time.perf_counter()
    with pytest.raises(BlendError, match=r"ranking stage failed.*within 0\.3 s") as info:
        blender.blend("q") if api == "blend" else list(blender.stream("q"))
    assert time.perf_counter() - start < 2.0
    stages = [(f.model, f.stage, f.kind) for f in info.value.failures]
    assert stages == [("c", "generation", "error"), ("SlowRanker", "ranking", "timeout")]


async def test_a_timeout_raised_by_the_ranker_is_a_ranking_timeout() -> None:
    blender = Blender(members(), ranker=TimeoutRanker())
    with pytest.raises(BlendError, match="judge call timed out") as info:
        await blender.ablend("q")
    assert info.value.failures[-1].stage == "ranking"


def test_stage_timeouts_default_to_timeout_and_are_checked() -> None:
    blender = Blender(members(), ranker=LengthRanker(), timeout=7)
    assert blender.rank_timeout == 7.0 and blender.fuse_timeout == 7.0
    blender = Blender(members(), ranker=LengthRanker(), rank_timeout=None, fuse_timeout=2)
    assert blender.rank_timeout is None and blender.fuse_timeout == 2.0
    for bad in (0, -1, "3", True):
        with pytest.raises(ValueError, match="rank_timeout"):
            Blender(members(), ranker=LengthRanker(), rank_timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="fuse_timeout"):
            Blender(members(), ranker=LengthRanker(), fuse_timeout=bad)  # type: ignore[arg-type]


async def test_llm_judge_calls_are_bounded() -> None:
    from blender_core import CallableGenerator, LLMJudgeRanker
    from blender_core.generators.errors import GeneratorTimeoutError

    def slow(prompt: Any, **kwargs: Any) -> str:
        time.sleep(5)
        return "A is better"

    judge = LLMJudgeRanker(CallableGenerator(slow, name="slow-judge"), timeout=0.3)
    start = time.perf_counter()
    with pytest.raises(GeneratorTimeoutError, match=r"'slow-judge'.*within 0\.3 s"):
        await asyncio.to_thread(judge.rank, "q", ["a", "b"])
    with pytest.raises(GeneratorTimeoutError, match=r"within 0\.3 s"):
        await judge.arank("q", ["a", "b"])
    assert time.perf_counter() - start < 3.0
    # Through a Blender: a ranking-stage failure naming the judge.
    blender = Blender(members(), ranker=judge)
    with pytest.raises(BlendError, match="ranking timeout") as info:
        await blender.ablend("q")
    assert info.value.failures[-1].model == "LLMJudgeRanker(slow-judge)"
    with pytest.raises(ValueError, match="timeout"):
        LLMJudgeRanker(CallableGenerator(slow), timeout=0)
