"""The ranker's span: named for the ranker, a child of the LLM's / synthesizer's / reranker's span,
with N, strategy, top-K and passes (bound arguments and tags) and a RankEndEvent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from llamaindex_blender import BlenderLLM, FusionSynthesizer, PairRankerRerank
from llamaindex_blender._tracing import RankEndEvent

from .conftest import FixedLLM, JoinFuser, LengthRanker, SpanCollector

USER = [ChatMessage(role="user", content="name a fruit")]


@pytest.fixture
def tagged(span_collector: SpanCollector) -> Any:
    """Span id -> its parent, tags and bound arguments."""
    return span_collector.opened


def _members() -> list[FixedLLM]:
    return [
        FixedLLM(answer="apple", name="a"),
        FixedLLM(answer="a ripe banana", name="b"),
        FixedLLM(answer="cherry", name="c"),
    ]


def _ranker_span(opened: dict[str, dict[str, Any]], parent_prefix: str) -> dict[str, Any]:
    (ranker_id,) = [s for s in opened if s.startswith("LengthRanker.rank-")]
    span = opened[ranker_id]
    assert span["parent"] is not None and span["parent"].startswith(parent_prefix), span
    return span


def _step(n: int, top_k: int) -> dict[str, Any]:
    return {"ranker": "LengthRanker", "n": n, "strategy": None, "top_k": top_k, "passes": None}


@pytest.mark.parametrize("method", ["chat", "complete", "achat"])
def test_the_llm_ranks_in_a_ranker_span(tagged: Any, events: Any, method: str) -> None:
    llm = BlenderLLM(_members(), ranker=LengthRanker(), fuser=JoinFuser(), top_k=2)
    if method == "chat":
        llm.chat(USER)
    elif method == "complete":
        llm.complete("q")
    else:
        asyncio.run(llm.achat(USER))
    span = _ranker_span(tagged, f"BlenderLLM.{method}-")
    assert span["tags"] == _step(3, 2)
    assert span["args"] == _step(3, 2)
    (event,) = [e for e in events if isinstance(e, RankEndEvent)]
    assert (event.n, event.top_k, event.passes, event.order) == (3, 2, None, [1, 2, 0])
    assert event.span_id is not None and event.span_id.startswith("LengthRanker.rank-")


def test_the_synthesizer_ranks_in_a_ranker_span(tagged: Any) -> None:
    synth = FusionSynthesizer(_members(), ranker=LengthRanker(), fuser=JoinFuser(), top_k=2)
    synth.get_response("name a fruit", ["fruit are sweet"])
    span = _ranker_span(tagged, "FusionSynthesizer.")
    assert span["tags"] == _step(3, 2)


def test_the_reranker_ranks_in_a_ranker_span(tagged: Any) -> None:
    nodes = [NodeWithScore(node=TextNode(text=t, id_=t), score=0.1) for t in ("a", "bbb", "cc")]
    reranker = PairRankerRerank(model=LengthRanker(), top_n=2)
    out = reranker.postprocess_nodes(nodes, QueryBundle("q"))
    assert [n.node.node_id for n in out] == ["bbb", "cc"]
    span = _ranker_span(tagged, "PairRankerRerank.")
    assert span["tags"] == _step(3, 2)
    tagged.clear()
    asyncio.run(reranker.apostprocess_nodes(nodes, QueryBundle("q")))
    assert _ranker_span(tagged, "PairRankerRerank.")["tags"] == _step(3, 2)
