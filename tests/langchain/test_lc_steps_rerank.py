"""LCEL rank/fuse steps and PairRankerRerank."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langchain_core.retrievers import BaseRetriever
from lc_fakes import JoinFuser, LengthRanker, RunRecorder, ScriptedChatModel, ShortestRanker
from pydantic import ValidationError

from langchain_blender import (
    BlendOutput,
    CandidatesInput,
    FuseCandidates,
    PairRankerRerank,
    RankAndFuse,
    RankCandidates,
    RankingOutput,
    parallel_candidates,
)

PROMPT = PromptTemplate.from_template("{question}")
CANDIDATES = {"a": "short", "b": "a much longer answer", "c": AIMessage("medium one")}


def _fan_out() -> Any:
    return parallel_candidates(
        {
            "a": PROMPT | ScriptedChatModel(prefix="A:") | StrOutputParser(),
            "b": PROMPT | ScriptedChatModel(prefix="Bee, longer:"),
        },
        instruction="question",
    )


async def test_rank_candidates() -> None:
    step = RankCandidates(ranker=LengthRanker())
    data = {"instruction": "q", "candidates": CANDIDATES}
    out = step.invoke(data)
    assert out["names"] == ["a", "b", "c"]
    assert out["order"] == [1, 2, 0]
    assert out["ranked"] == ["a much longer answer", "medium one", "short"]
    assert out["best_name"] == "b"
    assert await step.ainvoke(data) == out
    assert step.batch([data, {"instruction": "q", "candidates": ["x", "yy"]}])[1]["best"] == "yy"
    assert step.get_input_schema() is CandidatesInput
    assert step.get_output_schema() is RankingOutput


async def test_fuse_candidates_uses_the_first_top_k() -> None:
    step = FuseCandidates(ranker=LengthRanker(), fuser=JoinFuser(), top_k=2)
    data = {"instruction": "q", "candidates": ["best", "second", "third"]}
    assert step.invoke(data) == "best + second"
    assert await step.ainvoke(data) == "best + second"
    assert await step.abatch([data, data]) == ["best + second"] * 2


async def test_rank_and_fuse_over_a_parallel_chain() -> None:
    chain = _fan_out() | RankAndFuse(ranker=LengthRanker(), fuser=JoinFuser(), top_k=2)
    out = chain.invoke({"question": "why?"})
    assert out["text"] == "Bee, longer: why? + A: why?"
    assert out["candidates"] == {"a": "A: why?", "b": "Bee, longer: why?"}
    assert out["best_models"] == ["b"]
    assert (await chain.ainvoke({"question": "why?"})) == out
    outs = chain.batch([{"question": "1"}, {"question": "2"}])
    assert [o["text"] for o in outs] == ["Bee, longer: 1 + A: 1", "Bee, longer: 2 + A: 2"]
    assert RankAndFuse(ranker=LengthRanker()).get_output_schema() is BlendOutput


def test_rank_and_fuse_with_a_chat_model_fuser_traces_it() -> None:
    fuser = ScriptedChatModel(model_name="fuser", reply="fused by a model")
    step = RankAndFuse(ranker=ShortestRanker(), fuser=fuser, top_k=2)
    recorder = RunRecorder()
    out = step.invoke({"instruction": "q", "candidates": CANDIDATES}, {"callbacks": [recorder]})
    assert out["text"] == "fused by a model"
    assert out["top_k"] == ["short", "medium one"]
    (root,) = recorder.run_id_of("RankAndFuse")
    assert recorder.children_of(root) == ["ShortestRanker", "fuser"]


def test_steps_reject_bad_input() -> None:
    step = RankAndFuse(ranker=LengthRanker())
    with pytest.raises(ValidationError, match="candidates"):
        step.invoke({"instruction": "q", "candidates": []})
    with pytest.raises(ValidationError, match="instruction"):
        step.invoke({"candidates": ["x"]})
    with pytest.raises(TypeError, match="expected"):
        step.invoke("just a string")  # type: ignore[arg-type]


def test_rank_and_fuse_reports_empty_candidates() -> None:
    out = RankAndFuse(ranker=LengthRanker()).invoke(
        {"instruction": "q", "candidates": {"a": "fine", "b": "  "}}
    )
    assert out["text"] == "fine"
    assert out["failures"][0]["model"] == "b"


# -- PairRankerRerank --------------------------------------------------------------------------

DOCS = [
    Document("tiny", metadata={"source": 1}, id="d1"),
    Document("the longest document of all", metadata={"source": 2}, id="d2"),
    Document("a middling document", metadata={"source": 3}, id="d3"),
]


async def test_rerank_documents_on_copies() -> None:
    before = copy.deepcopy(DOCS)
    reranker = PairRankerRerank(model=LengthRanker(), top_n=2)
    out = reranker.compress_documents(DOCS, "query")
    assert [d.id for d in out] == ["d2", "d3"]
    assert [d.metadata["relevance_score"] for d in out] == [27.0, 19.0]
    assert out[0].metadata["source"] == 2
    assert before == DOCS  # inputs untouched
    assert [d.id for d in await reranker.acompress_documents(DOCS, "query")] == ["d2", "d3"]
    assert reranker.compress_documents([], "query") == []


def test_rerank_helper() -> None:
    reranker = PairRankerRerank(model=LengthRanker(), top_n=1)
    assert reranker.rerank(["aa", "a", "aaa"], "q") == [{"index": 2, "relevance_score": 3.0}]
    assert [r["index"] for r in reranker.rerank(["aa", "a", "aaa"], "q", top_n=None)] == [2, 0, 1]
    assert reranker.rerank([{"text": "x"}, {"page_content": "xyz"}], "q")[0]["index"] == 1
    with pytest.raises(TypeError, match="document 0"):
        reranker.rerank([42], "q")  # type: ignore[list-item]


class _ListRetriever(BaseRetriever):
    docs: list[Document]

    def _get_relevant_documents(self, query: str, **kwargs: Any) -> list[Document]:
        return list(self.docs)


async def test_rerank_in_contextual_compression_retriever() -> None:
    retrievers = pytest.importorskip("langchain_classic.retrievers")
    retriever = retrievers.ContextualCompressionRetriever(
        base_compressor=PairRankerRerank(model=LengthRanker(), top_n=2),
        base_retriever=_ListRetriever(docs=DOCS),
    )
    assert [d.id for d in retriever.invoke("query")] == ["d2", "d3"]
    assert [d.id for d in await retriever.ainvoke("query")] == ["d2", "d3"]


@pytest.mark.slow
def test_rerank_with_tiny_pairrm(tiny_pairrm_dir: Any) -> None:
    reranker = PairRankerRerank(model=str(tiny_pairrm_dir), top_n=3)
    out = reranker.compress_documents(DOCS, "Which document is longest?")
    assert sorted(d.id for d in out) == ["d1", "d2", "d3"]
    scores = [d.metadata["relevance_score"] for d in out]
    assert scores == sorted(scores, reverse=True)


def test_fuse_candidates_with_select_loads_nothing() -> None:
    # Regression: FuseCandidates(fuser="select", top_k=1) loaded the default ranker
    # (llm-blender/PairRM: offline a CheckpointError, online a 1.7 GB download) though it
    # never ranks. Nothing loads until it is used, and a fuse step never loads a ranker.
    step = FuseCandidates(fuser="select", top_k=1)
    assert step.invoke({"instruction": "q", "candidates": ["x", "y"]}) == "x"
    assert not step.engine.core.loaded
