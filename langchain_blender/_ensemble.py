"""The machinery shared by the ensembles and the middleware.

Members are called concurrently with LangChain configs (so their runs nest under the caller's
run), their outputs become candidates, and the core pipeline ranks and fuses them. Tool-call
answers are ranked over a text rendering of the calls and the best is selected, never fused.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ContextThreadPoolExecutor

from blender_core.blend import Blender as CoreBlender
from blender_core.blend import BlendError, BlendResult, ModelFailure
from blender_core.loading import load_fuser, load_ranker
from blender_core.ranking import Ranker, Ranking
from langchain_blender._adapters import (
    RunnableGenerator,
    ainvoke_in_context,
    has_tool_calls,
    invoke_in_context,
    message_text,
    render_tool_calls,
    runnable_name,
    use_call_config,
)

__all__ = [
    "MEMBER_TAG",
    "Engine",
    "MemberOutcome",
    "UsageCollector",
    "achild_callbacks",
    "ainvoke_members",
    "child_callbacks",
    "child_config",
    "invoke_members",
    "member_usage",
    "name_members",
    "run_sync",
]

MEMBER_TAG = "llm_blender:member"
"""Tag on every member run (filter member events out of ``astream_events`` with it)."""
FUSER_TAG = "llm_blender:fuser"
"""Tag on the fuser's run when the fuser is a LangChain model."""

T = TypeVar("T")

ChildCallbacks = CallbackManager | AsyncCallbackManager | list[BaseCallbackHandler] | None


def name_members(models: Any) -> dict[str, Runnable[Any, Any]]:
    """Members as a name -> runnable dict: mapping keys, or derived (unique) names for a list."""
    if isinstance(models, Mapping):
        items = list(models.items())
    elif isinstance(models, str) or not isinstance(models, Sequence):
        raise TypeError(
            "models must be a list of chat models/runnables or a mapping name -> model, "
            f"got {type(models).__name__}"
        )
    else:
        items = []
        seen: dict[str, int] = {}
        for model in models:
            base = runnable_name(model)
            seen[base] = seen.get(base, 0) + 1
            items.append((base if seen[base] == 1 else f"{base}#{seen[base]}", model))
    if not items:
        raise ValueError("an ensemble needs at least one model")
    named: dict[str, Runnable[Any, Any]] = {}
    for position, (name, model) in enumerate(items):
        if not isinstance(name, str) or not name:
            raise ValueError(f"model {position} has no name (a non-empty string)")
        if not isinstance(model, Runnable):
            raise TypeError(
                f"model {name!r} is a {type(model).__name__}, not a LangChain Runnable "
                "(a chat model, an LLM or a runnable returning a message or a string)"
            )
        if name in named:
            raise ValueError(f"duplicate model name {name!r}")
        named[name] = model
    return named


