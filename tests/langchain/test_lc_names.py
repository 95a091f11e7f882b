"""Aligned names: rerankers, deprecated aliases, init_chat_model members, wrapped members, and
``import langchain_blender`` needing only langchain-core."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, ClassVar

import pytest
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from lc_fakes import JoinFuser, LengthRanker, ScriptedChatModel

import langchain_blender
import llamaindex_blender
from blender_core.loading import DEFAULT_RANKER
from langchain_blender import Blender, ChatBlender, LangChainGenerator


class _Recording(ScriptedChatModel):
    """Records the per-call kwargs (stop, temperature, max_tokens) each call receives."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        _Recording.seen.append({"model": self.model_name, "stop": stop, **kw})
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kw)


def test_deprecated_aliases_warn_and_are_the_new_objects() -> None:
    with pytest.deprecated_call(match="llamaindex_blender.BlenderLLM"):
        assert langchain_blender.BlenderLLM is Blender
    with pytest.deprecated_call(match="langchain_core.runnables.RunnableGenerator"):
        assert langchain_blender.RunnableGenerator is LangChainGenerator
    with pytest.deprecated_call():
        from langchain_blender.llms import BlenderLLM
    assert BlenderLLM is Blender
    assert "BlenderLLM" not in langchain_blender.__all__
    assert "RunnableGenerator" not in langchain_blender.__all__


def test_both_rerankers_take_the_same_names_and_defaults() -> None:
    lc = langchain_blender.PairRankerRerank()
    li = llamaindex_blender.PairRankerRerank()
    for reranker in (lc, li):
        assert reranker.model == DEFAULT_RANKER
        assert reranker.top_n == 3
        assert reranker.device is None
    ranker = LengthRanker()
    docs = ["a", "bbb", "cc"]
    lc_loaded = langchain_blender.PairRankerRerank(model=ranker, top_n=2)
    assert [r["index"] for r in lc_loaded.rerank(docs, "q")] == [1, 2]
    li_loaded = llamaindex_blender.PairRankerRerank(model=ranker, top_n=2, device="cpu")
    assert li_loaded.is_loaded and li_loaded.model_name == "LengthRanker"


def test_reranker_ranker_keyword_is_a_deprecated_alias_of_model() -> None:
    ranker = LengthRanker()
    with pytest.deprecated_call(match="model="):
        lc = langchain_blender.PairRankerRerank(ranker=ranker)
    assert lc.model is ranker and lc.ranker is ranker
    with pytest.deprecated_call(match="model="):
        li = llamaindex_blender.PairRankerRerank(ranker=ranker)
    assert li.model is ranker and li.load() is ranker


def test_wrapped_members_receive_stop_temperature_and_max_tokens() -> None:
    _Recording.seen = []
    bare = _Recording(model_name="bare", use_tools=False)
    members = {
        "bare": bare,
        "bound": _Recording(model_name="bound", use_tools=False).bind(),
        "retry": _Recording(model_name="retry", use_tools=False).with_retry(),
        "fallbacks": _Recording(model_name="fb", use_tools=False).with_fallbacks([bare]),
    }
    ChatBlender(
        models=members,
        ranker=LengthRanker(),
        fuser=JoinFuser(),
        temperature=0.2,
        max_tokens=7,
        stop=["END"],
    ).invoke("q")
    by_model = {call["model"]: call for call in _Recording.seen}
    assert set(by_model) == {"bare", "bound", "retry", "fb"}
    for call in by_model.values():
        assert call["stop"] == ["END"]
        assert call["temperature"] == 0.2 and call["max_tokens"] == 7


def test_members_may_be_init_chat_model_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("langchain_openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    llm = ChatBlender(
        models=["openai:gpt-4o-mini", ScriptedChatModel(model_name="local")],
        ranker=LengthRanker(),
    )
    assert list(llm.models) == ["gpt-4o-mini", "local"]
    assert type(llm.models["gpt-4o-mini"]).__name__ == "ChatOpenAI"


def test_import_needs_only_langchain_core() -> None:
    code = (
        "import sys, langchain_blender\n"
        "bad = sorted(m for m in sys.modules if m == 'langchain' or m.startswith('langchain.')"
        " or m.startswith('langchain_classic'))\n"
        "assert not bad, bad\n"
        "langchain_blender.BestOfModelsMiddleware\n"
        "assert 'langchain' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
