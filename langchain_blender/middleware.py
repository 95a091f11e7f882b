"""Agent middleware for ``langchain.agents.create_agent``: best-of-N model calls and tool filtering.

* :class:`BestOfModelsMiddleware` asks several models for the agent's next step at once and keeps
  the proposal the ranker prefers (tool calls included).
* :class:`RankedToolFilterMiddleware` keeps the ``max_tools`` tools a ranker finds most relevant to
  the user's request before each model call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ContextT,
    ModelRequest,
    ModelResponse,
    ResponseT,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables.config import ContextThreadPoolExecutor

from blender_core.lazy import Lazy
from blender_core.loading import load_ranker
from blender_core.members import arun_members, run_members
from blender_core.ranking import Ranker, Ranking, rank_with
from langchain_blender._adapters import (
    instruction_from_messages,
    prompt_from_messages,
    runnable_name,
)
from langchain_blender._engine import Engine
from langchain_blender._members import MemberOutcome, name_members
from langchain_blender._settings import DEFAULT_RANKER

__all__ = ["BestOfModelsMiddleware", "RankedToolFilterMiddleware"]

AGENT_MODEL = "agent"
"""The name of the agent's own model among the proposals."""


def _ai_message(response: Any) -> AIMessage:
    if isinstance(response, AIMessage):
        return response
    for message in getattr(response, "result", []):
        if isinstance(message, AIMessage):
            return message
    raise TypeError(f"the model call returned no AI message ({type(response).__name__})")


class BestOfModelsMiddleware(AgentMiddleware[AgentState[ResponseT], ContextT, ResponseT]):
    """Best-of-N for agents: every model proposes the next step, the ranker picks one.

    On each model call the agent's own model (unless ``include_agent_model=False``) and each of
    ``models`` get the same request (messages, tools, structured-output settings) concurrently,
    through the rest of the middleware stack. When any proposal calls tools, the tool-calling
    proposals are ranked over a text rendering of their calls; otherwise the text answers are
    ranked. The best proposal is returned unchanged except for
    ``response_metadata["best_of"]`` (``chosen``, ``candidates``, ``ranking``, ``failures``,
    ``latencies``). A model that raises or times out is listed in ``failures``; when fewer than
    ``min_candidates`` propose, ``BlendError`` names each failure.

    Args:
        models: Chat models (or ``init_chat_model`` ids), a list or a mapping name -> model.
        ranker: A ``Ranker`` or a spec (PairRanker hub id/path, ``"consensus"``, ``"random"``).
        include_agent_model: Whether the agent's own model proposes too (named ``"agent"``).
        timeout: Seconds each model may take.
        min_candidates: Fewest proposals needed.
        strategy: PairRanker aggregation, or ``None`` for the ranker's default.

    Example:
        .. code-block:: python

            from langchain.agents import create_agent
            from langchain_blender import BestOfModelsMiddleware

            agent = create_agent(
                model="openai:gpt-4o-mini",
                tools=[search, calculator],
                middleware=[BestOfModelsMiddleware(
                    ["anthropic:claude-haiku-4-5", "openai:gpt-4.1-mini"],
                    ranker="llm-blender/PairRM",
                )],
            )
    """

    def __init__(
        self,
        models: Sequence[BaseChatModel | str] | Mapping[str, BaseChatModel | str],
        *,
        ranker: Any = DEFAULT_RANKER,
        include_agent_model: bool = True,
        timeout: float | None = 60.0,
        min_candidates: int = 1,
        strategy: str | None = None,
    ) -> None:
        super().__init__()
        self.models: dict[str, BaseChatModel] = name_members(models)  # type: ignore[assignment]
        if include_agent_model and AGENT_MODEL in self.models:
            raise ValueError(f"{AGENT_MODEL!r} names the agent's own model: rename that model")
        self.include_agent_model = include_agent_model
        self.timeout = timeout
        names = ([AGENT_MODEL] if include_agent_model else []) + list(self.models)
        if min_candidates > len(names):
            raise ValueError(f"min_candidates={min_candidates} but only {len(names)} models")
        self._engine = Engine(
            ranker=ranker,
            fuser=None,
            top_k=1,
            timeout=timeout,
            min_candidates=min_candidates,
            strategy=strategy,
        )

    def _requests(self, request: ModelRequest[ContextT]) -> dict[str, ModelRequest[ContextT]]:
        requests = {AGENT_MODEL: request} if self.include_agent_model else {}
        for name, model in self.models.items():
            requests[name] = request.override(model=model)
        return requests

    def _choose(
        self,
        request: ModelRequest[ContextT],
        outcomes: list[MemberOutcome[Any]],
        responses: dict[str, Any],
        blend: Callable[[tuple[str, str], list[MemberOutcome[Any]]], Any],
    ) -> Any:
        blended = blend(prompt_from_messages(request.messages), outcomes)
        chosen = blended.metadata["best_models"][0]
        response = responses[chosen]
        message = _ai_message(response)
        models = {name: runnable_name(model) for name, model in self.models.items()}
        if self.include_agent_model:
            models = {AGENT_MODEL: runnable_name(request.model), **models}
        info = {
            "chosen": chosen,
            "models": models,
            **{k: blended.metadata[k] for k in ("candidates", "ranking", "failures", "latencies")},
        }
        annotated = message.model_copy(
            update={"response_metadata": {**message.response_metadata, "best_of": info}}
        )
        if isinstance(response, AIMessage):
            return annotated
        result = [annotated if m is message else m for m in response.result]
        return ModelResponse(result=result, structured_response=response.structured_response)

    def wrap_model_call(
        self,
        request: ModelRequest[ContextT],
        handler: Callable[[ModelRequest[ContextT]], ModelResponse[ResponseT]],
    ) -> ModelResponse[ResponseT] | AIMessage:
        """Run every model's proposal concurrently (threads) and return the best-ranked one."""
        calls = {name: partial(handler, req) for name, req in self._requests(request).items()}
        outcomes, responses = _proposals(
            run_members(
                calls, timeout=self.timeout, check=_checked, executor=ContextThreadPoolExecutor
            )
        )
        return self._choose(
            request,
            outcomes,
            responses,
            lambda prompt, o: self._engine.blend(prompt[0], o, input=prompt[1]),
        )

    async def awrap_model_call(
        self,
        request: ModelRequest[ContextT],
        handler: Callable[[ModelRequest[ContextT]], Awaitable[ModelResponse[ResponseT]]],
    ) -> ModelResponse[ResponseT] | AIMessage:
        """Async :meth:`wrap_model_call`: the proposals run concurrently on the event loop (a
        timed-out proposal is cancelled and awaited)."""
        calls = {name: partial(handler, req) for name, req in self._requests(request).items()}
        outcomes, responses = _proposals(
            await arun_members(calls, timeout=self.timeout, check=_checked)
        )
        instruction, input = prompt_from_messages(request.messages)
        blended = await self._engine.ablend(instruction, outcomes, input=input)
        return self._choose(request, outcomes, responses, lambda i, o: blended)


