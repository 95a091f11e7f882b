"""BlenderLLM streaming: an LLM fuser's tokens stream as generated, the last chunk has the blend."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.llms.types import ChatMessage

from llamaindex_blender import BlenderLLM

from .conftest import FixedLLM, JoinFuser, LengthRanker, TokenLLM

USER = [ChatMessage(role="user", content="name a fruit")]


def _members() -> list[FixedLLM]:
    return [FixedLLM(answer="apple", name="a"), FixedLLM(answer="a ripe banana", name="b")]


def _check(chunks: list[Any], text_of: Any) -> None:
    # four deltas (LLMFuser trims whitespace, so a trailing space moves to the next delta)
    assert [c.delta for c in chunks] == ["fused", " token", " by", " token"]
    assert text_of(chunks[-1]) == "fused token by token"
    assert all(not c.additional_kwargs for c in chunks[:-1])
    blend = chunks[-1].additional_kwargs
    assert blend["text"] == "fused token by token" and blend["blend_mode"] == "text"
    assert set(blend["candidates"]) == {"a", "b"}


def test_an_llm_fuser_streams_its_tokens() -> None:
    fuser = TokenLLM(answer="fused token by token", name="fuser")
    llm = BlenderLLM(_members(), ranker=LengthRanker(), fuser=fuser, top_k=2)
    _check(list(llm.stream_chat(USER)), lambda c: c.message.content)
    _check(list(llm.stream_complete("q")), lambda c: c.text)

    async def collect(kind: str) -> list[Any]:
        gen = await (llm.astream_chat(USER) if kind == "chat" else llm.astream_complete("q"))
        return [c async for c in gen]

    _check(asyncio.run(collect("chat")), lambda c: c.message.content)
    _check(asyncio.run(collect("complete")), lambda c: c.text)


def test_a_fuser_that_does_not_stream_gives_one_chunk() -> None:
    llm = BlenderLLM(_members(), ranker=LengthRanker(), fuser=JoinFuser(), top_k=2)
    (chunk,) = list(llm.stream_chat(USER))
    assert chunk.delta == chunk.message.content == "a ripe banana | apple"
    assert chunk.additional_kwargs["best_models"] == ["b"]
