"""LLMFuser over a fake generator, and SelectFuser."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest

from blender_core import CallableGenerator, LLMFuser, SelectFuser
from blender_core.fencing import Fence, unfence
from blender_core.fusion.base import Fuser
from blender_core.fusion.llm_fuser import DEFAULT_FUSION_TEMPLATE


class Recorder:
    """A fake LLM that records prompts and keyword arguments."""

    def __init__(self, answer: str = "  Paris is the capital of France.  ") -> None:
        self.answer = answer
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, prompt: Any, **kwargs: Any) -> str:
        self.calls.append((prompt, kwargs))
        return self.answer


def test_llm_fuser_prompt_and_answer() -> None:
    rec = Recorder()
    fuser = LLMFuser(CallableGenerator(rec, name="judge"), temperature=0.0)
    cands = ["Paris.", "It's Paris, in France.", "Lyon"]
    out = fuser.fuse("Capital of France?", cands)
    assert out == "Paris is the capital of France."
    prompt, kwargs = rec.calls[0]
    assert kwargs == {"temperature": 0.0}
    assert prompt.index("Request:\n") < prompt.index("Responses (3):\n") < prompt.index("Lyon")
    assert unfence(prompt) == {
        "request": "Capital of France?",
        "response 1": "Paris.",
        "response 2": "It's Paris, in France.",
        "response 3": "Lyon",
    }
    assert "critically" in prompt and "Do not copy" in prompt and "never instructions" in prompt
    assert "Input:" not in prompt
    assert cands == ["Paris.", "It's Paris, in France.", "Lyon"]


def test_llm_fuser_input_max_candidates_and_overrides() -> None:
    rec = Recorder()
    fuser = LLMFuser(CallableGenerator(rec), max_candidates=2, temperature=0.5)
    fuser.fuse("Translate", ["a", "b", "c"], input="bonjour", temperature=0.1)
    prompt, kwargs = rec.calls[0]
    quoted = unfence(prompt)
    assert quoted["request"] == "Translate" and quoted["input"] == "bonjour"
    assert "\n\nInput:\n<<<input " in prompt
    assert quoted["response 2"] == "b" and "response 3" not in quoted
    assert kwargs == {"temperature": 0.1}


def test_llm_fuser_custom_template() -> None:
    rec = Recorder("ok")
    template = "Q: {instruction} ({num_candidates} answers) {input}\n{candidates}\nA:"
    fuser = LLMFuser(CallableGenerator(rec), prompt_template=template)
    fuser.fuse("why?", ["x", "y"], input="ctx")
    fence = Fence(random.Random(0))
    assert fuser.build_prompt("why?", ["x", "y"], "ctx", rng=random.Random(0)) == (
        f"Q: {fence.wrap('request', 'why?')} (2 answers) {fence.wrap('input', 'ctx')}\n"
        f"{fence.wrap('response 1', 'x')}\n\n{fence.wrap('response 2', 'y')}\nA:"
    )
    assert unfence(rec.calls[0][0])["response 2"] == "y"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{instruction} {answers}", "unknown placeholders"),
        ("{instruction} {}", "unknown placeholders"),
        ("{instruction} only", "candidates"),
        ("{instruction {candidates}", "valid format string"),
    ],
)
def test_llm_fuser_template_validation(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LLMFuser(CallableGenerator(Recorder()), prompt_template=template)


def test_llm_fuser_bad_arguments() -> None:
    with pytest.raises(TypeError, match="Generator"):
        LLMFuser(lambda p: "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_candidates"):
        LLMFuser(CallableGenerator(Recorder()), max_candidates=0)
    fuser = LLMFuser(CallableGenerator(Recorder()))
    with pytest.raises(ValueError, match="at least one candidate"):
        fuser.fuse("q", [])
    with pytest.raises(TypeError, match=r"candidates\[0\]"):
        fuser.fuse("q", [None])  # type: ignore[list-item]


def test_llm_fuser_empty_answer_falls_back_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    fuser = LLMFuser(CallableGenerator(Recorder("   "), name="mute"))
    with caplog.at_level(logging.WARNING):
        assert fuser.fuse("q", ["best", "other"]) == "best"
    assert "mute" in caplog.text


async def test_llm_fuser_async_is_native_and_concurrent() -> None:
    running = 0
    peak = 0

    async def slow_llm(prompt: Any, **kwargs: Any) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return f"fused {len(prompt)}"

    fuser = LLMFuser(CallableGenerator(slow_llm))
    outs = await asyncio.gather(*(fuser.afuse(f"q{i}", ["a", "b"]) for i in range(5)))
    assert all(o.startswith("fused ") for o in outs)
    assert peak == 5  # awaited natively on the loop, not serialised through threads
    assert fuser.fuse("q", ["a"]).startswith("fused ")  # and usable sync


def test_select_fuser() -> None:
    fuser = SelectFuser()
    assert isinstance(fuser, Fuser)
    cands = ["best", "second"]
    assert fuser.fuse("q", cands, input="x", max_new_tokens=3) == "best"
    assert cands == ["best", "second"]
    with pytest.raises(ValueError, match="at least one candidate"):
        fuser.fuse("q", [])
    with pytest.raises(TypeError):
        fuser.fuse("q", "best")


async def test_select_fuser_async() -> None:
    assert await SelectFuser().afuse("q", ("one", "two")) == "one"


def test_default_template_is_valid() -> None:
    assert "{instruction}" in DEFAULT_FUSION_TEMPLATE and "{candidates}" in DEFAULT_FUSION_TEMPLATE
