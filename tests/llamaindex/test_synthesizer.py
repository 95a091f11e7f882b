"""FusionSynthesizer: several LLMs answer over the context; RouterQueryEngine fusion."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RouterQueryEngine
from llama_index.core.selectors import LLMMultiSelector
from llama_index.core.tools import QueryEngineTool

from blender_core.blend import BlendError
from llamaindex_blender import FusionSynthesizer

from .conftest import FixedLLM, JoinFuser, LengthRanker, TokenLLM

QUESTION = "What is the capital of France?"


def members() -> list[FixedLLM]:
    return [
        FixedLLM(answer="Paris.", name="terse"),
        FixedLLM(answer="The capital of France is Paris.", name="full"),
        FixedLLM(answer="", name="broken", error="rate limited"),
    ]


def engine(documents: Any, embed_model: Any, synth: FusionSynthesizer) -> Any:
    index = VectorStoreIndex.from_documents(documents, embed_model=embed_model)
    return index.as_query_engine(llm=MockLLM(), similarity_top_k=3, response_synthesizer=synth)


def test_query_engine_fuses_member_answers(documents: Any, embed_model: Any) -> None:
    llms = members()
    synth = FusionSynthesizer(llms, ranker=LengthRanker(), fuser=JoinFuser(), top_k=2)
    response = engine(documents, embed_model, synth).query(QUESTION)
    assert str(response) == "The capital of France is Paris. | Paris."
    blend = response.metadata["blend"]
    assert blend["candidates"] == {"terse": "Paris.", "full": "The capital of France is Paris."}
    assert blend["failures"] == [
        {"model": "broken", "kind": "error", "message": "RuntimeError: rate limited"}
    ]
    assert len(response.source_nodes) == 3
    # Each member got LlamaIndex's text-QA prompt with the retrieved context and the query.
    prompt = llms[0].prompts[-1]
    assert "Context information is below." in prompt and QUESTION in prompt
    assert response.source_nodes[0].node.get_content() in prompt


async def test_async_query_engine(documents: Any, embed_model: Any) -> None:
    synth = FusionSynthesizer(members(), ranker=LengthRanker(), fuser=JoinFuser(), top_k=1)
    response = await engine(documents, embed_model, synth).aquery(QUESTION)
    assert str(response) == "The capital of France is Paris."
    assert response.metadata["blend"]["best_models"] == ["full"]


def test_streaming_yields_the_fused_answer(documents: Any, embed_model: Any) -> None:
    synth = FusionSynthesizer(members(), ranker=LengthRanker(), streaming=True)
    response = engine(documents, embed_model, synth).query(QUESTION)
    assert isinstance(response, StreamingResponse)
    assert response.metadata["blend"] == {}  # filled in when the stream has been consumed
    assert list(response.response_gen) == ["The capital of France is Paris."]
    assert response.metadata["blend"]["best_models"] == ["full"]


def test_streaming_an_llm_fuser_streams_its_tokens(documents: Any, embed_model: Any) -> None:
    llms = members()
    fuser = TokenLLM(answer="fused token by token", name="fuser")
    synth = FusionSynthesizer(llms, ranker=LengthRanker(), fuser=fuser, top_k=2, streaming=True)
    response = engine(documents, embed_model, synth).query(QUESTION)
    # The members answered and were ranked when the query ran, before any token was read.
    assert all(len(m.prompts) == 1 for m in llms)
    assert list(response.response_gen) == ["fused", " token", " by", " token"]
    blend = response.metadata["blend"]
    assert blend["text"] == "fused token by token"
    assert set(blend["candidates"]) == {"terse", "full"}
    assert blend["failures"][0]["model"] == "broken"


async def test_async_streaming_an_llm_fuser(documents: Any, embed_model: Any) -> None:
    fuser = TokenLLM(answer="fused token by token", name="fuser")
    synth = FusionSynthesizer(members(), ranker=LengthRanker(), fuser=fuser, streaming=True)
    response = await engine(documents, embed_model, synth).aquery(QUESTION)
    assert isinstance(response, AsyncStreamingResponse)
    pieces = [piece async for piece in response.async_response_gen()]
    assert pieces == ["fused", " token", " by", " token"]
    assert response.metadata["blend"]["text"] == "fused token by token"


def test_streaming_with_every_member_failing_raises_at_query_time(
    documents: Any, embed_model: Any
) -> None:
    llms = [FixedLLM(answer="", name=n, error="down") for n in ("x", "y")]
    synth = FusionSynthesizer(llms, ranker=LengthRanker(), streaming=True)
    with pytest.raises(BlendError, match="x"):
        engine(documents, embed_model, synth).query(QUESTION)


async def test_streaming_inside_a_running_loop_gives_one_chunk() -> None:
    synth = FusionSynthesizer(ranker=LengthRanker(), fuser=JoinFuser(), top_k=2, streaming=True)
    # A sync call from a coroutine (a notebook cell): the core's sync stream cannot nest its
    # loop, so the answer comes as one chunk.
    gen = synth.get_response("q", ["short", "the longest one"])
    assert list(gen) == ["the longest one | short"]


def test_all_members_failing(documents: Any, embed_model: Any) -> None:
    llms = [FixedLLM(answer="", name=n, error="down") for n in ("x", "y")]
    synth = FusionSynthesizer(llms, ranker=LengthRanker())
    with pytest.raises(BlendError, match="x"):
        engine(documents, embed_model, synth).query(QUESTION)


def test_chunks_as_candidates_without_llms() -> None:
    synth = FusionSynthesizer(ranker=LengthRanker(), fuser=JoinFuser(), top_k=2)
    text = synth.get_response("q", ["short", "the longest one", "medium"])
    assert text == "the longest one | medium"
    assert asyncio.run(synth.aget_response("q", ["a", "bb"])) == "bb | a"


def scripted_selector(choices: list[int]) -> LLMMultiSelector:
    answer = "[" + ", ".join(f'{{"choice": {c}, "reason": "r{c}"}}' for c in choices) + "]"
    return LLMMultiSelector.from_defaults(llm=FixedLLM(answer=answer, name="selector"))


def router(documents: Any, embed_model: Any) -> RouterQueryEngine:
    index = VectorStoreIndex.from_documents(documents, embed_model=embed_model)
    tools = [
        QueryEngineTool.from_defaults(
            index.as_query_engine(llm=FixedLLM(answer=answer, name=f"engine{i}")),
            name=f"engine{i}",
            description=f"engine {i}",
        )
        for i, answer in enumerate(["Paris", "It is Paris, in France", "Berlin"])
    ]
    return RouterQueryEngine(
        llm=MockLLM(),
        selector=scripted_selector([1, 2]),
        query_engine_tools=tools,
        summarizer=FusionSynthesizer(ranker=LengthRanker(), fuser=JoinFuser(), top_k=2),
    )


def test_router_fuses_selected_engines(documents: Any, embed_model: Any) -> None:
    response = router(documents, embed_model).query(QUESTION)
    assert str(response) == "It is Paris, in France | Paris"
    assert response.metadata["selector_result"].inds == [0, 1]


async def test_router_fuses_selected_engines_async(documents: Any, embed_model: Any) -> None:
    response = await router(documents, embed_model).aquery(QUESTION)
    assert str(response) == "It is Paris, in France | Paris"


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="not one LLM"):
        FusionSynthesizer(FixedLLM(answer="x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_k"):
        FusionSynthesizer([FixedLLM(answer="x")], top_k=0)
