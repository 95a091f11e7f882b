"""The Blender pipeline: concurrency, failures, merging, min_candidates, fusion, sync/async."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
from pipeline_fakes import FakeGenerator, LengthRanker, RecordingFuser

from blender_core.blend import Blender, BlendError, BlendResult, ModelFailure
from blender_core.rankers.random import RandomRanker


def make_blender(generators: Any, **kwargs: Any) -> Blender:
    kwargs.setdefault("ranker", LengthRanker())
    kwargs.setdefault("fuser", RecordingFuser())
    return Blender(generators, **kwargs)


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_models_run_concurrently(mode: str) -> None:
    generators = [
        FakeGenerator(f"m{i}", f"answer {'x' * i}", delay=1.0, mode=mode) for i in range(4)
    ]
    blender = make_blender(generators, timeout=10)
    start = time.perf_counter()
    result = blender.blend("q")
    elapsed = time.perf_counter() - start
    assert elapsed < 2.5, f"4 models of 1 s took {elapsed:.2f} s: not concurrent"
    assert len(result.candidates) == 4 and not result.failures
    assert all(0.9 < latency < 2.5 for latency in result.latencies.values())


def test_callable_generators_run_concurrently() -> None:
    from blender_core.generators.callable import CallableGenerator

    def slow(prompt: str) -> str:
        time.sleep(1.0)
        return f"sync {prompt}"

    async def aslow(prompt: str) -> str:
        await asyncio.sleep(1.0)
        return f"async {prompt}"

    generators = {
        "s1": CallableGenerator(slow),
        "s2": CallableGenerator(slow),
        "a1": CallableGenerator(aslow),
        "a2": CallableGenerator(aslow),
    }
    start = time.perf_counter()
    result = make_blender(generators).blend("q")
    assert time.perf_counter() - start < 2.5
    assert result.candidates == {"s1": "sync q", "s2": "sync q", "a1": "async q", "a2": "async q"}
    assert result.texts == ("sync q", "async q")
    assert result.models_by_text == (("s1", "s2"), ("a1", "a2"))


def test_failing_and_timed_out_models_are_recorded() -> None:
    generators = [
        FakeGenerator("good", "a good long answer"),
        FakeGenerator("also-good", "short one"),
        FakeGenerator("broken", error=RuntimeError("boom")),
        FakeGenerator("slow", "too late", delay=5.0),
        FakeGenerator("slow-sync", "too late", delay=5.0, mode="sync"),
    ]
    start = time.perf_counter()
    result = make_blender(generators, timeout=0.5).blend("q")
    assert time.perf_counter() - start < 2.0  # no waiting for the stuck sync thread
    assert list(result.candidates) == ["good", "also-good"]
    failures = {f.model: f for f in result.failures}
    assert set(failures) == {"broken", "slow", "slow-sync"}
    assert failures["broken"].kind == "error"
    assert failures["broken"].message == "RuntimeError: boom"
    assert isinstance(failures["broken"].exception, RuntimeError)
    assert failures["slow"].kind == "timeout" and "0.5 s" in failures["slow"].message
    assert failures["slow-sync"].kind == "timeout"
    assert set(result.latencies) == {"good", "also-good", "broken", "slow", "slow-sync"}
    assert 0.4 < result.latencies["slow"] < 1.5
    assert result.best == "a good long answer"
    json.dumps(result.to_dict())  # JSON-safe, exceptions reduced to messages
    assert result.to_dict()["failures"][0] == {
        "model": "broken",
        "kind": "error",
        "message": "RuntimeError: boom",
    }


def test_a_model_raising_timeouterror_itself_is_a_timeout_with_its_own_message() -> None:
    # The kind is the cause (issue 24): the member's own timeout is a timeout, and its message
    # (not "no answer within 5 s") tells it apart from the blend's deadline.
    generators = [FakeGenerator("ok", "fine"), FakeGenerator("t", error=TimeoutError("upstream"))]
    result = make_blender(generators, timeout=5).blend("q")
    assert result.failures == (ModelFailure("t", "timeout", "TimeoutError: upstream"),)


def test_all_failing_raise_blend_error_naming_each_model_and_cause() -> None:
    generators = [
        FakeGenerator("alpha", error=ValueError("bad key")),
        FakeGenerator("beta", "x", delay=3.0),
        FakeGenerator("gamma", "   \n"),
        FakeGenerator("delta", answer=lambda p: 42),
    ]
    with pytest.raises(BlendError) as info:
        make_blender(generators, timeout=0.3).blend("q")
    message = str(info.value)
    assert "alpha (error: ValueError: bad key)" in message
    assert "beta (timeout: no answer within 0.3 s)" in message
    assert "gamma (error: empty answer)" in message
    assert "delta (error: TypeError: returned int, not str)" in message
    assert [f.model for f in info.value.failures] == ["alpha", "beta", "gamma", "delta"]
    assert isinstance(info.value, RuntimeError)


def test_empty_answers_are_failures() -> None:
    generators = [FakeGenerator("a", "real answer"), FakeGenerator("b", "")]
    result = make_blender(generators).blend("q")
    assert result.failures == (ModelFailure("b", "error", "empty answer"),)
    assert dict(result.candidates) == {"a": "real answer"}


def test_identical_answers_are_merged_and_ranked_once() -> None:
    ranker = LengthRanker()
    generators = [
        FakeGenerator("m1", "Paris."),
        FakeGenerator("m2", "It is Paris, of course."),
        FakeGenerator("m3", "Paris.\n"),  # equal after stripping
        FakeGenerator("m4", "It is Paris, of course."),
    ]
    result = make_blender(generators, ranker=ranker).blend("q")
    assert result.texts == ("Paris.", "It is Paris, of course.")
    assert result.models_by_text == (("m1", "m3"), ("m2", "m4"))
    assert ranker.calls == [("q", ["Paris.", "It is Paris, of course."])]
    assert result.best == "It is Paris, of course." and result.best_models == ("m2", "m4")
    assert result.candidates["m3"] == "Paris.\n"  # raw answers kept by model
    assert len(result.ranking) == 2


def test_min_candidates_counts_distinct_texts() -> None:
    same = [FakeGenerator(f"m{i}", "same") for i in range(3)]
    with pytest.raises(BlendError, match=r"only 1 distinct answer.*min_candidates=2.*identical"):
        make_blender(same, min_candidates=2).blend("q")
    mixed = [
        FakeGenerator("a", "one"),
        FakeGenerator("b", "two"),
        FakeGenerator("c", error=OSError("down")),
    ]
    result = make_blender(mixed, min_candidates=2).blend("q")
    assert len(result.texts) == 2 and len(result.failures) == 1
    mixed.append(FakeGenerator("d", error=OSError("down too")))
    with pytest.raises(BlendError, match="c \\(error: OSError: down\\); d \\(error"):
        make_blender(mixed, min_candidates=3).blend("q")


def test_top_k_and_fuser_gets_best_first_with_instruction_and_input() -> None:
    fuser = RecordingFuser()
    generators = [FakeGenerator(f"m{i}", "x" * (i + 1)) for i in range(5)]
    result = make_blender(generators, fuser=fuser, top_k=3).blend("task", input="ctx")
    assert fuser.calls == [("task", ["xxxxx", "xxxx", "xxx"], "ctx")]
    assert result.top_k == ("xxxxx", "xxxx", "xxx")
    assert result.text == "xxxxx | xxxx | xxx"
    assert generators[0].prompts == ["task\n\nctx"]
    assert result.instruction == "task" and result.input == "ctx"
    assert result.rank_latency >= 0 and result.fuse_latency >= 0
    # top_k larger than the number of candidates: all of them
    small = make_blender(generators[:2], top_k=10).blend("q")
    assert small.top_k == ("xx", "x")


def test_select_fuser_returns_the_best() -> None:
    generators = [FakeGenerator("m1", "short"), FakeGenerator("m2", "much longer answer")]
    for fuser in (None, "select"):
        result = make_blender(generators, fuser=fuser).blend("q")
        assert result.text == "much longer answer" == result.best


def test_ranker_sees_instruction_and_input() -> None:
    ranker = LengthRanker()
    make_blender([FakeGenerator("a", "1"), FakeGenerator("b", "22")], ranker=ranker).blend(
        "task", input="ctx"
    )
    assert ranker.calls[0][0] == "task\n\nctx"


def test_generator_mapping_names_and_chat_prompt_type() -> None:
    gen = FakeGenerator("internal-name", "hi")
    result = make_blender({"public": gen}).blend("q")
    assert list(result.candidates) == ["public"]


def test_blend_candidates_with_list_and_mapping() -> None:
    blender = make_blender([FakeGenerator("unused", "x")])
    listed = blender.blend_candidates("q", ["a", "bbb", "cc", "a"])
    assert listed.texts == ("a", "bbb", "cc")
    assert listed.models_by_text[0] == ("candidate_0", "candidate_3")
    assert listed.top_k == ("bbb", "cc", "a")
    failure = ModelFailure("gone", "timeout", "no answer within 3 s")
    mapped = blender.blend_candidates(
        "q",
        {"gpt": "long answer here", "llama": "short", "empty": ""},
        input="i",
        failures=[failure],
        latencies={"gpt": 1.5, "llama": 0.5, "gone": 3.0},
    )
    assert mapped.best_models == ("gpt",)
    assert mapped.failures == (failure, ModelFailure("empty", "error", "empty answer"))
    assert dict(mapped.latencies) == {"gpt": 1.5, "llama": 0.5, "gone": 3.0}
    with pytest.raises(BlendError, match="gone"):
        blender.blend_candidates("q", {}, failures=[failure])
    with pytest.raises(TypeError, match="list of strings or a mapping"):
        blender.blend_candidates("q", "abc")
    with pytest.raises(ValueError, match="both a candidate and a failure"):
        blender.blend_candidates("q", {"gone": "x"}, failures=[failure])


async def test_ablend_candidates() -> None:
    blender = make_blender([FakeGenerator("unused", "x")], top_k=1)
    result = await blender.ablend_candidates("q", ["a", "bb"])
    assert result.text == "bb"


def test_sync_blend_from_threads_without_a_loop() -> None:
    blender = make_blender(
        [FakeGenerator("a", lambda p: f"a:{p}"), FakeGenerator("b", lambda p: f"bb:{p}")]
    )
    results: dict[int, BlendResult] = {}

    def work(i: int) -> None:
        results[i] = blender.blend(f"q{i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {i: r.best for i, r in results.items()} == {i: f"bb:q{i}" for i in range(4)}


async def test_sync_blend_inside_a_running_loop_runs_through_the_bridge() -> None:
    # A sync call from a notebook cell: the one bridge runs it in a worker thread.
    blender = make_blender([FakeGenerator("a", "x")])
    assert blender.blend("q").text == "x"
    assert blender.blend_candidates("q", ["x"]).text == "x"


async def test_many_concurrent_ablend_calls_get_their_own_answers() -> None:
    def answer(prefix: str) -> Any:
        return lambda prompt: f"{prefix} answer to {prompt}"

    generators = [
        FakeGenerator("short", answer("s"), delay=0.3),
        FakeGenerator("longer", answer("longer"), delay=0.3, mode="sync"),
    ]
    blender = make_blender(generators)
    start = time.perf_counter()
    results = await asyncio.gather(*(blender.ablend(f"question {i}") for i in range(10)))
    assert time.perf_counter() - start < 2.0  # 10 blends of 0.3 s models overlap
    for i, result in enumerate(results):
        assert result.instruction == f"question {i}"
        assert result.best == f"longer answer to question {i}"
        assert result.candidates["short"] == f"s answer to question {i}"


def test_blend_batch_keeps_order_and_can_return_exceptions() -> None:
    def answer(prompt: str) -> str:
        if prompt == "fail":
            raise RuntimeError("nope")
        return f"answer to {prompt}"

    blender = make_blender([FakeGenerator("a", answer, delay=0.2)])
    start = time.perf_counter()
    results = blender.blend_batch(["q1", "q2", "q3", "q4"], show_progress=True)
    assert time.perf_counter() - start < 0.8 * 2
    assert [r.text for r in results] == [f"answer to q{i}" for i in range(1, 5)]
    inputs_results = blender.blend_batch(["q", "q"], inputs=["x", "y"], max_concurrency=1)
    assert [r.text for r in inputs_results] == ["answer to q\n\nx", "answer to q\n\ny"]
    mixed = blender.blend_batch(["ok", "fail"], return_exceptions=True)
    assert isinstance(mixed[0], BlendResult) and isinstance(mixed[1], BlendError)
    with pytest.raises(BlendError, match="RuntimeError: nope"):
        blender.blend_batch(["ok", "fail"])
    with pytest.raises(ValueError, match="one input per instruction"):
        blender.blend_batch(["a", "b"], inputs=["x"])


def test_strategy_is_passed_to_the_ranker() -> None:
    seen: list[Any] = []

    class StrategyRanker(LengthRanker):
        def rank(self, instruction: str, candidates: Any, *, strategy: str = "x") -> Any:
            seen.append(strategy)
            return super().rank(instruction, candidates)

    generators = [FakeGenerator("a", "1"), FakeGenerator("b", "22")]
    make_blender(generators, ranker=StrategyRanker(), strategy="max_wins").blend("q")
    assert seen == ["max_wins"]
    with pytest.raises(ValueError, match="takes no strategy"):
        make_blender(generators, ranker=RandomRanker(), strategy="max_wins")


def test_constructor_validation() -> None:
    gen = FakeGenerator("a", "x")
    with pytest.raises(ValueError, match="no generators"):
        Blender([], ranker="random").blend("q")
    with pytest.raises(ValueError, match="duplicate generator name 'a'"):
        Blender([gen, FakeGenerator("a", "y")], ranker="random")
    with pytest.raises(TypeError, match="CallableGenerator"):
        Blender([lambda p: p], ranker="random")  # type: ignore[list-item]
    with pytest.raises(TypeError, match="list of Generators"):
        Blender(gen, ranker="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_k"):
        Blender([gen], ranker="random", top_k=0)
    with pytest.raises(ValueError, match="min_candidates"):
        Blender([gen], ranker="random", min_candidates=0)
    with pytest.raises(ValueError, match="can never be met"):
        Blender([gen], ranker="random", min_candidates=2)
    for bad in (0, -1.0, "5"):
        with pytest.raises(ValueError, match="timeout"):
            Blender([gen], ranker="random", timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ranker must be"):
        Blender([gen], ranker=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fuser must be"):
        Blender([gen], ranker="random", fuser=3)  # type: ignore[arg-type]
    blender = Blender([gen], ranker="random", timeout=None)
    assert blender.blend("q").text == "x"
    assert "Blender(generators=['a']" in repr(blender)
    with pytest.raises(TypeError, match="instruction must be a string"):
        blender.blend(None)  # type: ignore[arg-type]


def test_fuser_errors_propagate() -> None:
    class Broken(RecordingFuser):
        def fuse(self, instruction: str, candidates: Any, *, input: str = "", **kw: Any) -> str:
            raise RuntimeError("fuser down")

    with pytest.raises(RuntimeError, match="fuser down"):
        make_blender([FakeGenerator("a", "x")], fuser=Broken()).blend("q")


def test_blend_result_pickles() -> None:
    import pickle

    result = make_blender(
        [FakeGenerator("a", "one"), FakeGenerator("b", error=RuntimeError("x"))]
    ).blend("q")
    clone = pickle.loads(pickle.dumps(result))
    assert clone == result and clone.failures[0].message == "RuntimeError: x"


def test_candidates_only_blender_needs_no_generators() -> None:
    blender = Blender(ranker="random", min_candidates=2)
    result = blender.blend_candidates("q", {"a": "one", "b": "two"})
    assert set(result.candidates) == {"a", "b"}
    with pytest.raises(BlendError, match="2"):
        blender.blend_candidates("q", ["same", "same"])