def _checked(response: Any) -> Any:
    _ai_message(response)  # a TypeError makes the proposal a failure
    return response


def _proposals(
    outcomes: list[MemberOutcome[Any]],
) -> tuple[list[MemberOutcome[Any]], dict[str, Any]]:
    """The engine's outcomes (the AI message of each proposal) and the full responses."""
    responses = {o.name: o.output for o in outcomes if o.failure is None}
    return [
        replace(o, output=_ai_message(o.output)) if o.failure is None else o for o in outcomes
    ], responses


class RankedToolFilterMiddleware(AgentMiddleware[AgentState[ResponseT], ContextT, ResponseT]):
    """Keeps the ``max_tools`` tools most relevant to the user's request, ranked by a ranker.

    Before each model call, every tool (``"name: description"``) is ranked as a candidate for the
    last user message; the best ``max_tools`` (plus ``always_include``) are passed to the model.
    Provider tool dicts are always kept. A cheaper alternative to ``LLMToolSelectorMiddleware``
    (no LLM call); how well it selects depends on the ranker.

    Args:
        max_tools: How many tools to keep (``always_include`` not counted).
        ranker: A ``Ranker`` or a spec (PairRanker hub id/path, ``"consensus"``, ``"random"``).
        always_include: Names of tools always kept.
        strategy: PairRanker aggregation, or ``None`` for the ranker's default.

    Example:
        .. code-block:: python

            agent = create_agent(
                model, tools=many_tools,
                middleware=[RankedToolFilterMiddleware(max_tools=3, ranker="llm-blender/PairRM")],
            )
    """

    def __init__(
        self,
        *,
        max_tools: int,
        ranker: Any = DEFAULT_RANKER,
        always_include: Sequence[str] = (),
        strategy: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(max_tools, bool) or not isinstance(max_tools, int) or max_tools < 1:
            raise ValueError(f"max_tools must be an int >= 1, got {max_tools!r}")
        self.max_tools = max_tools
        self.always_include = list(always_include)
        self.strategy = strategy
        self._ranker: Lazy[Ranker] = Lazy(partial(load_ranker, ranker))

    def _get_ranker(self) -> Ranker:
        return self._ranker.get()

    def _selection(
        self, request: ModelRequest[ContextT]
    ) -> tuple[str, list[Any], list[str]] | None:
        tools = [t for t in request.tools if not isinstance(t, dict)]
        names = {t.name for t in tools}
        missing = [n for n in self.always_include if n not in names]
        if missing:
            raise ValueError(
                f"Tools in always_include not found in request: {missing}. "
                f"Available tools: {sorted(names)}"
            )
        candidates = [t for t in tools if t.name not in self.always_include]
        if len(candidates) <= self.max_tools:
            return None
        query = instruction_from_messages(request.messages)
        return query, candidates, [f"{t.name}: {t.description}" for t in candidates]

    def _filtered(
        self, request: ModelRequest[ContextT], candidates: list[Any], ranking: Ranking
    ) -> ModelRequest[ContextT]:
        keep = {candidates[i].name for i in ranking.order[: self.max_tools]}
        keep.update(self.always_include)
        tools = [t for t in request.tools if isinstance(t, dict) or t.name in keep]
        return request.override(tools=tools)

    def _rank(self, query: str, texts: list[str]) -> Ranking:
        return rank_with(self._get_ranker(), query, texts, strategy=self.strategy)

    def wrap_model_call(
        self,
        request: ModelRequest[ContextT],
        handler: Callable[[ModelRequest[ContextT]], ModelResponse[ResponseT]],
    ) -> ModelResponse[ResponseT] | AIMessage:
        """Filter the request's tools, then call the model."""
        selection = self._selection(request)
        if selection is None:
            return handler(request)
        query, candidates, texts = selection
        return handler(self._filtered(request, candidates, self._rank(query, texts)))

    async def awrap_model_call(
        self,
        request: ModelRequest[ContextT],
        handler: Callable[[ModelRequest[ContextT]], Awaitable[ModelResponse[ResponseT]]],
    ) -> ModelResponse[ResponseT] | AIMessage:
        """Async :meth:`wrap_model_call` (ranking runs in a worker thread)."""
        selection = self._selection(request)
        if selection is None:
            return await handler(request)
        query, candidates, texts = selection
        ranking = await asyncio.to_thread(self._rank, query, texts)
        return await handler(self._filtered(request, candidates, ranking))
