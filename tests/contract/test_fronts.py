"""The contract every front keeps: the same conversation and members give the same blend.

Three fronts (LangChain ``ChatBlender``, LlamaIndex ``BlenderLLM``, and the gateway driven by the
official ``openai`` client against a real ``blender serve`` on 127.0.0.1) get the same
multi-turn conversation and the same fake members (fixed answers). The ranker is an LLM judge
whose judge is a fake OpenAI-compatible upstream that records every prompt: what the ranker
receives (the instruction, the history, the candidates) is read from those recorded prompts,
so it is compared across fronts too, including the gateway's, which runs in another process.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from blender_core.blend import BlendResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))

from serve_helpers import FakeUpstream, running

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

ANSWERS = {
    "alpha": "Paris is the capital of France.",
    "beta": "The capital of France is Paris.",
    "gamma": "Lyon, I think.",
}
CONVERSATION = [
    ("system", "You answer in one sentence."),
    ("user", "I am planning a trip to France."),
    ("assistant", "Great, how can I help?"),
    ("user", "What is the capital of France?"),
]
TOP_K = 2
# The schema: every BlendResult field, plus the two properties to_dict() adds.
SCHEMA = {f.name for f in fields(BlendResult)} | {"best", "best_models"}
TIMINGS = {"latencies", "rank_latency", "fuse_latency", "queueing"}
GATEWAY_EXTRA = {"ensemble", "usage_by_member"}  # the gateway's usage fields


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def _judge(upstream: FakeUpstream) -> Any:
    from blender_core.generators.openai_compatible import OpenAICompatibleGenerator
    from blender_core.rankers.llm_judge import LLMJudgeRanker

    # As the gateway builds {type = "llm_judge", member = "judge"} with an openai member.
    judge = OpenAICompatibleGenerator(
        "judge", base_url=upstream.base_url("ok"), name="judge", max_retries=0
    )
    return LLMJudgeRanker(judge, seed=0, timeout=60.0)


def _judge_prompts(upstream: FakeUpstream, since: int) -> list[str]:
    """The judge prompts sent since ``since``, their fence nonces (random per call) masked."""
    prompts = []
    for request in upstream.requests[since:]:
        body: Any = request["body"]
        if body.get("model") == "judge":
            text = "\n".join(m["content"] for m in body["messages"])
            prompts.append(re.sub(r"\b[0-9a-f]{16}\b", "<nonce>", text))
    return sorted(prompts)


def _langchain(upstream: FakeUpstream) -> dict[str, Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langchain_core.runnables import RunnableLambda

    from langchain_blender import ChatBlender

    models = {
        name: RunnableLambda(lambda _messages, text=text: AIMessage(text), name=name)
        for name, text in ANSWERS.items()
    }
    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    chat = ChatBlender(models=models, ranker=_judge(upstream), fuser="select", top_k=TOP_K)
    message = chat.invoke([kinds[role](content) for role, content in CONVERSATION])
    metadata = dict(message.response_metadata)
    metadata.pop("model_name")
    ranking = dict(metadata["ranking"])
    ranking.pop("texts")  # deprecated repeats of the top-level keys, for one release
    ranking.pop("models")
    metadata["ranking"] = ranking
    return metadata


def _llamaindex(upstream: FakeUpstream) -> dict[str, Any]:
    from llama_index.core.base.llms.types import (
        ChatMessage,
        CompletionResponse,
        LLMMetadata,
    )
    from llama_index.core.llms import CustomLLM
    from llama_index.core.llms.callbacks import llm_completion_callback

    from llamaindex_blender import BlenderLLM

    class Fixed(CustomLLM):
        answer: str

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="fixed")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            return CompletionResponse(text=self.answer)

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any) -> Any:
            yield CompletionResponse(text=self.answer, delta=self.answer)

    llm = BlenderLLM(
        models={name: Fixed(answer=text) for name, text in ANSWERS.items()},
        ranker=_judge(upstream),
        fuser="select",
        top_k=TOP_K,
    )
    response = llm.chat([ChatMessage(role=role, content=text) for role, text in CONVERSATION])
    return dict(response.additional_kwargs)


def _gateway_config(upstream: FakeUpstream) -> str:
    members = "".join(
        f'\n[members.{name}]\ntype = "static"\ntext = "{text}"\n' for name, text in ANSWERS.items()
    )
    return f"""{members}
