"""The LangChain adapter on the core machinery: the member runner and the metadata schema."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from langchain.agents import create_agent
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import RunnableLambda
from lc_fakes import JoinFuser, LengthRanker, ScriptedChatModel

from langchain_blender import BestOfModelsMiddleware, ChatBlender


def _schema_keys() -> set[str]:
    """The keys of the core's ``BlendResult.to_dict()`` (tests/pipeline pins them)."""
    from blender_core import Blender
    from blender_core.generators.callable import CallableGenerator

    generators = [
        CallableGenerator(lambda p: "a", name="x"),
        CallableGenerator(lambda p: "bb", name="y"),
    ]
    return set(Blender(generators, ranker=LengthRanker()).blend("q").to_dict())


def test_chat_blender_metadata_is_the_blend_result_schema() -> None:
    members = {
        "short": RunnableLambda(lambda _: "apple"),
        "long": RunnableLambda(lambda _: "a ripe banana"),
    }
    message = ChatBlender(models=members, ranker=LengthRanker(), fuser=JoinFuser()).invoke("q")
    meta = message.response_metadata
    assert _schema_keys() | {"blend_mode"} <= set(meta)
    assert meta["blend_mode"] == "text"
    assert meta["texts"] == ["apple", "a ripe banana"]
    assert meta["models_by_text"] == [["short"], ["long"]]
    assert meta["best_models"] == ["long"]
    # deprecated for one release: the same lists inside the ranking
    assert meta["ranking"]["texts"] == meta["texts"]
    assert meta["ranking"]["models"] == meta["models_by_text"]


class _SlowAsync(ScriptedChatModel):
    """Sleeps on the event loop; records whether its cancelled call cleaned up."""

    cleaned: ClassVar[list[str]] = []

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        try:
            await asyncio.sleep(10)
        finally:
            _SlowAsync.cleaned.append(self.model_name)
        raise AssertionError("unreachable")


async def test_async_middleware_cancels_and_awaits_a_timed_out_model() -> None:
    _SlowAsync.cleaned.clear()
    agent = create_agent(
        model=ScriptedChatModel(model_name="ok", use_tools=False),
        middleware=[
            BestOfModelsMiddleware(
                {"slow": _SlowAsync(model_name="slow")}, ranker=LengthRanker(), timeout=0.3
            )
        ],
    )
    result = await agent.ainvoke({"messages": [("user", "hello")]})
    final = result["messages"][-1]
    (failure,) = final.response_metadata["best_of"]["failures"]
    assert failure == {"model": "slow", "kind": "timeout", "message": "no answer within 0.3 s"}
    assert _SlowAsync.cleaned == ["slow"]  # cancelled and awaited before the step returned
