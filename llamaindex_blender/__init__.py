"""LLM-Blender components for LlamaIndex: PairRM reranking, ensemble LLM, fusion synthesis."""

from llamaindex_blender.rerank import PairRankerRerank

__all__ = ["PairRankerRerank"]
