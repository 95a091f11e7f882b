"""ChatBlender and Blender: chains, tracing, concurrency, failures, tools, usage, caching."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.globals import set_llm_cache
from langchain_core.language_models import FakeListLLM
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from lc_fakes import JoinFuser, LengthRanker, RunRecorder, ScriptedChatModel, call_as
from pydantic import BaseModel

from blender_core.blend import BlendError
from langchain_blender import MEMBER_TAG, Blender, BlenderLLM, ChatBlender

PROMPT = PromptTemplate.from_template("Question: {q}")


def _chat(members: dict[str, Any], **kwargs: Any) -> ChatBlender:
    return ChatBlender(models=members, ranker=LengthRanker(), fuser=JoinFuser(), **kwargs)


def _llm(members: dict[str, Any], **kwargs: Any) -> Blender:
    return Blender(models=members, ranker=LengthRanker(), fuser=JoinFuser(), **kwargs)


# -- chains: ChatBlender and Blender agree in every mode ---------------------------------------


async def test_chat_and_llm_chains_give_the_same_text(members: dict[str, Any]) -> None:
    chat_chain = PROMPT | _chat(members) | StrOutputParser()
    llm_chain = PROMPT | _llm(members) | StrOutputParser()
    expected = "Beta says, at length: Question: x + Alpha: Question: x"
    inputs = [{"q": "x"}, {"q": "y"}]
    for chain in (chat_chain, llm_chain):
        assert chain.invoke({"q": "x"}) == expected
        assert await chain.ainvoke({"q": "x"}) == expected
        assert "".join(chain.stream({"q": "x"})) == expected
        assert "".join([c async for c in chain.astream({"q": "x"})]) == expected
        assert chain.batch(inputs) == [expected, expected.replace("x", "y")]
        assert await chain.abatch(inputs) == [expected, expected.replace("x", "y")]
    assert BlenderLLM is Blender


def test_a_fuser_that_does_not_stream_gives_one_chunk(members: dict[str, Any]) -> None:
    chunks = list(_chat(members).stream("hello world"))
    assert len(chunks) == 1
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].response_metadata["blend_mode"] == "text"
    assert chunks[-1].content == "Beta says, at length: hello world + Alpha: hello world"
    assert [c for c in _llm(members).stream("hello world")][-1]


def _streaming_fuser() -> GenericFakeChatModel:
    return GenericFakeChatModel(
        messages=iter([AIMessage(content="the fused answer, token by token")])
    )


def test_a_chat_model_fuser_streams_its_tokens(members: dict[str, Any]) -> None:
    async def astream(chat: ChatBlender) -> list[Any]:
        return [c async for c in chat.astream("hi")]

    for mode in ("stream", "astream"):
        chat = ChatBlender(models=members, ranker=LengthRanker(), fuser=_streaming_fuser(), top_k=2)
        chunks = list(chat.stream("hi")) if mode == "stream" else asyncio.run(astream(chat))
        assert len(chunks) > 2  # GenericFakeChatModel streams word by word
        assert "".join(str(c.content) for c in chunks) == "the fused answer, token by token"
        assert all(not c.response_metadata for c in chunks[:-1])
        last = chunks[-1]
        assert last.chunk_position == "last"
        invoked = ChatBlender(
            models=members, ranker=LengthRanker(), fuser=_streaming_fuser(), top_k=2
        ).invoke("hi")
        # the same metadata schema as invoke (latencies differ run to run)
        assert set(last.response_metadata) == set(invoked.response_metadata)
        assert last.response_metadata["text"] == "the fused answer, token by token"


def test_the_llm_ensemble_streams_a_fusers_tokens_under_its_run(members: dict[str, Any]) -> None:
    # BaseLLM.stream hands _stream its run manager: the members, ranker and fuser nest under it.
    llm = Blender(models=members, ranker=LengthRanker(), fuser=_streaming_fuser(), top_k=2)
    recorder = RunRecorder()
    chunks = list(llm.stream("hi", {"callbacks": [recorder]}))
    assert len(chunks) > 2 and "".join(chunks) == "the fused answer, token by token"
    (root,) = recorder.run_id_of("Blender")
    assert recorder.children_of(root) == ["LengthRanker", "fuser", "stage 0"]
    assert recorder.stage_members(root) == ["alpha", "beta"]


def test_stop_cuts_a_streamed_answer(members: dict[str, Any]) -> None:
    chat = ChatBlender(models=members, ranker=LengthRanker(), fuser=_streaming_fuser(), top_k=2)
    chunks = list(chat.stream("hi", stop=["token by"]))
    assert "".join(str(c.content) for c in chunks) == "the fused answer, "
    assert chunks[-1].response_metadata["text"].startswith("the fused answer, token")


# -- tracing: members are children of the ensemble's run (in its stage run) ---------------------


def _assert_nested(recorder: RunRecorder, ensemble_kind: str, count: int = 1) -> None:
    roots = [
        s
        for s in recorder.starts
        if s["kind"] == ensemble_kind and s["name"] in {"ChatBlender", "Blender"}
    ]
    assert len(roots) == count, recorder.starts
    for root in roots:
        run_id = root["run_id"]
        assert recorder.children_of(run_id) == ["LengthRanker", "stage 0"]
        assert recorder.stage_members(run_id) == ["alpha", "beta"]


async def test_member_runs_nest_under_the_ensemble_in_every_mode(members: dict[str, Any]) -> None:
    """invoke/ainvoke/batch/abatch: the ranker and the stage of member calls (the members in
    it) are children of the ensemble run.

    stream/astream: langchain-core calls ``_stream``/``_astream`` without the run manager (by
    design), so there the stage's and ranker's runs attach to the ambient run instead (the
    caller's: here a RunnableLambda, or the chain), as siblings of the ensemble's run.
    """
    chat = _chat(members)
    for mode in ("invoke", "ainvoke", "batch", "abatch"):
        recorder = RunRecorder()
        config: Any = {"callbacks": [recorder]}
        await call_as(chat, mode, config)
        _assert_nested(recorder, "chat", 2 if "batch" in mode else 1)

    async def astream(x: str) -> str:
        return "".join([str(c.content) async for c in chat.astream(x)])

    for mode in ("stream", "astream", "chain-stream"):
        recorder = RunRecorder()
        config = {"callbacks": [recorder]}
        if mode == "stream":
            RunnableLambda(lambda x: "".join(str(c.content) for c in chat.stream(x))).invoke(
                "hi", config
            )
        elif mode == "astream":
            await RunnableLambda(astream).ainvoke("hi", config)
        else:
            list((PROMPT | chat | StrOutputParser()).stream({"q": "hi"}, config))
        (ensemble,) = recorder.named("ChatBlender")
        parent = ensemble["parent"]
        assert parent is not None
        chain_steps = ["PromptTemplate", "StrOutputParser"] if mode == "chain-stream" else []
        assert recorder.children_of(parent) == sorted(
            ["ChatBlender", "LengthRanker", "stage 0", *chain_steps]
        ), (mode, recorder.starts)
        assert recorder.stage_members(parent) == ["alpha", "beta"]


async def test_member_runs_in_astream_events(members: dict[str, Any]) -> None:
    # Streamed, the members' stage run is a sibling of the ensemble's (see the test above): in a
    # chain, a child of the chain's run; the members are in it, in astream_events and tagged.
    chat = ChatBlender(models=members, ranker=LengthRanker(), fuser=_streaming_fuser(), top_k=2)
    chain = PROMPT | chat
    events = [e async for e in chain.astream_events({"q": "hi"}, version="v2")]
    starts = [e for e in events if e["event"] == "on_chat_model_start"]
    ensemble = next(e for e in starts if e["name"] == "ChatBlender")
    members_seen = [e for e in starts if e["name"] in ("alpha", "beta")]
    assert sorted(e["name"] for e in members_seen) == ["alpha", "beta"]
    (stage,) = [e for e in events if e["event"] == "on_chain_start" and e["name"] == "stage 0"]
    assert stage["parent_ids"] == ensemble["parent_ids"]
    assert all(e["parent_ids"] == [*stage["parent_ids"], stage["run_id"]] for e in members_seen)
    assert all(MEMBER_TAG in e["tags"] for e in members_seen)
    streamed = [
        e for e in events if e["event"] == "on_chat_model_stream" and e["name"] == "ChatBlender"
    ]
    assert len(streamed) > 1


async def test_llm_batch_keeps_one_run_per_prompt(members: dict[str, Any]) -> None:
    llm = _llm(members)
    for call in ("batch", "abatch", "generate"):
        recorder = RunRecorder()
        if call == "batch":
            llm.batch(["a", "b", "c"], {"callbacks": [recorder]})
        elif call == "abatch":
            await llm.abatch(["a", "b", "c"], {"callbacks": [recorder]})
        else:
            llm.generate(["a", "b", "c"], callbacks=[recorder])
        _assert_nested(recorder, "llm", 3)


async def test_llm_generate_splits_per_prompt_run_arguments(members: dict[str, Any]) -> None:
    """Callbacks (positional too), tags and run names given per prompt reach each prompt's run."""
    llm = _llm(members)
    for call in ("generate", "agenerate"):
        first, second = RunRecorder(), RunRecorder()
        options: dict[str, Any] = {"tags": [["one"], ["two"]], "run_name": ["p1", "p2"]}
        if call == "generate":
            result = llm.generate(["a", "b"], None, [[first], [second]], **options)
        else:
            result = await llm.agenerate(["a", "b"], None, [[first], [second]], **options)
        assert len(result.generations) == 2
        assert first.run_id_of("p1") and not first.run_id_of("p2")
        assert second.run_id_of("p2") and not second.run_id_of("p1")
        with pytest.raises(ValueError, match="run_name must be a list of the same length"):
            llm.generate(["a", "b"], run_name=["only one"])


def test_chat_model_fuser_nests_and_counts_usage(members: dict[str, Any]) -> None:
    fuser = ScriptedChatModel(model_name="fuser-model", reply="the fused answer")
    chat = ChatBlender(models=members, ranker=LengthRanker(), fuser=fuser, top_k=2)
    recorder = RunRecorder()
    message = chat.invoke("hi", {"callbacks": [recorder]})
    assert message.content == "the fused answer"
    (root,) = recorder.run_id_of("ChatBlender")
    assert recorder.children_of(root) == ["LengthRanker", "fuser", "stage 0"]
    assert recorder.stage_members(root) == ["alpha", "beta"]
    assert fuser.calls == 1
    usage = message.usage_metadata
    assert usage is not None
    member_out = 2  # "Alpha: hi" and "Beta says, at length: hi" are 2 and 5 words
    assert usage["output_tokens"] == member_out + 5 + 3  # + the fuser's 3 words


# -- metadata, usage, identity --------------------------------------------------------------------


def test_response_metadata_and_usage(members: dict[str, Any]) -> None:
    message = _chat(members).invoke("hello there")
    meta = message.response_metadata
    assert meta["model_name"] == "blend(alpha, beta)"
    assert meta["candidates"] == {
        "alpha": "Alpha: hello there",
        "beta": "Beta says, at length: hello there",
    }
    assert meta["ranking"]["order"] == [1, 0]
    assert meta["ranking"]["ranks"] == [2, 1]
    assert meta["ranking"]["models"] == [["alpha"], ["beta"]]
    assert meta["top_k"] == ["Beta says, at length: hello there", "Alpha: hello there"]
    assert meta["best_models"] == ["beta"]
    assert meta["failures"] == []
    assert set(meta["latencies"]) == {"alpha", "beta"}
    assert message.usage_metadata == {"input_tokens": 4, "output_tokens": 9, "total_tokens": 13}


def test_identifying_params_name_members_and_cache_is_not_shared() -> None:
    a = _chat({"x": ScriptedChatModel(model_name="m1", reply="from one")})
    b = _chat({"x": ScriptedChatModel(model_name="m2", reply="from two")})
    assert a._identifying_params != b._identifying_params
    assert "m1" in str(a._identifying_params)
    set_llm_cache(InMemoryCache())
    try:
        assert a.invoke("same").content == "from one"
        assert b.invoke("same").content == "from two"
        assert a.invoke("same").content == "from one"
    finally:
        set_llm_cache(None)


def test_list_members_get_unique_names() -> None:
    chat = ChatBlender(
        models=[ScriptedChatModel(model_name="m"), ScriptedChatModel(model_name="m")],
        ranker=LengthRanker(),
    )
    assert list(chat.models) == ["m", "m#2"]


def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one model"):
        ChatBlender(models=[], ranker=LengthRanker())
    with pytest.raises(TypeError, match="not a LangChain Runnable"):
        ChatBlender(models={"a": object()}, ranker=LengthRanker())
    with pytest.raises(TypeError, match="ranker must be"):
        ChatBlender(models=[ScriptedChatModel()], ranker=42)
    with pytest.raises(ValueError, match="top_k"):
        ChatBlender(models=[ScriptedChatModel()], ranker=LengthRanker(), top_k=0)
    with pytest.raises(ValueError, match="min_candidates=2 can never be met"):
        Blender(models=[ScriptedChatModel()], ranker=LengthRanker(), min_candidates=2)


def test_stop_is_applied_to_the_answer(members: dict[str, Any]) -> None:
    message = _chat(members).invoke("hello there", stop=["there"])
    assert "there" not in message.text
    assert _llm(members, stop=["+"]).invoke("q") == "Beta says, at length: q "


# -- concurrency ----------------------------------------------------------------------------------


async def test_hundred_concurrent_ainvoke_calls_get_their_own_answer() -> None:
    members = {
        "slow": ScriptedChatModel(model_name="slow", prefix="slow answer to", delay=0.02),
        "fast": ScriptedChatModel(model_name="fast", prefix="fast:"),
    }
    chat = _chat(members)
    results = await asyncio.gather(*(chat.ainvoke(f"question {i}") for i in range(100)))
    for i, message in enumerate(results):
        assert message.content == f"slow answer to question {i} + fast: question {i}"


async def test_members_run_concurrently() -> None:
    members = {f"m{i}": ScriptedChatModel(model_name=f"m{i}", delay=0.3) for i in range(4)}
    chat = _chat(members)
    start = time.perf_counter()
    await chat.ainvoke("hi")
    assert time.perf_counter() - start < 0.9
    start = time.perf_counter()
    chat.invoke("hi")
    assert time.perf_counter() - start < 0.9


# -- failures -------------------------------------------------------------------------------------


async def test_a_failing_member_is_reported_and_the_call_answers(members: dict[str, Any]) -> None:
    members["broken"] = ScriptedChatModel(model_name="broken", fail="boom")
    chat = _chat(members)
    for message in (chat.invoke("hi"), await chat.ainvoke("hi"), _stream_all(chat)):
        failures = message.response_metadata["failures"]
        assert failures == [{"model": "broken", "kind": "error", "message": "RuntimeError: boom"}]
        assert message.content == "Beta says, at length: hi + Alpha: hi"
    generation = _llm(members).generate(["hi"]).generations[0][0]
    assert generation.generation_info["failures"][0]["model"] == "broken"


def _stream_all(chat: ChatBlender) -> Any:
    full = None
    for chunk in chat.stream("hi"):
        full = chunk if full is None else full + chunk
    return full


async def test_all_members_failing_raises_naming_each() -> None:
    members = {
        "one": ScriptedChatModel(model_name="one", fail="first broke"),
        "two": ScriptedChatModel(model_name="two", fail="second broke"),
    }
    for run in ("invoke", "ainvoke", "llm"):
        with pytest.raises(BlendError) as info:
            if run == "invoke":
                _chat(members).invoke("hi")
            elif run == "ainvoke":
                await _chat(members).ainvoke("hi")
            else:
                _llm(members).invoke("hi")
        message = str(info.value)
        assert "one" in message and "first broke" in message
        assert "two" in message and "second broke" in message
        assert {f.model for f in info.value.failures} == {"one", "two"}


async def test_a_slow_member_times_out() -> None:
    members = {
        "slow": ScriptedChatModel(model_name="slow", delay=2.0),
        "quick": ScriptedChatModel(model_name="quick", prefix="quick:"),
    }
    chat = _chat(members, timeout=0.2)
    for message in (chat.invoke("hi"), await chat.ainvoke("hi")):
        (failure,) = message.response_metadata["failures"]
        assert failure["model"] == "slow" and failure["kind"] == "timeout"
        assert message.content == "quick: hi"


def test_min_candidates_and_retries() -> None:
    flaky_calls = {"n": 0}

    def flaky(_: Any) -> str:
        flaky_calls["n"] += 1
        if flaky_calls["n"] == 1:
            raise RuntimeError("transient")
        return "recovered"

    members = {"flaky": RunnableLambda(flaky), "ok": ScriptedChatModel(model_name="ok")}
    assert _chat(members, max_retries=1).invoke("q").response_metadata["failures"] == []
    members = {"bad": ScriptedChatModel(fail="x"), "ok": ScriptedChatModel(model_name="ok")}
    with pytest.raises(BlendError, match="min_candidates=2"):
        _chat(members, min_candidates=2).invoke("q")


def test_members_may_be_any_runnable_or_llm() -> None:
    members = {
        "fake_chat": GenericFakeChatModel(messages=iter([AIMessage("a generic answer")])),
        "lambda": RunnableLambda(lambda _: "a plain string answer, the longest one here"),
        "llm": FakeListLLM(responses=["an llm answer"]),
    }
    message = ChatBlender(models=members, ranker=LengthRanker()).invoke("q")
    assert message.content == "a plain string answer, the longest one here"
    assert set(message.response_metadata["candidates"]) == {"fake_chat", "lambda", "llm"}


# -- tools and structured output -----------------------------------------------------------------


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


async def test_tool_calls_are_ranked_and_the_best_selected() -> None:
    members = {
        "adder": ScriptedChatModel(model_name="adder"),
        "talker": ScriptedChatModel(
            model_name="talker", reply="I would rather chat about it all day long"
        ),
    }
    chat = ChatBlender(models=members, ranker=LengthRanker()).bind_tools([add, multiply])
    # "talker" answers in (longer) text, "adder" calls a tool: tool calls win, never fused.
    for message in (chat.invoke("please add 2 and 3"), await chat.ainvoke("please add 2 and 3")):
        assert message.tool_calls[0]["name"] == "add"
        assert message.tool_calls[0]["args"] == {"a": 2, "b": 3}
        assert message.response_metadata["blend_mode"] == "tool_calls"
        # Both members made the same call: identical proposals are merged, the first is chosen.
        assert message.response_metadata["best_models"][0] == "adder"
        assert set(message.response_metadata["candidates"]) == {"adder", "talker"}
        assert message.response_metadata["ranking"]["texts"][0].startswith("add(")
    streamed = _stream_all_tools(chat, "please multiply 4 and 5")
    assert streamed.tool_calls[0]["name"] == "multiply"
    assert streamed.tool_calls[0]["args"] == {"a": 4, "b": 5}


def _stream_all_tools(chat: Any, text: str) -> Any:
    full = None
    for chunk in chat.stream(text):
        full = chunk if full is None else full + chunk
    return full


def test_members_without_tools_are_failures_not_crashes() -> None:
    members = {
        "tools": ScriptedChatModel(model_name="tools"),
        "no_tools": GenericFakeChatModel(messages=iter([AIMessage("x")])),
    }
    message = ChatBlender(models=members, ranker=LengthRanker()).bind_tools([add]).invoke("add 1 2")
    assert message.tool_calls
    (failure,) = message.response_metadata["failures"]
    assert failure["model"] == "no_tools"


async def test_with_structured_output(members: dict[str, Any]) -> None:
    class Answer(BaseModel):
        """An answer with a confidence."""

        text: str
        confidence: int

    structured = _chat(members).with_structured_output(Answer)
    result = structured.invoke("answer with confidence 7")
    assert isinstance(result, Answer) and result.confidence == 7
    result = await structured.ainvoke("answer with confidence 9")
    assert isinstance(result, Answer) and result.confidence == 9
    raw = _chat(members).with_structured_output(Answer, include_raw=True).invoke("confidence 3")
    assert raw["parsed"].confidence == 3
    assert raw["raw"].response_metadata["blend_mode"] == "tool_calls"


def test_conversation_instruction_is_the_last_human_message(members: dict[str, Any]) -> None:
    # The core's one chat policy: the latest human message, then the history as the input.
    ranker = LengthRanker()
    chat = ChatBlender(models=members, ranker=ranker)
    message = chat.invoke([HumanMessage("first"), AIMessage("ok"), HumanMessage("second question")])
    assert ranker.calls[-1][0] == "second question\n\nuser: first\n\nassistant: ok"
    assert message.response_metadata["instruction"] == "second question"
    assert message.response_metadata["input"] == "user: first\n\nassistant: ok"


# -- the tiny PairRM ----------------------------------------------------------------------------


@pytest.mark.slow
def test_chat_blender_with_tiny_pairrm(tiny_pairrm_dir: Any, members: dict[str, Any]) -> None:
    chat = ChatBlender(models=members, ranker=str(tiny_pairrm_dir), strategy="max_logits")
    message = chat.invoke("Say hello")
    ranking = message.response_metadata["ranking"]
    assert sorted(ranking["order"]) == [0, 1]
    assert message.content in message.response_metadata["candidates"].values()


def test_llms_is_a_deprecated_alias_of_models(members: dict[str, Any]) -> None:
    # Same name on every front: models=; llms= keeps working one release with a warning.
    with pytest.warns(DeprecationWarning, match="models="):
        llm = Blender(llms=members, ranker=LengthRanker())
    assert list(llm.models) == list(members)
    with pytest.warns(DeprecationWarning, match="use models"):
        assert llm.llms is llm.models
    with pytest.raises(ValueError, match="not both"), pytest.warns(DeprecationWarning):
        Blender(llms=members, models=members, ranker=LengthRanker())


def test_same_options_and_defaults_as_the_core(members: dict[str, Any]) -> None:
    from blender_core.engine import DEFAULT_OPTIONS

    for cls in (ChatBlender, Blender):
        fields = cls.model_fields
        for name, default in DEFAULT_OPTIONS.items():
            assert fields[name].default == default, (cls.__name__, name)


def test_max_retries_retries_a_failing_member() -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    class Flaky(GenericFakeChatModel):
        failures_left: int = 1

        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            if self.failures_left:
                self.failures_left -= 1
                raise RuntimeError("flaky")
            return super()._generate(*args, **kwargs)

    flaky = Flaky(messages=iter([AIMessage("recovered")]))
    chat = ChatBlender(models={"flaky": flaky}, ranker=LengthRanker(), max_retries=1)
    message = chat.invoke("hi")
    assert message.content == "recovered" and message.response_metadata["failures"] == []
