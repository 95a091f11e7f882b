"""Member priors reach the LlamaIndex FusionSynthesizer: a PriorRanker sees the member names."""

from __future__ import annotations

from typing import Any

from llama_index.core import VectorStoreIndex
from llama_index.core.llms import MockLLM

from blender_core.priors import MemberPriors, PriorRanker
from llamaindex_blender import FusionSynthesizer

from .conftest import FixedLLM, JoinFuser, LengthRanker


def test_priors_flow_through_the_synthesizer(documents: Any, embed_model: Any) -> None:
    llms = [
        FixedLLM(answer="Paris.", name="terse"),
        FixedLLM(answer="The capital of France is Paris.", name="full"),
    ]
    priors = MemberPriors({"terse": 100.0}, scale=1.0)  # "full" is unknown: neutral
    synth = FusionSynthesizer(
        llms, ranker=PriorRanker(LengthRanker(), priors), fuser=JoinFuser(), top_k=1
    )
    index = VectorStoreIndex.from_documents(documents, embed_model=embed_model)
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=2, response_synthesizer=synth)
    response = engine.query("What is the capital of France?")
    assert str(response) == "Paris."
    assert response.metadata["blend"]["best_models"] == ["terse"]