[members.judge]
type = "openai"
base_url = "{upstream.base_url("ok")}"
model = "judge"

[ensembles.contract]
members = {list(ANSWERS)!r}
ranker = {{ type = "llm_judge", member = "judge" }}
fuser = {{ type = "select" }}
top_k = {TOP_K}
""".replace("'", '"')


def _gateway(upstream: FakeUpstream, tmp_path: Path) -> tuple[dict[str, Any], str]:
    with running(_gateway_config(upstream), tmp_path) as server:
        client = openai.OpenAI(
            base_url=server.base_url, api_key="unused", max_retries=0, timeout=60
        )
        response = client.chat.completions.create(
            model="contract",
            messages=[{"role": role, "content": text} for role, text in CONVERSATION],
        )
    content = response.choices[0].message.content or ""
    return dict(response.model_extra["blend"]), content


def _comparable(metadata: dict[str, Any]) -> Any:
    out = {k: v for k, v in metadata.items() if k in SCHEMA - TIMINGS}
    out["latencies"] = sorted(metadata["latencies"])  # who was timed, not how long
    # The judge's raw verdicts quote its prompts, whose fence nonces are random per call.
    return json.loads(re.sub(r"\b[0-9a-f]{16}\b", "<nonce>", json.dumps(out, sort_keys=True)))


def test_the_three_fronts_blend_the_same_conversation_the_same_way(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    seen: dict[str, list[str]] = {}
    metadata: dict[str, dict[str, Any]] = {}

    start = len(upstream.requests)
    metadata["langchain"] = _langchain(upstream)
    seen["langchain"] = _judge_prompts(upstream, start)

    start = len(upstream.requests)
    metadata["llamaindex"] = _llamaindex(upstream)
    seen["llamaindex"] = _judge_prompts(upstream, start)

    start = len(upstream.requests)
    metadata["gateway"], reply = _gateway(upstream, tmp_path)
    seen["gateway"] = _judge_prompts(upstream, start)

    # The ranker received the same instruction, history and candidates on every front.
    assert seen["langchain"], "the judge was never asked"
    assert seen["langchain"] == seen["llamaindex"] == seen["gateway"]
    # Each in its place: the latest message in the instruction fence, the history in the input
    # fence (not after the question inside the instruction fence).
    prompt = seen["langchain"][0]
    instruction_fence = prompt.split("<<<instruction <nonce>>>>\n")[1].split("\n<<<end of")[0]
    input_fence = prompt.split("<<<input <nonce>>>>\n")[1].split("\n<<<end of")[0]
    assert instruction_fence == "What is the capital of France?"
    assert input_fence == (
        "system: You answer in one sentence.\n\nuser: I am planning a trip to France."
        "\n\nassistant: Great, how can I help?"
    )

    # The same metadata schema, with the same values.
    for front in ("langchain", "llamaindex"):
        assert set(metadata[front]) == SCHEMA, front
    # The gateway's blend object is the same schema plus its usage fields: the answer, the
    # instruction and the input included, with the same values.
    assert set(metadata["gateway"]) == SCHEMA | GATEWAY_EXTRA
    assert (
        _comparable(metadata["langchain"])
        == _comparable(metadata["llamaindex"])
        == _comparable(metadata["gateway"])
    )
    for key in ("instruction", "input", "text"):
        assert metadata["langchain"][key] == metadata["llamaindex"][key] == metadata["gateway"][key]
    assert metadata["langchain"]["instruction"] == "What is the capital of France?"
    assert metadata["langchain"]["input"] == (
        "system: You answer in one sentence.\n\nuser: I am planning a trip to France."
        "\n\nassistant: Great, how can I help?"
    )
    assert reply == metadata["langchain"]["text"]
    assert metadata["gateway"]["blend_mode"] == "text"
    assert metadata["gateway"]["candidates"] == ANSWERS
