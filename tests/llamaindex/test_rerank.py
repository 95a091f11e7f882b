"""PairRankerRerank: lazy loading, events, async, top_n and edge cases."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

import llamaindex_blender.rerank as rerank_module
from llamaindex_blender import PairRankerRerank

from .conftest import LengthRanker


def make_nodes(texts: list[str]) -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=text, id_=f"n{i}"), score=0.5 - 0.1 * i)
        for i, text in enumerate(texts)
    ]


@pytest.fixture
def count_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts real model loads (each load waits a little to widen any race)."""
    loads: list[str] = []
    real = rerank_module._load_ranker

    def counting(model: str, device: str | None, batch_tokens: int | None) -> Any:
        loads.append(model)
        time.sleep(0.05)
        return real(model, device, batch_tokens)

    monkeypatch.setattr(rerank_module, "_load_ranker", counting)
    return loads


def engine_for(documents: Any, embed_model: Any, reranker: PairRankerRerank) -> Any:
    index = VectorStoreIndex.from_documents(documents, embed_model=embed_model)
    return index.as_query_engine(llm=MockLLM(), similarity_top_k=5, node_postprocessors=[reranker])


def test_query_engine_sync_and_async_same_order(
    tiny_pairrm_dir: Path, documents: Any, embed_model: Any, count_loads: list[str]
) -> None:
    reranker = PairRankerRerank(model=str(tiny_pairrm_dir), top_n=3)
    assert not reranker.is_loaded and count_loads == []  # nothing loads at construction
    engine = engine_for(documents, embed_model, reranker)

    response = engine.query("What is the capital of France?")
    assert str(response)  # MockLLM echoes the prompt, which holds the reranked context
    sync_ids = [n.node.node_id for n in response.source_nodes]
    sync_scores = [n.score for n in response.source_nodes]
    assert len(sync_ids) == 3
    assert sync_scores == sorted(sync_scores, reverse=True)

    aresponse = asyncio.run(engine.aquery("What is the capital of France?"))
    assert [n.node.node_id for n in aresponse.source_nodes] == sync_ids
    assert [n.score for n in aresponse.source_nodes] == pytest.approx(sync_scores)
    assert count_loads == [str(tiny_pairrm_dir)]


async def test_twenty_concurrent_async_queries_load_once(
    tiny_pairrm_dir: Path, documents: Any, embed_model: Any, count_loads: list[str]
) -> None:
    reranker = PairRankerRerank(model=str(tiny_pairrm_dir), top_n=2)
    engine = engine_for(documents, embed_model, reranker)
    responses = await asyncio.gather(*(engine.aquery(f"question {i}") for i in range(20)))
    assert len(count_loads) == 1
    assert all(len(r.source_nodes) == 2 for r in responses)


def test_concurrent_sync_calls_load_once(tiny_pairrm_dir: Path, count_loads: list[str]) -> None:
    reranker = PairRankerRerank(model=str(tiny_pairrm_dir))
    nodes = make_nodes(["a b", "c d e", "f"])
    results: list[list[NodeWithScore]] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(reranker.postprocess_nodes(nodes, query_str="q"))
        )
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(count_loads) == 1 and len(results) == 6


def test_events_on_root_dispatcher(tiny_pairrm_dir: Path, events: list[Any]) -> None:
    reranker = PairRankerRerank(model=str(tiny_pairrm_dir), top_n=2)
    nodes = make_nodes(["one answer", "another answer", "third"])
    out = reranker.postprocess_nodes(nodes, query_str="which?")
    starts = [e for e in events if isinstance(e, ReRankStartEvent)]
    ends = [e for e in events if isinstance(e, ReRankEndEvent)]
    assert len(starts) == 1 and len(ends) == 1
    assert starts[0].top_n == 2
    assert starts[0].model_name == str(tiny_pairrm_dir)
    assert starts[0].query.query_str == "which?"
    assert [n.node.node_id for n in ends[0].nodes] == [n.node.node_id for n in out]


async def test_async_events_report_all_nodes_when_top_n_is_none(events: list[Any]) -> None:
    ranker = LengthRanker()
    reranker = PairRankerRerank(model=ranker)
    await reranker.apostprocess_nodes(make_nodes(["a", "bb", "ccc"]), query_str="q")
    (start,) = [e for e in events if isinstance(e, ReRankStartEvent)]
    assert start.top_n == 3 and start.model_name == "LengthRanker"
    assert any(isinstance(e, ReRankEndEvent) for e in events)


def test_legacy_reranking_callback() -> None:
    debug = LlamaDebugHandler()
    reranker = PairRankerRerank(model=LengthRanker(), callback_manager=CallbackManager([debug]))
    reranker.postprocess_nodes(make_nodes(["a", "bb"]), query_str="q")
    pairs = debug.get_event_pairs(CBEventType.RERANKING)
    assert len(pairs) == 1
    start, end = pairs[0]
    assert start.payload["model_name"] == "LengthRanker"
    assert [n.node.text for n in end.payload["nodes"]] == ["bb", "a"]


