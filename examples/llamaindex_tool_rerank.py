"""Rerank an agent's tool retrieval with PairRM: ``ObjectIndex`` of tools + ``PairRankerRerank``.

With many tools, an agent retrieves the few relevant to each request instead of seeing them all.
Here the retriever fetches the tool candidates from an ``ObjectIndex``, ``PairRankerRerank``
reranks their descriptions against the request and keeps two, and a ``FunctionAgent`` gets only
those. A scripted ``MockFunctionCallingLLM`` (it fills in the arguments a real model would read
from this request, then answers with the tool results) and ``MockEmbedding`` keep the script
offline; with ``MockEmbedding`` every tool is equally similar, so the retriever returns all five
and the reranker does the work. Without
``--ranker`` the reranker is MiniLM relevance (``ConsensusRanker`` with ``instruction_weight=1``:
each tool description's cosine similarity to the request), which needs no download;
``--ranker llm-blender/PairRM`` uses the real PairRanker, and ``--ranker tiny`` a tiny
*untrained* PairRM checkpoint built on the fly (its choice of tools is arbitrary).

    python examples/llamaindex_tool_rerank.py
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from llama_index.core import VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.objects import ObjectIndex
from llama_index.core.tools import FunctionTool

from blender_core.testing import add_ranker_option, demo_ranker
from llamaindex_blender import PairRankerRerank


def get_weather(city: str = "Paris") -> str:
    """Get today's weather forecast for a city."""
    return f"Sunny in {city}, 24 C."


def convert_currency(amount: float = 10.0, to: str = "EUR") -> str:
    """Convert an amount of US dollars into another currency."""
    return f"{amount * 0.92:.2f} {to}"


def search_flights(origin: str = "NYC", destination: str = "PAR") -> str:
    """Search for flights between two airports."""
    return f"3 flights from {origin} to {destination}."


def translate(text: str = "hello", language: str = "French") -> str:
    """Translate a short text into another language."""
    return f"{text} -> bonjour ({language})"


def book_restaurant(city: str = "Paris", people: int = 2) -> str:
    """Book a table at a restaurant."""
    return f"Table for {people} booked in {city}."


REQUEST = "Will it rain in Lyon tomorrow, and what is 10 dollars in euros?"

# What a real function-calling model would read from REQUEST for each tool (the mock LLM cannot
# read): tools it is offered but that the request does not need are not called.
ARGUMENTS: dict[str, dict[str, Any]] = {
    "get_weather": {"city": "Lyon"},
    "convert_currency": {"amount": 10.0, "to": "EUR"},
}


def scripted_llm(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
    """Stands in for a function-calling LLM: call the offered tools the request needs, then
    answer with their results."""
    results = [m.content for m in messages if m.role == MessageRole.TOOL]
    if results:
        return ChatMessage(role=MessageRole.ASSISTANT, content=" ".join(map(str, results)))
    offered = [t.metadata.name for t in kwargs.get("tools") or []]
    calls = [
        ToolCallBlock(tool_call_id=f"call-{name}", tool_name=name, tool_kwargs=ARGUMENTS[name])
        for name in offered
        if name in ARGUMENTS
    ]
    if not calls:
        return ChatMessage(role=MessageRole.ASSISTANT, content="None of my tools can answer that.")
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=calls)


async def run(ranker: dict[str, Any]) -> None:
    tools = [
        FunctionTool.from_defaults(fn)
        for fn in (get_weather, convert_currency, search_flights, translate, book_restaurant)
    ]
    obj_index = ObjectIndex.from_objects(
        tools, index_cls=VectorStoreIndex, embed_model=MockEmbedding(embed_dim=8)
    )
    retriever = obj_index.as_retriever(
        similarity_top_k=len(tools), node_postprocessors=[PairRankerRerank(**ranker, top_n=2)]
    )

    candidates = await obj_index.as_retriever(similarity_top_k=len(tools)).aretrieve(REQUEST)
    chosen = await retriever.aretrieve(REQUEST)
    print(f"Request: {REQUEST}")
    print(f"Retrieved (MockEmbedding: all alike): {sorted(t.metadata.name for t in candidates)}")
    print(f"Tools after reranking (top 2):       {[t.metadata.name for t in chosen]}")

    agent = FunctionAgent(
        tool_retriever=retriever,
        llm=MockFunctionCallingLLM(response_generator=scripted_llm),
        system_prompt="Use the tools to answer.",
    )
    handler = agent.run(user_msg=REQUEST)
    called = []
    async for event in handler.stream_events():
        if isinstance(event, ToolCallResult):
            called.append(event.tool_name)
            print(f"  agent called {event.tool_name}({event.tool_kwargs}) -> {event.tool_output}")
    print(f"Agent answer: {await handler}")
    missing = sorted(set(ARGUMENTS) - set(called))
    print(
        "Why: the agent only sees the tools the reranker kept; "
        + (
            "both tools this request needs were kept, so it answers both parts."
            if not missing
            else f"{', '.join(missing)} was not kept, so that part goes unanswered: a better "
            "ranker (--ranker llm-blender/PairRM) or a larger top_n helps."
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_ranker_option(parser)
    args = parser.parse_args()
    relevance = "relevance (cosine similarity of each tool description to the request)"
    ranker = demo_ranker(args.ranker, minilm=relevance, instruction_weight=1.0)
    asyncio.run(run({"model": ranker}))


if __name__ == "__main__":
    main()
