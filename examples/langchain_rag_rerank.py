"""Rerank retrieved documents with PairRanker in a RAG retriever.

``PairRankerRerank`` is a document compressor: the query is the instruction, the documents are
the candidates, and each kept document gets ``metadata["relevance_score"]``. Runs offline with a
tiny *random* PairRM checkpoint built on the fly (its ranking is arbitrary: use
``ranker="llm-blender/PairRM"`` for the real model) and, when ``langchain-classic`` is installed,
inside ``ContextualCompressionRetriever``.

Run: ``python examples/langchain_rag_rerank.py``
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from blender_core.testing import make_tiny_pairranker
from langchain_blender import PairRankerRerank

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DOCS = [
    Document("PairRM compares two candidate answers with a cross-encoder.", metadata={"id": 1}),
    Document("GenFuser is a T5 model that fuses the top-K answers.", metadata={"id": 2}),
    Document("Paris is the capital of France.", metadata={"id": 3}),
    Document("MixInstruct has 110k instructions with answers from 11 LLMs.", metadata={"id": 4}),
]


class ListRetriever(BaseRetriever):
    """A stand-in for a vector store retriever: returns every document."""

    docs: list[Document]

    def _get_relevant_documents(self, query: str, **kwargs: object) -> list[Document]:
        return list(self.docs)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = make_tiny_pairranker(Path(tmp) / "tiny-pairrm")
        reranker = PairRankerRerank(ranker=str(checkpoint), top_n=2)
        query = "How does PairRM rank answers?"

        for doc in reranker.compress_documents(DOCS, query):
            print(f"{doc.metadata['relevance_score']:+.4f}  {doc.page_content}")
        print("rerank():", reranker.rerank([d.page_content for d in DOCS], query, top_n=None))
        print(
            "async:",
            [d.metadata["id"] for d in asyncio.run(reranker.acompress_documents(DOCS, query))],
        )

        try:
            from langchain_classic.retrievers import ContextualCompressionRetriever
        except ImportError:
            print("langchain-classic not installed: skipping ContextualCompressionRetriever")
            return
        retriever = ContextualCompressionRetriever(
            base_compressor=reranker, base_retriever=ListRetriever(docs=DOCS)
        )
        print("retriever:", [d.metadata["id"] for d in retriever.invoke(query)])


if __name__ == "__main__":
    main()
