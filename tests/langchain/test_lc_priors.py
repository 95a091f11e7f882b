"""Member priors reach the LangChain ensembles: a PriorRanker is told who wrote each answer."""

from __future__ import annotations

from typing import Any

from lc_fakes import JoinFuser, LengthRanker

from blender_core.priors import MemberPriors, PriorRanker
from langchain_blender import Blender, ChatBlender


def test_priors_flow_through_the_chat_and_llm_ensembles(members: dict[str, Any]) -> None:
    # LengthRanker prefers beta's longer answer; a large prior for alpha turns the order round.
    priors = MemberPriors({"alpha": 100.0, "beta": 0.0}, scale=1.0)
    for cls, key in ((ChatBlender, "models"), (Blender, "llms")):
        plain = cls(**{key: members}, ranker=LengthRanker(), fuser=JoinFuser(), top_k=1)
        before = plain.invoke("hi")
        assert (before if isinstance(before, str) else before.content).startswith("Beta")
        ensemble = cls(
            **{key: members}, ranker=PriorRanker(LengthRanker(), priors), fuser=JoinFuser(), top_k=1
        )
        out = ensemble.invoke("hi")
        text = out if isinstance(out, str) else out.content
        assert text.startswith("Alpha:"), text
