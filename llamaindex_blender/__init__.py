"""LLM-Blender components for LlamaIndex.

- :class:`PairRankerRerank`: a node postprocessor that reranks retrieved nodes with PairRM.
- :class:`BlenderLLM`: an ensemble LLM; members answer, answers are ranked and fused.
- :class:`FusionSynthesizer`: several LLMs answer over the context (or several query engines'
  answers are given); the answers are ranked and fused.
- :class:`PairRankerEvaluator`: PairRM as a pairwise evaluator.
- :class:`LlamaIndexGenerator`: a LlamaIndex LLM as a core generator (e.g. the LLM fuser).
"""

from llamaindex_blender._adapters import LlamaIndexGenerator
from llamaindex_blender.evaluation import PairRankerEvaluator
from llamaindex_blender.llm import BlenderLLM
from llamaindex_blender.rerank import PairRankerRerank
from llamaindex_blender.synthesizer import FusionSynthesizer

__all__ = [
    "BlenderLLM",
    "FusionSynthesizer",
    "LlamaIndexGenerator",
    "PairRankerEvaluator",
    "PairRankerRerank",
]
