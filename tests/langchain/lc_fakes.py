"""Scripted fakes for the LangChain tests: a tool-calling chat model, rankers and a fuser."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from suite_helpers import LengthRanker

from blender_core.fusion.base import BaseFuser
from blender_core.ranking import Ranking


class ShortestRanker(LengthRanker):
    """Shorter answers rank higher."""

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        return [
            Ranking.from_scores([-float(len(c)) for c in candidates], strategy="shortest")
            for candidates in candidate_lists
        ]


class JoinFuser(BaseFuser):
    """Fuses by joining the candidates (best first) with ' + '."""

    def fuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kwargs: Any
    ) -> str:
        return " + ".join(candidates)


def _ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"-?\d+", text)]


def _fake_args(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """Arguments for a tool from its JSON schema, with integers taken from the prompt."""
    numbers = iter(_ints(text))
    args: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type")
        if kind is None and "anyOf" in prop:
            kind = next((p.get("type") for p in prop["anyOf"] if p.get("type") != "null"), None)
        if kind == "integer":
            args[name] = next(numbers, 1)
        elif kind == "number":
            args[name] = float(next(numbers, 1))
        elif kind == "boolean":
            args[name] = True
        elif kind == "array":
            args[name] = []
        elif kind == "object":
            args[name] = {}
        else:
            args[name] = f"{name.replace('_', ' ')} about {text[:40]}".strip()
    return args


class ScriptedChatModel(BaseChatModel):
    """A deterministic chat model that answers, calls tools when asked, and reports usage.

    * The last message is a tool result: answers with the result.
    * Tools are bound and the tool choice forces a tool, a tool's name is in the request, or the
      request asks to use a tool: calls that tool with arguments built from its schema (integers
      from the request).
    * Otherwise: ``"<prefix> <request>"`` (or ``reply`` when set).
    """

    model_name: str = "scripted"
    prefix: str = "answer:"
    reply: str | None = None
    fail: str | None = None
    delay: float = 0.0
    use_tools: bool = True
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "prefix": self.prefix, "reply": self.reply}

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _answer(self, messages: list[BaseMessage], **kwargs: Any) -> AIMessage:
        self.calls += 1
        if self.fail:
            raise RuntimeError(self.fail)
        last = messages[-1]
        human = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), last)
        text = human.text
        tools = (kwargs.get("tools") or []) if self.use_tools else []
        choice = kwargs.get("tool_choice")
        if isinstance(last, ToolMessage):
            content = f"{self.prefix} the tool said {last.text}"
            tool_call = None
        else:
            tool_call = self._pick_tool(tools, choice, text)
            content = "" if tool_call else (self.reply or f"{self.prefix} {text}")
        n_in = sum(len(m.text.split()) for m in messages)
        n_out = max(1, len(content.split()))
        usage = {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}
        metadata = {"model_name": self.model_name}
        if tool_call is not None:
            return AIMessage(
                content="",
                tool_calls=[tool_call],
                usage_metadata=usage,
                response_metadata=metadata,
            )
        return AIMessage(content=content, usage_metadata=usage, response_metadata=metadata)

    def _pick_tool(
        self, tools: list[dict[str, Any]], choice: Any, text: str
    ) -> dict[str, Any] | None:
        if not tools or choice == "none":
            return None
        by_name = {t["function"]["name"]: t["function"] for t in tools}
        chosen = None
        if isinstance(choice, dict):
            chosen = by_name.get(choice.get("function", {}).get("name") or choice.get("name"))
        elif isinstance(choice, str) and choice in by_name:
            chosen = by_name[choice]
        if chosen is None:
            named = [f for n, f in by_name.items() if n in text]
            if named:
                chosen = max(named, key=lambda f: len(f["name"]))
        if chosen is None and (choice in ("any", "required", True) or "tool" in text.lower()):
            chosen = next(iter(by_name.values()))
        if chosen is None and len(by_name) == 1 and "weather" in text.lower():
            chosen = next(iter(by_name.values()))
        if chosen is None:
            return None
        return {
            "name": chosen["name"],
            "args": _fake_args(chosen.get("parameters") or {}, text),
            "id": f"call_{self.model_name}_{self.calls}",
            "type": "tool_call",
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.delay:
            time.sleep(self.delay)
        return ChatResult(generations=[ChatGeneration(message=self._answer(messages, **kwargs))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        return ChatResult(generations=[ChatGeneration(message=self._answer(messages, **kwargs))])


class RunRecorder(BaseCallbackHandler):
    """Records every model and chain run start (``kind``: chat, llm or chain; ``name``,
    ``run_id``, ``parent``, ``inputs``, ``tags``, ``metadata``) and every chain's outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[dict[str, Any]] = []
        self.outputs: dict[UUID, Any] = {}

    def _start(self, kind: str, serialized: Any, inputs: Any, kwargs: dict[str, Any]) -> None:
        self.starts.append(
            {
                "kind": kind,
                "name": kwargs.get("name") or (serialized or {}).get("name", ""),
                "run_id": kwargs["run_id"],
                "parent": kwargs.get("parent_run_id"),
                "inputs": inputs,
                "tags": kwargs.get("tags") or [],
                "metadata": kwargs.get("metadata") or {},
            }
        )

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self._start("chat", serialized, messages, kwargs)

    def on_llm_start(self, serialized: Any, prompts: Any, **kwargs: Any) -> None:
        self._start("llm", serialized, prompts, kwargs)

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self._start("chain", serialized, inputs, kwargs)

    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        self.outputs[kwargs["run_id"]] = outputs

    def named(self, name: str) -> list[dict[str, Any]]:
        """The starts of the runs named ``name``, in order."""
        return [s for s in self.starts if s["name"] == name]

    def run_id_of(self, name: str) -> list[UUID]:
        return [s["run_id"] for s in self.named(name)]

    def children_of(self, run_id: UUID) -> list[str]:
        """The names of ``run_id``'s child runs, sorted."""
        return sorted(s["name"] for s in self.starts if s["parent"] == run_id)

    def child_id(self, run_id: UUID, name: str) -> UUID:
        """The run id of ``run_id``'s one child named ``name``."""
        (child,) = [s["run_id"] for s in self.named(name) if s["parent"] == run_id]
        return child

    def stage_members(self, run_id: UUID, stage: int = 0) -> list[str]:
        """The members called in ``run_id``'s stage ``stage`` (the runs nested in that stage)."""
        return self.children_of(self.child_id(run_id, f"stage {stage}"))


async def call_as(runnable: Any, mode: str, config: Any) -> Any:
    """Call ``runnable`` on ``"hi"`` (batches: ``["hi", "yo"]``) the way ``mode`` names:
    ``invoke``, ``ainvoke``, ``batch`` or ``abatch``."""
    if mode == "invoke":
        return runnable.invoke("hi", config)
    if mode == "ainvoke":
        return await runnable.ainvoke("hi", config)
    if mode == "batch":
        return runnable.batch(["hi", "yo"], config)
    if mode == "abatch":
        return await runnable.abatch(["hi", "yo"], config)
    raise ValueError(f"unknown mode {mode!r}")