def child_callbacks(run_manager: CallbackManagerForLLMRun | None) -> CallbackManager | None:
    """A callback manager for runs nested under an LLM run (LLM run managers have no
    ``get_child``; this mirrors the chain run managers' one)."""
    if run_manager is None:
        return None
    manager = CallbackManager(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return manager


def achild_callbacks(
    run_manager: AsyncCallbackManagerForLLMRun | None,
) -> AsyncCallbackManager | None:
    """Async :func:`child_callbacks`."""
    if run_manager is None:
        return None
    manager = AsyncCallbackManager(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return manager


def child_config(callbacks: ChildCallbacks, run_name: str, tag: str) -> RunnableConfig:
    """The config a child run gets: the parent's child callbacks, a run name and a tag."""
    config: RunnableConfig = {"run_name": run_name, "tags": [tag]}
    if callbacks is not None:
        config["callbacks"] = callbacks
    return config


def run_sync(fn: Callable[[], T]) -> T:
    """Run blocking ``fn``; in a thread with a running event loop, run it in a worker thread.

    The core pipeline's sync API refuses to run inside an event loop (it starts its own), and a
    sync ``invoke`` from a notebook cell runs in the loop's thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    with ContextThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn).result()


@dataclass
class MemberOutcome:
    """One member's answer (``output``: a message or a string) or its failure, and latency."""

    name: str
    output: Any = None
    failure: ModelFailure | None = None
    latency: float = 0.0


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_output(name: str, output: Any) -> Any:
    if isinstance(output, str | BaseMessage):
        return output
    raise TypeError(f"{name} returned {type(output).__name__}, not a message or a string")


Prepare = Callable[[str, Runnable[Any, Any]], tuple[Runnable[Any, Any], dict[str, Any]]]
"""Turns a member into the runnable to call and its call kwargs (binds tools, stop, ...)."""


def _call_member(
    name: str,
    member: Runnable[Any, Any],
    input: Any,
    config: RunnableConfig,
    prepare: Prepare,
    max_retries: int,
) -> MemberOutcome:
    start = time.perf_counter()
    try:
        runnable, kwargs = prepare(name, member)
        for attempt in range(max_retries + 1):
            try:
                output = _check_output(name, invoke_in_context(runnable, input, config, **kwargs))
                break
            except Exception:
                if attempt == max_retries:
                    raise
    except Exception as exc:
        failure = ModelFailure(name, "error", _describe(exc), exc)
        return MemberOutcome(name, failure=failure, latency=time.perf_counter() - start)
    return MemberOutcome(name, output=output, latency=time.perf_counter() - start)


def invoke_members(
    members: Mapping[str, Runnable[Any, Any]],
    input: Any,
    *,
    callbacks: ChildCallbacks,
    prepare: Prepare,
    timeout: float | None,
    max_retries: int = 0,
) -> list[MemberOutcome]:
    """Call every member at once in worker threads; each gets ``timeout`` seconds.

    A member still running at the deadline is a ``"timeout"`` failure; its thread cannot be
    stopped and its late answer is dropped.
    """
    pool = ContextThreadPoolExecutor(max_workers=len(members), thread_name_prefix="blender")
    start = time.perf_counter()
    try:
        futures = {
            name: pool.submit(
                _call_member,
                name,
                member,
                input,
                child_config(callbacks, name, MEMBER_TAG),
                prepare,
                max_retries,
            )
            for name, member in members.items()
        }
        concurrent.futures.wait(futures.values(), timeout=timeout)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    outcomes = []
    for name, future in futures.items():
        if future.done():
            outcomes.append(future.result())
        else:
            message = f"no answer within {timeout:g} s"
            failure = ModelFailure(name, "timeout", message, TimeoutError(message))
            outcomes.append(
                MemberOutcome(name, failure=failure, latency=time.perf_counter() - start)
            )
    return outcomes


async def _acall_member(
    name: str,
    member: Runnable[Any, Any],
    input: Any,
    config: RunnableConfig,
    prepare: Prepare,
    timeout: float | None,
    max_retries: int,
) -> MemberOutcome:
    start = time.perf_counter()

    async def call() -> Any:
        runnable, kwargs = prepare(name, member)
        for attempt in range(max_retries + 1):
            try:
                output = await ainvoke_in_context(runnable, input, config, **kwargs)
                return _check_output(name, output)
            except Exception:
                if attempt == max_retries:
                    raise
        raise AssertionError("unreachable")

    task = asyncio.ensure_future(call())
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    latency = time.perf_counter() - start
    if not done:
        task.cancel()
        message = f"no answer within {timeout:g} s"
        return MemberOutcome(
            name,
            failure=ModelFailure(name, "timeout", message, TimeoutError(message)),
            latency=latency,
        )
    exc = task.exception()
    if exc is not None:
        return MemberOutcome(
            name, failure=ModelFailure(name, "error", _describe(exc), exc), latency=latency
        )
    return MemberOutcome(name, output=task.result(), latency=latency)


async def ainvoke_members(
    members: Mapping[str, Runnable[Any, Any]],
    input: Any,
    *,
    callbacks: ChildCallbacks,
    prepare: Prepare,
    timeout: float | None,
    max_retries: int = 0,
) -> list[MemberOutcome]:
    """Async :func:`invoke_members`: every member's native ``ainvoke``, concurrently."""
    return list(
        await asyncio.gather(
            *(
                _acall_member(
                    name,
                    member,
                    input,
                    child_config(callbacks, name, MEMBER_TAG),
                    prepare,
                    timeout,
                    max_retries,
                )
                for name, member in members.items()
            )
        )
    )


class UsageCollector(BaseCallbackHandler):
    """Sums the ``usage_metadata`` of every chat-model run it sees (the fuser's, for example)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.usage: UsageMetadata | None = None

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                if isinstance(generation, ChatGeneration) and isinstance(
                    generation.message, AIMessage
                ):
                    usage = generation.message.usage_metadata
                    if usage:
                        with self._lock:
                            self.usage = add_usage(self.usage, usage)


def _with_handler(callbacks: ChildCallbacks, handler: BaseCallbackHandler) -> ChildCallbacks:
    if callbacks is None:
        return [handler]
    if isinstance(callbacks, list):
        return [*callbacks, handler]
    manager = callbacks.copy()
    manager.add_handler(handler, inherit=True)
    return manager


@dataclass
class Blended:
    """The ensemble's answer: the message to return and what the caller should report."""

    message: AIMessage
    metadata: dict[str, Any]
    usage: UsageMetadata | None = None
    result: BlendResult | None = field(default=None, repr=False)


def _failure_dicts(failures: Sequence[ModelFailure]) -> list[dict[str, str]]:
    return [{"model": f.model, "kind": f.kind, "message": f.message} for f in failures]


def _ranking_dict(
    ranking: Ranking, texts: Sequence[str], models: Sequence[Sequence[str]]
) -> dict[str, Any]:
    out = ranking.to_dict()
    out["texts"] = list(texts)
    out["models"] = [list(m) for m in models]
    return out


class Engine:
    """Ranker, fuser and core pipeline of one ensemble, loaded once on first use (thread-safe).

    Args:
        member_names: The members' names (the core pipeline's generator names).
        ranker: A Ranker or a spec for ``load_ranker``.
        fuser: A Fuser, a core Generator, a LangChain runnable (an LLM fuser over it), or a spec
            for ``load_fuser``.
        top_k, timeout, min_candidates, strategy: As for the core ``Blender``.
    """

    def __init__(
        self,
        member_names: Sequence[str],
        *,
        ranker: Any,
        fuser: Any,
        top_k: int,
        timeout: float | None,
        min_candidates: int,
        strategy: str | None,
    ) -> None:
        self.member_names = list(member_names)
        self._ranker_spec = ranker
        self._fuser_spec = fuser
        self.top_k = top_k
        self.timeout = timeout
        self.min_candidates = min_candidates
        self.strategy = strategy
        self._lock = threading.Lock()
        self._core: CoreBlender | None = None

    @property
    def core(self) -> CoreBlender:
        """The core pipeline (loads the ranker and the fuser on first access)."""
        if self._core is None:
            with self._lock:
                if self._core is None:
                    self._core = self._build()
        return self._core

    @property
    def ranker(self) -> Ranker:
        return self.core.ranker

    def _build(self) -> CoreBlender:
        fuser = self._fuser_spec
        if isinstance(fuser, Runnable):
            fuser = RunnableGenerator(fuser, name="fuser")
        # Members are called here (for tracing), so the core pipeline only ranks and fuses.
        return CoreBlender(
            ranker=load_ranker(self._ranker_spec),
            fuser=load_fuser(fuser),
            top_k=self.top_k,
            timeout=self.timeout,
            min_candidates=self.min_candidates,
            strategy=self.strategy,
        )

    # -- tool calls: rank, select the best --------------------------------------------------

    def _tool_inputs(
        self, outcomes: Sequence[MemberOutcome]
    ) -> tuple[list[MemberOutcome], list[str]] | None:
        calls = [o for o in outcomes if o.failure is None and has_tool_calls(o.output)]
        if not calls:
            return None
        return calls, [render_tool_calls(o.output) for o in calls]

    def _rank_sync(self, instruction: str, texts: list[str]) -> Ranking:
        if len(texts) == 1:
            return Ranking.from_scores([0.0])
        if self.strategy is not None:
            return self.ranker.rank(instruction, texts, strategy=self.strategy)  # type: ignore[call-arg]
        return self.ranker.rank(instruction, texts)

    async def _rank_async(self, instruction: str, texts: list[str]) -> Ranking:
        if len(texts) == 1:
            return Ranking.from_scores([0.0])
        if self.strategy is not None:
            return await asyncio.to_thread(self._rank_sync, instruction, texts)
        return await self.ranker.arank(instruction, texts)

    def _tool_result(
        self,
        outcomes: Sequence[MemberOutcome],
        calls: Sequence[MemberOutcome],
        texts: Sequence[str],
        ranking: Ranking,
        rank_latency: float,
    ) -> Blended:
        best = calls[ranking.best]
        chosen = best.output
        assert isinstance(chosen, AIMessage)
        message = AIMessage(
            content=chosen.content,
            tool_calls=chosen.tool_calls,
            invalid_tool_calls=chosen.invalid_tool_calls,
            additional_kwargs=dict(chosen.additional_kwargs),
        )
        failures = [o.failure for o in outcomes if o.failure is not None]
        metadata = {
            "blend_mode": "tool_calls",
            "candidates": self._candidate_texts(outcomes),
            "ranking": _ranking_dict(ranking, texts, [[o.name] for o in calls]),
            "top_k": [texts[ranking.best]],
            "best_models": [best.name],
            "failures": _failure_dicts(failures),
            "latencies": {o.name: o.latency for o in outcomes},
            "rank_latency": rank_latency,
            "fuse_latency": 0.0,
        }
        return Blended(message=message, metadata=metadata)

    @staticmethod
    def _candidate_texts(outcomes: Sequence[MemberOutcome]) -> dict[str, str]:
        out = {}
        for o in outcomes:
            if o.failure is None:
                out[o.name] = (
                    render_tool_calls(o.output)
                    if has_tool_calls(o.output)
                    else message_text(o.output)
                )
        return out

    def _check_enough(self, outcomes: Sequence[MemberOutcome]) -> None:
        answered = [o for o in outcomes if o.failure is None]
        if len(answered) < self.min_candidates:
            failures = [o.failure for o in outcomes if o.failure is not None]
            raise BlendError(
                f"only {len(answered)} of {len(outcomes)} model(s) answered, "
                f"min_candidates={self.min_candidates}; {len(failures)} failed: "
                + "; ".join(str(f) for f in failures),
                failures,
            )

    # -- text answers: the core pipeline ----------------------------------------------------

    @staticmethod
    def _text_inputs(
        outcomes: Sequence[MemberOutcome],
    ) -> tuple[dict[str, str], list[ModelFailure], dict[str, float]]:
        candidates: dict[str, str] = {}
        failures: list[ModelFailure] = []
        latencies: dict[str, float] = {}
        for o in outcomes:
            latencies[o.name] = o.latency
            if o.failure is not None:
                failures.append(o.failure)
            else:
                candidates[o.name] = message_text(o.output)
        return candidates, failures, latencies

    @staticmethod
    def _text_result(result: BlendResult, usage: UsageMetadata | None) -> Blended:
        metadata = {
            "blend_mode": "text",
            "candidates": dict(result.candidates),
            "ranking": _ranking_dict(result.ranking, result.texts, result.models_by_text),
            "top_k": list(result.top_k),
            "best_models": list(result.best_models),
            "failures": _failure_dicts(result.failures),
            "latencies": dict(result.latencies),
            "rank_latency": result.rank_latency,
            "fuse_latency": result.fuse_latency,
        }
        return Blended(
            message=AIMessage(content=result.text), metadata=metadata, usage=usage, result=result
        )

    def _fuse_config(self, callbacks: ChildCallbacks) -> tuple[RunnableConfig, UsageCollector]:
        collector = UsageCollector()
        return child_config(_with_handler(callbacks, collector), "fuser", FUSER_TAG), collector

    def blend(
        self,
        instruction: str,
        outcomes: Sequence[MemberOutcome],
        *,
        callbacks: ChildCallbacks = None,
        input: str = "",
    ) -> Blended:
        """Rank and fuse (or, for tool calls, select) the members' answers."""
        self._check_enough(outcomes)
        tools = self._tool_inputs(outcomes)
        if tools is not None:
            calls, texts = tools
            start = time.perf_counter()
            ranking = run_sync(lambda: self._rank_sync(instruction, texts))
            return self._tool_result(outcomes, calls, texts, ranking, time.perf_counter() - start)
        candidates, failures, latencies = self._text_inputs(outcomes)
        config, collector = self._fuse_config(callbacks)

        def blend_candidates() -> BlendResult:
            with use_call_config(config):
                return self.core.blend_candidates(
                    instruction, candidates, input=input, failures=failures, latencies=latencies
                )

        result = run_sync(blend_candidates)
        return self._text_result(result, collector.usage)

    async def ablend(
        self,
        instruction: str,
        outcomes: Sequence[MemberOutcome],
        *,
        callbacks: ChildCallbacks = None,
        input: str = "",
    ) -> Blended:
        """Async :meth:`blend`."""
        self._check_enough(outcomes)
        tools = self._tool_inputs(outcomes)
        if tools is not None:
            calls, texts = tools
            start = time.perf_counter()
            ranking = await self._rank_async(instruction, texts)
            return self._tool_result(outcomes, calls, texts, ranking, time.perf_counter() - start)
        candidates, failures, latencies = self._text_inputs(outcomes)
        config, collector = self._fuse_config(callbacks)
        core = await _in_thread_if_unloaded(self)
        with use_call_config(config):
            result = await core.ablend_candidates(
                instruction, candidates, input=input, failures=failures, latencies=latencies
            )
        return self._text_result(result, collector.usage)


async def _in_thread_if_unloaded(engine: Engine) -> CoreBlender:
    """The engine's core pipeline; a first load (model weights) runs off the event loop."""
    if engine._core is not None:
        return engine._core
    return await asyncio.to_thread(lambda: engine.core)


def member_usage(outcomes: Sequence[MemberOutcome]) -> UsageMetadata | None:
    """The summed ``usage_metadata`` of the members' AI messages (``None`` when none reported)."""
    usage: UsageMetadata | None = None
    for o in outcomes:
        if o.failure is None and isinstance(o.output, AIMessage) and o.output.usage_metadata:
            usage = add_usage(usage, o.output.usage_metadata)
    return usage
