"""LLM-Blender components for LangChain: ensembles, LCEL rank/fuse steps, reranking, middleware.

Example:
    .. code-block:: python

        from langchain_blender import ChatBlender

        llm = ChatBlender(models=[chat_a, chat_b], ranker="llm-blender/PairRM", top_k=2)
        llm.invoke("What is the capital of France?").response_metadata["ranking"]
"""

from __future__ import annotations

from langchain_blender._adapters import RunnableGenerator
from langchain_blender.chat_models import ChatBlender

__all__ = ["ChatBlender", "RunnableGenerator"]
