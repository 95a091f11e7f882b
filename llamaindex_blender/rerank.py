"""``PairRankerRerank``: a LlamaIndex node postprocessor that reranks nodes with PairRM."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Sequence
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr, ValidationInfo, field_validator
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from blender_core.blend import RankStep
from blender_core.bridge import run_sync
from blender_core.lazy import Lazy
from blender_core.loading import DEFAULT_RANKER
from blender_core.ranking import Ranker, Ranking
from llamaindex_blender._tracing import trace_ranking

__all__ = ["DEFAULT_PAIRRM_MODEL", "PairRankerRerank"]

DEFAULT_PAIRRM_MODEL = DEFAULT_RANKER
"""Deprecated name of :data:`blender_core.loading.DEFAULT_RANKER`."""

dispatcher = get_dispatcher(__name__)


class PairRankerRerank(BaseNodePostprocessor):
    """Rerank retrieved nodes with PairRM (or any core ``Ranker``).

    The query string is the instruction and each node's text is a candidate answer:
    ``node.get_content(metadata_mode=MetadataMode.EMBED)``, the same text an embedding model
    sees (content plus the metadata not excluded from embedding). The ranker's scores (higher is
    better) replace the node scores on **new** ``NodeWithScore`` objects, best first; the input
    nodes are never changed. PairRM compares every pair of nodes, so the cost grows with the
    square of the node count: rerank tens of nodes, not thousands.

    The model loads on first use (not at construction), once, under a lock, so that concurrent
    sync or async queries share one load. The async path loads and ranks in a worker thread and
    never blocks the event loop.

    The same names and defaults as ``langchain_blender.PairRankerRerank``: ``model``,
    ``top_n`` (3), ``device``, ``strategy``.

    Args:
        model: A hub id or local path of a PairRM checkpoint (``PairRanker.from_pretrained``),
            ``"consensus"`` / ``"random"`` for the other core rankers, or a loaded core
            ``Ranker`` (used as is). ``ranker=`` is accepted for one release (deprecated).
        top_n: How many nodes to return (default 3); ``None`` returns all of them (as does a
            number larger than the node count). Must be at least 1.
        strategy: PairRM's aggregation (``"max_logits"``, ``"max_wins"`` or ``"bubble"``);
            ``None`` uses the ranker's default. Only passed to rankers when set.
        batch_tokens: Token budget per forward batch of the PairRanker (``None``: its default).
        device: Where to load the model (``None``: CUDA when available, else CPU).
        keep_retrieval_score: Keep the retriever's score in the returned node's
            ``metadata["retrieval_score"]`` (on a copy of the node).

    Example:
        .. code-block:: python

            from llama_index.core import VectorStoreIndex
            from llamaindex_blender import PairRankerRerank

            reranker = PairRankerRerank(model="llm-blender/PairRM", top_n=3)
            engine = VectorStoreIndex.from_documents(docs).as_query_engine(
                similarity_top_k=10, node_postprocessors=[reranker]
            )
            engine.query("What did the author do growing up?")
    """

    model: Any = Field(
        default=DEFAULT_RANKER,
        description="PairRM hub id or local path ('consensus' / 'random'), or a loaded Ranker.",
    )
    top_n: int | None = Field(
        default=3, description="Number of nodes to return, best first (None: all)."
    )
    strategy: str | None = Field(
        default=None, description="PairRM aggregation strategy (None: the ranker's default)."
    )
    batch_tokens: int | None = Field(
        default=None, description="Token budget per PairRanker forward batch."
    )
    device: str | None = Field(default=None, description="Device for the model.")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the retrieval score in metadata['retrieval_score']."
    )

    _ranker: Lazy[Ranker] = PrivateAttr()

    def __init__(self, *, ranker: Ranker | None = None, **kwargs: Any) -> None:
        if ranker is not None:
            warnings.warn(
                "PairRankerRerank(ranker=...) is deprecated: pass model=... (a spec or a loaded "
                "Ranker), as langchain_blender.PairRankerRerank takes",
                DeprecationWarning,
                stacklevel=2,
            )
            kwargs.setdefault("model", ranker)
        model = kwargs.get("model", DEFAULT_RANKER)
        if not isinstance(model, str | Ranker):
            raise TypeError(
                "model must be a hub id or path, 'consensus'/'random', or a core Ranker (with "
                f"rank/rank_batch/arank), got {type(model).__name__}"
            )
        super().__init__(**kwargs)
        if isinstance(self.model, str):
            spec = self.model
            self._ranker = Lazy(lambda: _load_ranker(spec, self.device, self.batch_tokens))
        else:
            self._ranker = Lazy(lambda: self.model)
            self._ranker.set(self.model)

    @field_validator("top_n", "batch_tokens")
    @classmethod
    def _check_positive(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value < 1:
            none = " None (all nodes) or" if info.field_name == "top_n" else ""
            raise ValueError(f"{info.field_name} must be{none} at least 1, got {value}")
        return value

    @classmethod
    def class_name(cls) -> str:
        return "PairRankerRerank"

    @property
    def model_name(self) -> str:
        """The name reported in events: the model id, or the given ranker's name/class."""
        if not isinstance(self.model, str):
            return str(getattr(self.model, "name", None) or type(self.model).__name__)
        return self.model

    @property
    def is_loaded(self) -> bool:
        """Whether the ranker is loaded (or was given)."""
        return self._ranker.loaded

    def load(self) -> Ranker:
        """Load the ranker now (thread-safe, once) and return it."""
        return self._ranker.get()

    async def aload(self) -> Ranker:
        """Async :meth:`load`: the load runs in a worker thread, under the same lock."""
        return await self._ranker.aget()

    # ------------------------------------------------------------------ helpers

    def _check_inputs(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> QueryBundle:
        if query_bundle is None:
            raise ValueError(
                "PairRankerRerank needs the query: pass query_bundle= or query_str= to "
                "postprocess_nodes (query engines and retrievers do this for you)"
            )
        if not isinstance(nodes, Sequence) or isinstance(nodes, str):
            raise TypeError(f"nodes must be a list of NodeWithScore, got {type(nodes).__name__}")
        return query_bundle

    def _rank_kwargs(self) -> dict[str, Any]:
        return {"strategy": self.strategy} if self.strategy is not None else {}

    def _step(self, ranker: Ranker, nodes: list[NodeWithScore]) -> RankStep:
        top_n = self.top_n if self.top_n is not None else len(nodes)
        return RankStep.of(ranker, len(nodes), strategy=self.strategy, top_k=top_n)

    @staticmethod
    def _texts(nodes: list[NodeWithScore]) -> list[str]:
        return [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]

    def _start(self, nodes: list[NodeWithScore], query_bundle: QueryBundle) -> dict[str, Any]:
        top_n = self.top_n if self.top_n is not None else len(nodes)
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=top_n, model_name=self.model_name
            )
        )
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model_name,
            EventPayload.QUERY_STR: query_bundle.query_str,
            EventPayload.TOP_K: top_n,
        }

    def _apply(self, nodes: list[NodeWithScore], ranking: Ranking) -> list[NodeWithScore]:
        if len(ranking) != len(nodes):
            raise RuntimeError(f"the ranker returned {len(ranking)} scores for {len(nodes)} nodes")
        reranked = []
        for index in ranking.order:
            original = nodes[index]
            node = original.node
            if self.keep_retrieval_score:
                node = node.model_copy(
                    update={"metadata": {**node.metadata, "retrieval_score": original.score}}
                )
            reranked.append(NodeWithScore(node=node, score=float(ranking.scores[index])))
        return reranked[: self.top_n] if self.top_n is not None else reranked

    # ------------------------------------------------------------------ postprocess

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        return run_sync(lambda: self._arerank(nodes, query_bundle))

    @dispatcher.span
    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        return await self._arerank(nodes, query_bundle)

    async def _arerank(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> list[NodeWithScore]:
        """The one reranking: a sync ranker's ``rank`` runs in a worker thread."""
        query_bundle = self._check_inputs(nodes, query_bundle)
        if len(nodes) == 0:
            return []
        payload = self._start(nodes, query_bundle)
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            ranker = await self.aload()
            texts = self._texts(nodes)
            ranking = await trace_ranking(
                self._step(ranker, nodes),
                lambda: asyncio.to_thread(
                    ranker.rank, query_bundle.query_str, texts, **self._rank_kwargs()
                ),
            )
            reranked = self._apply(nodes, ranking)
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked


def _load_ranker(model: str, device: str | None, batch_tokens: int | None) -> Ranker:
    from blender_core.loading import load_ranker

    if batch_tokens is None or model.strip().lower() in {"consensus", "random"}:
        return load_ranker(model, device=device)
    from blender_core.pair_ranker import PairRanker

    return PairRanker.from_pretrained(model, device=device, batch_tokens=batch_tokens)
