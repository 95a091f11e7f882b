"""LLM-Blender components for LangChain: ensembles, LCEL rank/fuse steps, reranking, middleware.

Example:
    .. code-block:: python

        from langchain_blender import ChatBlender

        llm = ChatBlender(models=[chat_a, chat_b], ranker="llm-blender/PairRM", top_k=2)
        llm.invoke("What is the capital of France?").response_metadata["ranking"]

Only ``langchain-core`` is imported here; the agent middleware (which needs the ``langchain``
package) is imported when first named.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from langchain_blender._adapters import LangChainGenerator
from langchain_blender._callbacks import MEMBER_TAG, STAGE_TAG
from langchain_blender.chat_models import ChatBlender
from langchain_blender.llms import Blender
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
    "STAGE_TAG",
    "BestOfModelsMiddleware",
    "BlendOutput",
    "Blender",
    "CandidatesInput",
    "ChatBlender",
    "FuseCandidates",
    "LangChainGenerator",
    "PairRankerRerank",
    "RankAndFuse",
    "RankCandidates",
    "RankedToolFilterMiddleware",
    "RankingOutput",
    "parallel_candidates",
]

_LAZY = {
    "BestOfModelsMiddleware": "langchain_blender.middleware",
    "RankedToolFilterMiddleware": "langchain_blender.middleware",
}

# Renamed names, kept for one release: old name -> (new name, why).
_RENAMED = {
    "BlenderLLM": ("Blender", "it clashes with llamaindex_blender.BlenderLLM"),
    "RunnableGenerator": (
        "LangChainGenerator",
        "it clashes with langchain_core.runnables.RunnableGenerator",
    ),
}


def _deprecated(name: str) -> Any:
    new, why = _RENAMED[name]
    warnings.warn(
        f"langchain_blender.{name} is deprecated ({why}): use langchain_blender.{new}; "
        "the old name goes in the next release",
        DeprecationWarning,
        stacklevel=3,
    )
    return globals()[new]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    if name in _RENAMED:
        return _deprecated(name)
    raise AttributeError(f"module 'langchain_blender' has no attribute {name!r}")


if TYPE_CHECKING:
    from langchain_blender.middleware import BestOfModelsMiddleware, RankedToolFilterMiddleware