def test_scores_on_new_nodes_sorted_and_inputs_untouched() -> None:
    nodes = make_nodes(["short", "the longest text", "medium one"])
    nodes[2].score = None  # retrievers may give no score
    before = [(n.node.node_id, n.score, dict(n.node.metadata)) for n in nodes]
    reranker = PairRankerRerank(model=LengthRanker(), keep_retrieval_score=True)
    out = reranker.postprocess_nodes(nodes, query_bundle=QueryBundle("q"))
    assert [n.node.text for n in out] == ["the longest text", "medium one", "short"]
    assert [n.score for n in out] == [16.0, 10.0, 5.0]
    assert [n.node.metadata["retrieval_score"] for n in out] == [0.4, None, 0.5]
    assert [(n.node.node_id, n.score, dict(n.node.metadata)) for n in nodes] == before
    assert all(a is not b for a in out for b in nodes)


def test_metadata_mode_embed_is_what_the_ranker_sees() -> None:
    seen: list[list[str]] = []

    class Recording(LengthRanker):
        def rank_batch(self, instructions: Any, candidate_lists: Any) -> Any:
            seen.extend(candidate_lists)
            return super().rank_batch(instructions, candidate_lists)

    node = TextNode(
        text="body", metadata={"title": "T", "secret": "S"}, excluded_embed_metadata_keys=["secret"]
    )
    PairRankerRerank(model=Recording()).postprocess_nodes([NodeWithScore(node=node)], query_str="q")
    assert "title: T" in seen[0][0] and "body" in seen[0][0] and "secret" not in seen[0][0]


@pytest.mark.parametrize("top_n, expected", [(None, 4), (2, 2), (4, 4), (10, 4)])
def test_top_n(top_n: int | None, expected: int) -> None:
    reranker = PairRankerRerank(model=LengthRanker(), top_n=top_n)
    out = reranker.postprocess_nodes(make_nodes(["a", "bbb", "cc", "dddd"]), query_str="q")
    assert len(out) == expected
    assert out[0].node.text == "dddd"


@pytest.mark.parametrize("top_n", [0, -1])
def test_top_n_below_one_is_rejected(top_n: int) -> None:
    with pytest.raises(ValueError, match="top_n must be None"):
        PairRankerRerank(model="unused", top_n=top_n)


def test_empty_nodes_return_empty_without_loading(count_loads: list[str]) -> None:
    reranker = PairRankerRerank(model="never-loaded")
    assert reranker.postprocess_nodes([], query_str="q") == []
    assert asyncio.run(reranker.apostprocess_nodes([], query_str="q")) == []
    assert count_loads == [] and not reranker.is_loaded


def test_missing_query_is_a_clear_error() -> None:
    reranker = PairRankerRerank(model=LengthRanker())
    with pytest.raises(ValueError, match="needs the query"):
        reranker.postprocess_nodes(make_nodes(["a"]))
    with pytest.raises(ValueError, match="needs the query"):
        asyncio.run(reranker.apostprocess_nodes(make_nodes(["a"])))


def test_bad_ranker_and_batch_tokens_rejected() -> None:
    with pytest.raises(TypeError, match="core Ranker"):
        PairRankerRerank(model=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_tokens"):
        PairRankerRerank(batch_tokens=0)


async def test_async_ranking_does_not_block_the_event_loop() -> None:
    class Slow(LengthRanker):
        def rank_batch(self, instructions: Any, candidate_lists: Any) -> Any:
            time.sleep(0.3)
            return super().rank_batch(instructions, candidate_lists)

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(10):
            await asyncio.sleep(0.01)
            ticks += 1

    reranker = PairRankerRerank(model=Slow())
    await asyncio.gather(
        reranker.apostprocess_nodes(make_nodes(["a", "bb"]), query_str="q"), ticker()
    )
    assert ticks == 10


def test_strategy_is_passed_to_the_ranker() -> None:
    got: list[Any] = []

    class WithStrategy(LengthRanker):
        def rank(self, instruction: str, candidates: Any, *, strategy: str = "max_logits") -> Any:
            got.append(strategy)
            return super().rank(instruction, candidates)

    PairRankerRerank(model=WithStrategy(), strategy="max_wins").postprocess_nodes(
        make_nodes(["a"]), query_str="q"
    )
    assert got == ["max_wins"]


def test_object_index_tool_retrieval_is_reranked(embed_model: Any) -> None:
    from llama_index.core.objects import ObjectIndex
    from llama_index.core.tools import FunctionTool

    def weather(city: str) -> str:
        """Get the weather forecast for a city, today and for the next seven days."""
        return city

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    def translate(text: str) -> str:
        """Translate a text into French."""
        return text

    tools = [FunctionTool.from_defaults(fn) for fn in (add, translate, weather)]
    obj_index = ObjectIndex.from_objects(tools, index_cls=VectorStoreIndex, embed_model=embed_model)
    retriever = obj_index.as_retriever(
        similarity_top_k=3, node_postprocessors=[PairRankerRerank(model=LengthRanker(), top_n=2)]
    )
    chosen = retriever.retrieve("weather in Paris?")
    assert len(chosen) == 2
    assert chosen[0].metadata.name == "weather"  # the longest description ranks first


def test_batch_tokens_reaches_the_pairranker(tiny_pairrm_dir: Path) -> None:
    reranker = PairRankerRerank(model=str(tiny_pairrm_dir), batch_tokens=64, device="cpu")
    out = reranker.postprocess_nodes(make_nodes(["a b c", "d e", "f g h i"]), query_str="q")
    assert len(out) == 3
    assert reranker.load().batch_tokens == 64  # type: ignore[attr-defined]
