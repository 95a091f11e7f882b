"""A key echoed by a server never reaches LangChain ``response_metadata`` (redacted in the core)."""

from __future__ import annotations

import json

import pytest
from hardening_server import MisbehavingServer

from blender_core import OpenAICompatibleGenerator
from blender_core.rankers.baselines import LongestRanker

pytest.importorskip("langchain_core")

from langchain_core.runnables import RunnableLambda

from langchain_blender import ChatBlender

KEY = "sk-live-TOPSECRET-langchain-0123456789"


def test_chat_blender_metadata_never_holds_the_key(fresh: MisbehavingServer) -> None:
    leaky = OpenAICompatibleGenerator("leaky", base_url=fresh.url("echo401"), api_key=KEY)
    url = fresh.url("echo401").replace("http://", "http://bob:url-pass-secret@")
    basic = OpenAICompatibleGenerator("basic", base_url=url)

    def raw(_: object) -> str:  # a member whose own error text carries a header
        raise RuntimeError(f"proxy said: {{'Authorization': 'Bearer {KEY}'}}")

    chat = ChatBlender(
        models={
            "leaky": RunnableLambda(lambda m: leaky.generate(str(m))),
            "basic": RunnableLambda(lambda m: basic.generate(str(m))),
            "raw": RunnableLambda(raw),
            "fine": RunnableLambda(lambda _: "a fine answer"),
        },
        ranker=LongestRanker(),
    )
    message = chat.invoke("hello")
    assert message.content == "a fine answer"
    failures = message.response_metadata["failures"]
    assert {f["model"] for f in failures} == {"leaky", "basic", "raw"}
    sent = {r["headers"]["Authorization"] for r in fresh.requests}
    assert f"Bearer {KEY}" in sent  # it went out, and the server echoed it back
    everything = json.dumps(message.response_metadata) + repr(message)
    assert KEY not in everything and "url-pass-secret" not in everything
    basic_token = next(
        r["headers"]["Authorization"].split()[1]
        for r in fresh.requests
        if r["headers"]["Authorization"].startswith("Basic")
    )
    assert basic_token not in everything
    assert "Bearer ***" in everything and "HTTP 401" in everything
