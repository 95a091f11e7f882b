"""The streaming API of generators and of the LLM fuser: stream/astream, deadlines, early close."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from blender_core import CallableGenerator, HuggingFaceGenerator, LLMFuser
from blender_core.generators.base import BaseGenerator
from blender_core.generators.errors import GeneratorTimeoutError


class PieceGenerator(BaseGenerator):
    """Streams scripted pieces (with a delay before each); generate() joins them."""

    def __init__(self, pieces: list[str], *, delay: float = 0.0, name: str = "pieces") -> None:
        super().__init__(name)
        self.pieces = pieces
        self.delay = delay
        self.closed = threading.Event()
        self.prompts: list[Any] = []

    def generate(self, prompt: Any, **kwargs: Any) -> str:
        self.prompts.append(prompt)
        time.sleep(self.delay * len(self.pieces))
        return "".join(self.pieces)

    def stream(self, prompt: Any, **kwargs: Any) -> Iterator[str]:
        self.prompts.append(prompt)
        try:
            for piece in self.pieces:
                time.sleep(self.delay)
                yield piece
        finally:
            self.closed.set()

    async def astream(self, prompt: Any, **kwargs: Any) -> AsyncIterator[str]:
        self.prompts.append(prompt)
        try:
            for piece in self.pieces:
                await asyncio.sleep(self.delay)
                yield piece
        finally:
            self.closed.set()


# -- BaseGenerator defaults ------------------------------------------------------------------


async def test_default_stream_yields_the_whole_answer_once() -> None:
    gen = CallableGenerator(lambda prompt, **kw: f"<{prompt}|{kw.get('x')}>", name="echo")
    assert list(gen.stream("hi", x=1)) == ["<hi|1>"]
    assert [d async for d in gen.astream("hi", x=2)] == ["<hi|2>"]


# -- HuggingFaceGenerator: real token streaming ------------------------------------------------


@pytest.fixture(scope="module")
def causal(tiny_causal_dir: Path) -> HuggingFaceGenerator:
    return HuggingFaceGenerator(tiny_causal_dir, name="tiny", max_new_tokens=12, seed=0)


def test_hf_stream_matches_generate(causal: HuggingFaceGenerator) -> None:
    deltas = list(causal.stream("What is the capital of France?"))
    assert len(deltas) > 1, deltas  # token by token, not one block
    assert all(isinstance(d, str) and d for d in deltas)
    assert "".join(deltas) == causal.generate("What is the capital of France?")


async def test_hf_astream_matches_generate_and_keeps_the_loop_free(
    causal: HuggingFaceGenerator,
) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    deltas = [d async for d in causal.astream("Tell me a story", max_new_tokens=24)]
    task.cancel()
    assert len(deltas) > 1
    assert "".join(deltas) == causal.generate("Tell me a story", max_new_tokens=24)
    assert ticks > 0  # the event loop ran while the model generated


def test_hf_seeded_sampled_stream_matches_generate(causal: HuggingFaceGenerator) -> None:
    options = {"seed": 3, "temperature": 1.3, "max_new_tokens": 16}
    assert "".join(causal.stream("Hello", **options)) == causal.generate("Hello", **options)


def test_hf_seq2seq_stream_matches_generate(tiny_genfuser_dir: Path) -> None:
    t5 = HuggingFaceGenerator(tiny_genfuser_dir, name="t5", do_sample=False, max_new_tokens=10)
    assert "".join(t5.stream("summarise: a b c")) == t5.generate("summarise: a b c")


def test_hf_closing_the_stream_stops_generation(causal: HuggingFaceGenerator) -> None:
    # 100k tokens would take many minutes: only the stop can free the model quickly.
    stream = causal.stream("Tell me a long story", max_new_tokens=100_000)
    first = next(stream)
    assert first
    stream.close()
    # The generation thread stops at its next token and frees the model.
    lock = causal._shared.generate_lock
    assert lock.acquire(timeout=30), "generation kept running after the stream was closed"
    lock.release()
    assert isinstance(causal.generate("Hi", max_new_tokens=2), str)


def test_hf_stream_error_reaches_the_consumer(causal: HuggingFaceGenerator) -> None:
    with pytest.raises((TypeError, ValueError)):
        list(causal.stream("Hi", num_beams="many"))


# -- LLMFuser.stream / astream -------------------------------------------------------------------


def test_llm_fuser_stream_concatenates_to_fuse() -> None:
    gen = PieceGenerator(["  \n", " Paris", " is", " the capital.", "  ", "\n"])
    fuser = LLMFuser(gen)
    deltas = list(fuser.stream("Capital of France?", ["Paris.", "Lyon."]))
    assert deltas == ["Paris", " is", " the capital."]
    assert "".join(deltas) == fuser.fuse("Capital of France?", ["Paris.", "Lyon."])
    # The prompt is build_prompt's (its delimiters are drawn per call).
    prompt = gen.prompts[0]
    assert prompt[:40] == fuser.build_prompt("Capital of France?", ["Paris.", "Lyon."])[:40]
    assert all(text in prompt for text in ("Capital of France?", "Paris.", "Lyon."))


async def test_llm_fuser_astream_and_input() -> None:
    gen = PieceGenerator(["A", "B ", " C"])
    fuser = LLMFuser(gen)
    deltas = [d async for d in fuser.astream("Q", ["x", "y"], input="ctx")]
    assert deltas == ["A", "B", "  C"]  # trailing spaces wait for the text after them
    assert "".join(deltas) == await fuser.afuse("Q", ["x", "y"], input="ctx")
    assert "Input:" in gen.prompts[0] and "\nctx\n" in gen.prompts[0]


async def test_llm_fuser_stream_over_a_non_streaming_generator() -> None:
    class Plain:
        name = "plain"

        def generate(self, prompt: Any, **kwargs: Any) -> str:
            return " fused "

        async def agenerate(self, prompt: Any, **kwargs: Any) -> str:
            return " fused "

    fuser = LLMFuser(Plain())  # type: ignore[arg-type]
    assert list(fuser.stream("Q", ["a"])) == ["fused"]
    assert [d async for d in fuser.astream("Q", ["a"])] == ["fused"]


async def test_llm_fuser_stream_falls_back_to_the_best_candidate_when_empty() -> None:
    fuser = LLMFuser(PieceGenerator([" ", "\n"]))
    assert list(fuser.stream("Q", ["best", "other"])) == ["best"]
    assert [d async for d in fuser.astream("Q", ["best", "other"])] == ["best"]


async def test_llm_fuser_stream_rejects_non_string_deltas() -> None:
    fuser = LLMFuser(PieceGenerator(["ok", 3]))  # type: ignore[list-item]
    with pytest.raises(TypeError, match="streamed int"):
        list(fuser.stream("Q", ["a"]))
    with pytest.raises(TypeError, match="streamed int"):
        [d async for d in fuser.astream("Q", ["a"])]


async def test_llm_fuser_timeout_bounds_fuse_and_streams() -> None:
    slow = PieceGenerator(["a"] * 50, delay=0.1, name="slow")
    fuser = LLMFuser(slow, timeout=0.4)
    for run in (
        lambda: fuser.fuse("Q", ["x"]),
        lambda: list(fuser.stream("Q", ["x"])),
    ):
        start = time.perf_counter()
        with pytest.raises(GeneratorTimeoutError, match=r"'slow'.*within 0\.4 s"):
            run()
        assert time.perf_counter() - start < 2.0
    start = time.perf_counter()
    with pytest.raises(GeneratorTimeoutError, match=r"within 0\.4 s"):
        await fuser.afuse("Q", ["x"])
    with pytest.raises(GeneratorTimeoutError, match=r"within 0\.4 s"):
        [d async for d in fuser.astream("Q", ["x"])]
    assert time.perf_counter() - start < 3.0
    assert slow.closed.wait(5)  # the abandoned stream was closed


async def test_llm_fuser_timeout_does_not_hide_the_generators_own_timeout() -> None:
    async def own(prompt: Any, **kwargs: Any) -> str:
        raise TimeoutError("upstream deadline")

    fuser = LLMFuser(CallableGenerator(own, name="own"), timeout=5)
    with pytest.raises(TimeoutError, match="upstream deadline"):
        await fuser.afuse("Q", ["x"])


def test_llm_fuser_rejects_a_bad_timeout() -> None:
    with pytest.raises(ValueError, match="timeout"):
        LLMFuser(PieceGenerator(["a"]), timeout=0)
