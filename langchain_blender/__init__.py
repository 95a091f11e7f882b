"""LLM-Blender components for LangChain: ensembles, LCEL rank/fuse steps, reranking, middleware.

Example:
    .. code-block:: python

        from langchain_blender import ChatBlender

        llm = ChatBlender(models=[chat_a, chat_b], ranker="llm-blender/PairRM", top_k=2)
        llm.invoke("What is the capital of France?").response_metadata["ranking"]
"""

from __future__ import annotations

from langchain_blender._adapters import RunnableGenerator
from langchain_blender._callbacks import MEMBER_TAG
from langchain_blender.chat_models import ChatBlender
from langchain_blender.llms import Blender, BlenderLLM
from langchain_blender.middleware import BestOfModelsMiddleware, RankedToolFilterMiddleware
from langchain_blender.rerank import PairRankerRerank
from langchain_blender.steps import (
    BlendOutput,
    CandidatesInput,
    FuseCandidates,
    RankAndFuse,
    RankCandidates,
    RankingOutput,
    parallel_candidates,
)

__all__ = [
    "MEMBER_TAG",
    "BestOfModelsMiddleware",
    "BlendOutput",
    "Blender",
    "BlenderLLM",
    "CandidatesInput",
    "ChatBlender",
    "FuseCandidates",
    "PairRankerRerank",
    "RankAndFuse",
    "RankCandidates",
    "RankedToolFilterMiddleware",
    "RankingOutput",
    "RunnableGenerator",
    "parallel_candidates",
]
