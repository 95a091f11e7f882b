"""``PairRankerRerank``: rerank retrieved documents for a query with PairRanker (or any ranker)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from blender_core.lazy import Lazy
from blender_core.loading import DEFAULT_RANKER, load_ranker
from blender_core.ranking import Ranker, Ranking, arank_with, rank_with

__all__ = ["PairRankerRerank"]


class PairRankerRerank(BaseDocumentCompressor):
    """Reranks documents for a query with a ranker: the query is the instruction and the
    documents are the candidates; each kept document is a copy with
    ``metadata["relevance_score"]`` = its ranking score (higher is more relevant). The input
    documents are never modified.

    PairRM was trained to judge answers to instructions, so it scores how well a passage answers
    the query; any ``Ranker`` (``"consensus"``, an ``LLMJudgeRanker``, ...) can stand in.

    Example:
        .. code-block:: python

            from langchain_classic.retrievers import ContextualCompressionRetriever
            from langchain_blender import PairRankerRerank

            retriever = ContextualCompressionRetriever(
                base_compressor=PairRankerRerank(model="llm-blender/PairRM", top_n=3),
                base_retriever=vector_store.as_retriever(search_kwargs={"k": 20}),
            )
            retriever.invoke("How does PairRM compare two answers?")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: Any = DEFAULT_RANKER
    """A loaded ``Ranker`` or a spec for ``load_ranker`` (a PairRanker hub id or path,
    ``"consensus"``, ``"random"``); a spec is loaded on first use. (``ranker=`` is accepted for
    one release, deprecated.)"""
    top_n: int | None = Field(default=3, ge=1)
    """How many documents to keep (``None``: all, reordered)."""
    device: str | None = None
    """Where a spec's model loads (``None``: CUDA when available, else CPU)."""
    strategy: str | None = None
    """PairRanker aggregation (``"max_logits"``, ``"max_wins"``, ``"bubble"``); ``None``: the
    ranker's default."""

    _loaded: Lazy[Ranker] = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _deprecated_ranker(cls, data: Any) -> Any:
        if isinstance(data, dict) and "ranker" in data:
            warnings.warn(
                "PairRankerRerank(ranker=...) is deprecated: pass model=... (a spec or a loaded "
                "Ranker), as llamaindex_blender.PairRankerRerank takes",
                DeprecationWarning,
                stacklevel=4,
            )
            data = dict(data)
            data.setdefault("model", data.pop("ranker"))
        return data

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: Any) -> Any:
        if value is None or isinstance(value, str | Ranker):
            return value
        raise TypeError(
            "model must be a Ranker (with rank/rank_batch/arank), a PairRanker hub id or path, "
            f"'consensus', 'random' or None, got {type(value).__name__}"
        )

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._loaded = Lazy(lambda: load_ranker(self.model, device=self.device))

    @property
    def ranker(self) -> Any:
        """Deprecated name of :attr:`model`."""
        return self.model

    def _get_ranker(self) -> Ranker:
        return self._loaded.get()

    def _rank(self, query: str, texts: list[str]) -> Ranking:
        if len(texts) == 1:
            return Ranking.from_scores([0.0])
        return rank_with(self._get_ranker(), query, texts, strategy=self.strategy)

    async def _arank(self, query: str, texts: list[str]) -> Ranking:
        if len(texts) == 1:
            return Ranking.from_scores([0.0])
        ranker = await self._loaded.aget()  # a first load runs off the event loop
        return await arank_with(ranker, query, texts, strategy=self.strategy)

    @staticmethod
    def _texts(documents: Sequence[str | Document | dict[str, Any]]) -> list[str]:
        texts = []
        for i, doc in enumerate(documents):
            if isinstance(doc, Document):
                texts.append(doc.page_content)
            elif isinstance(doc, str):
                texts.append(doc)
            elif isinstance(doc, dict) and isinstance(
                text := doc.get("page_content", doc.get("text")), str
            ):
                texts.append(text)
            else:
                raise TypeError(
                    f"document {i} must be a Document, a string or a dict with 'page_content' "
                    f"or 'text', got {type(doc).__name__}"
                )
        return texts

    def _keep(self, top_n: int | None) -> int | None:
        if top_n is not None and top_n < 0:
            return self.top_n
        return top_n

    @staticmethod
    def _results(ranking: Ranking, keep: int | None) -> list[dict[str, Any]]:
        order = ranking.order if keep is None else ranking.order[:keep]
        return [{"index": i, "relevance_score": ranking.scores[i]} for i in order]

    def rerank(
        self,
        documents: Sequence[str | Document | dict[str, Any]],
        query: str,
        *,
        top_n: int | None = -1,
    ) -> list[dict[str, Any]]:
        """Rank ``documents`` for ``query``.

        Args:
            documents: Documents, strings, or dicts with ``page_content`` or ``text``.
            query: The query.
            top_n: How many results (``-1``: this reranker's ``top_n``; ``None``: all).

        Returns:
            ``[{"index": i, "relevance_score": score}, ...]``, most relevant first (``index`` into
            ``documents``), as other LangChain rerankers return.
        """
        if not documents:
            return []
        ranking = self._rank(query, self._texts(documents))
        return self._results(ranking, self._keep(top_n))

    async def arerank(
        self,
        documents: Sequence[str | Document | dict[str, Any]],
        query: str,
        *,
        top_n: int | None = -1,
    ) -> list[dict[str, Any]]:
        """Async :meth:`rerank`."""
        if not documents:
            return []
        ranking = await self._arank(query, self._texts(documents))
        return self._results(ranking, self._keep(top_n))

    @staticmethod
    def _copies(documents: Sequence[Document], results: list[dict[str, Any]]) -> list[Document]:
        out = []
        for result in results:
            doc = documents[result["index"]]
            out.append(
                doc.model_copy(
                    update={
                        "metadata": {**doc.metadata, "relevance_score": result["relevance_score"]}
                    }
                )
            )
        return out

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """The ``top_n`` most relevant documents, best first, as copies with a relevance score."""
        return self._copies(documents, self.rerank(documents, query))

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents` (the ranker's own ``arank``)."""
        return self._copies(documents, await self.arerank(documents, query))
