"""Rankers behind the :class:`~blender_core.ranking.Ranker` protocol, and their spec names.

:data:`BUILTIN_RANKERS` maps each ranker ``type`` a spec may name (``load_ranker("consensus")``,
``load_ranker({"type": "pairrm", "checkpoint": ...})``, the gateway's ``ranker = {type = ...}``)
to the factory that builds it, as ``"module:callable"`` (imported on first use, so that naming a
type loads no model library). Adding a ranker: write its module here and add its line below.
"""

from __future__ import annotations

__all__ = ["BUILTIN_RANKERS"]

BUILTIN_RANKERS: dict[str, str] = {
    "consensus": "blender_core.rankers.consensus:ConsensusRanker",
    "minilm": "blender_core.rankers.consensus:minilm_reranker",
    "random": "blender_core.rankers.random:RandomRanker",
    "pairrm": "blender_core.pair_ranker:PairRanker.from_pretrained",
    "llm_judge": "blender_core.rankers.llm_judge:LLMJudgeRanker",
}
"""Ranker type -> ``"module:callable"`` building it from the spec's fields as keywords."""
