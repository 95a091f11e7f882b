"""The LlamaIndex adapter on the core machinery: runner semantics and the shared schema."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.runnables import RunnableLambda

from langchain_blender import ChatBlender
from llamaindex_blender import BlenderLLM

from .conftest import FixedLLM, JoinFuser, LengthRanker


class _OwnTimeoutLLM(FixedLLM):
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise TimeoutError("upstream read timed out")

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise TimeoutError("upstream read timed out")


class _SlowLLM(FixedLLM):
    """Slow in both forms (the async one sleeps on the loop, as a remote client waits)."""

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        await asyncio.sleep(self.delay)
        return self.complete(prompt, formatted=formatted)


def _ensemble() -> BlenderLLM:
    return BlenderLLM(
        [
            FixedLLM(answer="apple", name="ok"),
            _OwnTimeoutLLM(answer="", name="own"),
            _SlowLLM(answer="late", name="slow", delay=2.0),
        ],
        ranker=LengthRanker(),
        fuser=JoinFuser(),
        timeout=0.3,
    )


def test_a_members_own_timeout_and_ours_are_timeouts_told_apart_by_message() -> None:
    llm = _ensemble()
    for response in (llm.complete("q"), asyncio.run(llm.acomplete("q"))):
        failures = {f["model"]: f for f in response.additional_kwargs["failures"]}
        assert failures["own"] == {
            "model": "own",
            "kind": "timeout",
            "message": "TimeoutError: upstream read timed out",
        }
        assert failures["slow"] == {
            "model": "slow",
            "kind": "timeout",
            "message": "no answer within 0.3 s",
        }


def test_both_frameworks_report_a_blend_with_the_same_keys() -> None:
    llama = BlenderLLM(
        [FixedLLM(answer="apple", name="short"), FixedLLM(answer="a ripe banana", name="long")],
        ranker=LengthRanker(),
        fuser=JoinFuser(),
    ).complete("q")
    lang = ChatBlender(
        models={
            "short": RunnableLambda(lambda _: "apple"),
            "long": RunnableLambda(lambda _: "a ripe banana"),
        },
        ranker=LengthRanker(),
        fuser=JoinFuser(),
    ).invoke("q")
    blend = dict(llama.additional_kwargs)
    expected = set(llama.raw.to_dict()) | {"blend_mode"}
    assert set(blend) == expected
    assert expected <= set(lang.response_metadata)
    for key in ("blend_mode", "candidates", "texts", "models_by_text", "top_k", "best_models"):
        assert blend[key] == lang.response_metadata[key], key
    assert blend["ranking"]["order"] == lang.response_metadata["ranking"]["order"]
