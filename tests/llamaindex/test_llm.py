"""BlenderLLM: pass-through of every LLM method, concurrency, spans, failures, tools."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, ClassVar

import pytest
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.llms.mock import (
    MockFunctionCallingLLM,
    MockLLM,
    MockLLMWithChatMemoryOfLastCall,
)
from llama_index.core.tools import FunctionTool

from blender_core.blend import BlendError, BlendResult
from llamaindex_blender import BlenderLLM

from .conftest import FixedLLM, JoinFuser, LengthRanker

USER = [ChatMessage(role="user", content="Name a fruit.")]


def ensemble(**kwargs: Any) -> BlenderLLM:
    members = kwargs.pop(
        "llms",
        [
            FixedLLM(answer="apple", name="a"),
            FixedLLM(answer="a ripe banana", name="b"),
            FixedLLM(answer="cherry", name="c"),
        ],
    )
    kwargs.setdefault("ranker", LengthRanker())
    kwargs.setdefault("fuser", JoinFuser())
    kwargs.setdefault("top_k", 2)
    return BlenderLLM(members, **kwargs)


def check_blend(kwargs: dict[str, Any], raw: Any) -> None:
    assert kwargs["candidates"] == {"a": "apple", "b": "a ripe banana", "c": "cherry"}
    assert kwargs["ranking"]["order"] == [1, 2, 0]
    assert kwargs["top_k"] == ["a ripe banana", "cherry"]
    assert kwargs["best_models"] == ["b"]
    assert kwargs["failures"] == []
    assert isinstance(raw, BlendResult)


def test_complete_and_chat() -> None:
    llm = ensemble()
    completion = llm.complete("Name a fruit.")
    assert completion.text == "a ripe banana | cherry"
    check_blend(completion.additional_kwargs, completion.raw)
    chat = llm.chat(USER)
    assert chat.message.role == "assistant"
    assert chat.message.content == "a ripe banana | cherry"
    check_blend(chat.additional_kwargs, chat.raw)


def test_stream_chat_and_stream_complete() -> None:
    llm = ensemble()
    chunks = list(llm.stream_chat(USER))
    assert "".join(c.delta or "" for c in chunks) == "a ripe banana | cherry"
    assert chunks[-1].message.content == "a ripe banana | cherry"
    check_blend(chunks[-1].additional_kwargs, chunks[-1].raw)
    chunks_c = list(llm.stream_complete("Name a fruit."))
    assert chunks_c[-1].text == "a ripe banana | cherry"


async def test_async_forms() -> None:
    llm = ensemble()
    chat = await llm.achat(USER)
    assert chat.message.content == "a ripe banana | cherry"
    check_blend(chat.additional_kwargs, chat.raw)
    completion = await llm.acomplete("Name a fruit.")
    assert completion.text == "a ripe banana | cherry"
    chunks = [c async for c in await llm.astream_chat(USER)]
    assert chunks[-1].message.content == "a ripe banana | cherry"
    ctext = [c async for c in await llm.astream_complete("x")]
    assert ctext[-1].text == "a ripe banana | cherry"


def test_mockllm_members_and_default_select_fuser() -> None:
    llm = BlenderLLM({"echo": MockLLM(), "fixed": FixedLLM(answer="yes")}, ranker=LengthRanker())
    response = llm.complete("a prompt that is longer than yes")
    assert response.text == "a prompt that is longer than yes"  # select: the best, unchanged
    assert response.additional_kwargs["candidates"]["fixed"] == "yes"


def test_chat_keeps_each_members_own_chat() -> None:
    recorder = MockLLMWithChatMemoryOfLastCall()
    llm = BlenderLLM([recorder, FixedLLM(answer="fixed")], ranker=LengthRanker())
    messages = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Hi"),
    ]
    llm.chat(messages)
    assert recorder.last_called_chat_function == ["chat"]
    assert [m.content for m in recorder.last_chat_messages or []] == ["Be brief.", "Hi"]
    asyncio.run(llm.achat(messages))
    assert recorder.last_called_chat_function[-1] == "achat"  # (its achat calls its chat)


def test_metadata_is_derived_from_members() -> None:
    llm = ensemble(
        llms=[
            FixedLLM(answer="x", name="big", context_window=8000, num_output=512),
            FixedLLM(answer="y", name="small", context_window=2048, num_output=128),
            MockLLM(is_chat_model=True),
        ]
    )
    meta = llm.metadata
    assert meta.context_window == 2048
    assert meta.num_output == 128
    assert meta.is_chat_model is True
    assert meta.model_name == "blender(big, small, MockLLM)"
    assert not meta.is_function_calling_model


def test_sync_members_run_concurrently() -> None:
    barrier = threading.Barrier(3, timeout=5)  # only passes if all three run at once
    members = [FixedLLM(answer=a, name=a, on_call=barrier.wait) for a in ("x", "yy", "zzz")]
    response = ensemble(llms=members).complete("q")
    assert response.additional_kwargs["failures"] == []
    assert response.text == "zzz | yy"


class AsyncFixedLLM(FixedLLM):
    """Native async member that records how many calls are in flight at once."""

    in_flight: ClassVar[list[int]] = [0, 0]  # shared by all instances: current, max

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kw: Any
    ) -> CompletionResponse:
        self.in_flight[0] += 1
        self.in_flight[1] = max(self.in_flight[1], self.in_flight[0])
        await asyncio.sleep(0.05)
        self.in_flight[0] -= 1
        return CompletionResponse(text=self.answer)

    @llm_chat_callback()
    async def achat(self, messages: Any, **kw: Any) -> ChatResponse:
        response = await self.acomplete("")
        return ChatResponse(message=ChatMessage(role="assistant", content=response.text))


async def test_async_members_run_concurrently() -> None:
    AsyncFixedLLM.in_flight[:] = [0, 0]
    members = [AsyncFixedLLM(answer=a, name=a) for a in ("x", "yy", "zzz")]
    response = await ensemble(llms=members).achat(USER)
    assert AsyncFixedLLM.in_flight[1] == 3
    assert response.message.content == "zzz | yy"


def _stage_of(spans: dict[str, str | None], method: str) -> str:
    """The one stage span of the members' calls, a child of ``BlenderLLM.<method>``'s span."""
    (parent,) = [s for s in spans if s.startswith(f"BlenderLLM.{method}-")]
    (stage,) = [s for s, p in spans.items() if p == parent and s.startswith("all.stage-")]
    return stage


def _check_nesting(spans: dict[str, str | None], method: str) -> None:
    stage = _stage_of(spans, method)
    children = [s for s, p in spans.items() if p == stage and s.startswith(f"FixedLLM.{method}-")]
    assert len(children) == 3


def test_members_nest_in_spans_sync(spans: dict[str, str | None]) -> None:
    llm = ensemble()
    llm.chat(USER)
    _check_nesting(spans, "chat")
    spans.clear()
    llm.complete("q")
    _check_nesting(spans, "complete")
    spans.clear()
    list(llm.stream_chat(USER))
    (parent,) = [s for s in spans if s.startswith("BlenderLLM.stream_chat-")]
    children = [s for s, p in spans.items() if p == parent]
    stage = _stage_of(spans, "stream_chat")
    assert sum(1 for s, p in spans.items() if p == stage and s.startswith("FixedLLM.")) == 3
    assert sum(1 for s in children if s.startswith("LengthRanker.rank-")) == 1


async def test_members_nest_in_spans_async(spans: dict[str, str | None]) -> None:
    await ensemble().achat(USER)
    _check_nesting(spans, "achat")


def test_failing_member_is_reported_and_call_answers() -> None:
    members = [FixedLLM(answer="fine", name="ok"), FixedLLM(answer="", name="bad", error="boom")]
    response = ensemble(llms=members).chat(USER)
    assert response.message.content == "fine"
    assert response.additional_kwargs["failures"] == [
        {"model": "bad", "kind": "error", "message": "RuntimeError: boom"}
    ]
    aresponse = asyncio.run(ensemble(llms=members).achat(USER))
    assert aresponse.additional_kwargs["failures"][0]["model"] == "bad"


def test_timed_out_member_is_reported() -> None:
    members = [
        FixedLLM(answer="fast", name="fast"),
        FixedLLM(answer="slow", name="slow", delay=1.0),
    ]
    response = ensemble(llms=members, timeout=0.2).complete("q")
    assert response.text == "fast"
    (failure,) = response.additional_kwargs["failures"]
    assert failure["model"] == "slow" and failure["kind"] == "timeout"


def test_all_members_failing_names_each() -> None:
    members = [FixedLLM(answer="", name=n, error=f"{n} broke") for n in ("p", "q")]
    with pytest.raises(BlendError) as info:
        ensemble(llms=members).chat(USER)
    assert "p" in str(info.value) and "q broke" in str(info.value)
    assert {f.model for f in info.value.failures} == {"p", "q"}
    with pytest.raises(BlendError):
        asyncio.run(ensemble(llms=members).acomplete("x"))


def test_bad_construction() -> None:
    with pytest.raises(ValueError, match="at least one"):
        BlenderLLM([])
    with pytest.raises(TypeError, match="not a LlamaIndex LLM"):
        BlenderLLM([object()])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        BlenderLLM(MockLLM())  # type: ignore[arg-type]


def test_sync_call_inside_running_loop() -> None:
    async def main() -> str:
        return ensemble().complete("q").text  # the sync API must not trip on the loop

    assert asyncio.run(main()) == "a ripe banana | cherry"


# ---------------------------------------------------------------- tools


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def mul(a: int, b: int) -> int:
    """Multiply two numbers."""
    return a * b


def proposer(tool: str, kwargs: dict[str, int], content: str = "") -> MockFunctionCallingLLM:
    def respond(messages: Any, **kw: Any) -> ChatMessage:
        results = [m.content for m in messages if m.role == "tool"]
        if results:  # after the tool ran: answer with its result
            return ChatMessage(role="assistant", content=f"The answer is {results[-1]}.")
        call = ToolSelection(tool_id=f"id-{tool}", tool_name=tool, tool_kwargs=kwargs)
        return ChatMessage(
            role="assistant", content=content, additional_kwargs={"tool_calls": [call]}
        )

    return MockFunctionCallingLLM(response_generator=respond)


def tool_ensemble() -> BlenderLLM:
    return BlenderLLM(
        {
            "adder": proposer("add", {"a": 2, "b": 3}),
            "multiplier": proposer("mul", {"a": 20, "b": 30}),
        },
        ranker=LengthRanker(),
        fuser=JoinFuser(),  # must never be used for tool calls
    )


def test_tool_calls_are_selected_not_fused() -> None:
    llm = tool_ensemble()
    assert llm.metadata.is_function_calling_model
    tools = [FunctionTool.from_defaults(add), FunctionTool.from_defaults(mul)]
    response = llm.chat_with_tools(tools, user_msg="What is 20 times 30?")
    assert response.additional_kwargs["selected_model"] == "multiplier"
    assert response.additional_kwargs["candidates"]["adder"] == 'add({"a": 2, "b": 3})'
    calls = llm.get_tool_calls_from_response(response)
    assert [(c.tool_name, c.tool_kwargs) for c in calls] == [("mul", {"a": 20, "b": 30})]
    out = llm.predict_and_call(tools, user_msg="What is 20 times 30?")
    assert out.response == "600"


def test_tool_proposals_nest_in_spans(spans: dict[str, str | None]) -> None:
    tools = [FunctionTool.from_defaults(add), FunctionTool.from_defaults(mul)]
    tool_ensemble().chat_with_tools(tools, user_msg="20 times 30?")
    # FunctionCallingLLM.chat_with_tools prepares the call and runs chat, where the stage is.
    stage = _stage_of(spans, "chat")
    children = [s for s, p in spans.items() if p == stage]
    assert sum(1 for s in children if s.startswith("MockFunctionCallingLLM.chat-")) == 2


async def test_async_tool_calls_are_selected() -> None:
    llm = tool_ensemble()
    tools = [FunctionTool.from_defaults(add), FunctionTool.from_defaults(mul)]
    response = await llm.achat_with_tools(tools, user_msg="20 times 30?")
    assert response.additional_kwargs["selected_model"] == "multiplier"
    assert (await llm.apredict_and_call(tools, user_msg="20 times 30?")).response == "600"


async def test_streamed_tool_calls_are_one_selected_chunk() -> None:
    llm = tool_ensemble()
    tools = [FunctionTool.from_defaults(add), FunctionTool.from_defaults(mul)]
    (chunk,) = list(llm.stream_chat_with_tools(tools, user_msg="20 times 30?"))
    assert chunk.additional_kwargs["selected_model"] == "multiplier"
    stream = await llm.astream_chat_with_tools(tools, user_msg="20 times 30?")
    (achunk,) = [c async for c in stream]
    calls = llm.get_tool_calls_from_response(achunk)
    assert [(c.tool_name, c.tool_kwargs) for c in calls] == [("mul", {"a": 20, "b": 30})]


def test_chat_with_tools_keyword_selects_and_checks_the_tools() -> None:
    """``chat(messages, tools=...)`` is what ``chat_with_tools`` runs (LlamaIndex's hook)."""
    llm = tool_ensemble()
    messages = [ChatMessage(role="user", content="20 times 30?")]
    response = llm.chat(messages, tools=[FunctionTool.from_defaults(mul)])
    assert response.additional_kwargs["selected_model"] == "multiplier"
    with pytest.raises(TypeError, match="LlamaIndex tools"):
        llm.chat(messages, tools=[{"type": "function", "function": {"name": "mul"}}])
    with pytest.raises(TypeError, match="list of LlamaIndex tools"):
        llm.chat(messages, tools=FunctionTool.from_defaults(mul))


def test_tool_response_from_elsewhere_is_rejected() -> None:
    llm = tool_ensemble()
    with pytest.raises(ValueError, match="selected_model"):
        llm.get_tool_calls_from_response(ChatResponse(message=ChatMessage(content="x")))


# The workflow runtime introspects pydantic models and trips pydantic's deprecation warnings.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_function_agent_with_blender_llm() -> None:
    from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult

    tools = [FunctionTool.from_defaults(add), FunctionTool.from_defaults(mul)]
    agent = FunctionAgent(tools=tools, llm=tool_ensemble())
    handler = agent.run(user_msg="What is 20 times 30?")
    called = [
        (event.tool_name, event.tool_output.content)
        async for event in handler.stream_events()
        if isinstance(event, ToolCallResult)
    ]
    assert called == [("mul", "600")]
    assert str(await handler) == "The answer is 600."


def test_llms_is_a_deprecated_alias_of_models() -> None:
    members = [FixedLLM(answer="x", name="a"), FixedLLM(answer="yy", name="b")]
    with pytest.warns(DeprecationWarning, match="models="):
        llm = BlenderLLM(llms=members, ranker=LengthRanker())
    assert llm.member_names == ["a", "b"]
    with pytest.warns(DeprecationWarning, match="use models"):
        assert llm.llms == llm.models
    assert BlenderLLM(models=members, ranker=LengthRanker()).complete("q").text == "yy"


def test_same_options_and_defaults_as_the_core() -> None:
    from blender_core.engine import DEFAULT_OPTIONS

    fields = BlenderLLM.model_fields
    for name, default in DEFAULT_OPTIONS.items():
        assert fields[name].default == default, name
    with pytest.raises(ValueError, match="min_candidates=3 can never be met"):
        BlenderLLM([FixedLLM(answer="x", name="a")], ranker=LengthRanker(), min_candidates=3)
    with pytest.raises(ValueError, match="max_retries"):
        BlenderLLM([FixedLLM(answer="x", name="a")], ranker=LengthRanker(), max_retries=-1)


def test_min_candidates_and_retries() -> None:
    class Flaky(FixedLLM):
        failures_left: int = 1

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            if self.failures_left:
                self.failures_left -= 1
                raise RuntimeError("flaky")
            return super().complete(prompt, formatted=formatted, **kwargs)

    members = [Flaky(answer="recovered", name="f"), FixedLLM(answer="ok", name="g")]
    llm = BlenderLLM(members, ranker=LengthRanker(), max_retries=1, min_candidates=2)
    response = llm.complete("q")
    assert response.text == "recovered" and response.additional_kwargs["failures"] == []
    strict = BlenderLLM(
        [Flaky(answer="x", name="f"), FixedLLM(answer="ok", name="g")],
        ranker=LengthRanker(),
        min_candidates=2,
    )
    with pytest.raises(BlendError, match="flaky"):
        strict.complete("q")


def test_multi_turn_chat_is_ranked_on_the_core_chat_policy() -> None:
    ranker = LengthRanker()
    llm = BlenderLLM(
        [FixedLLM(answer="x", name="a"), FixedLLM(answer="yy", name="b")], ranker=ranker
    )
    response = llm.chat(
        [
            ChatMessage(role="system", content="Be brief."),
            ChatMessage(role="user", content="first"),
            ChatMessage(role="assistant", content="ok"),
            ChatMessage(role="user", content="second question"),
        ]
    )
    assert response.additional_kwargs["instruction"] == "second question"
    assert (
        response.additional_kwargs["input"] == "system: Be brief.\n\nuser: first\n\nassistant: ok"
    )
    assert response.additional_kwargs["blend_mode"] == "text"
