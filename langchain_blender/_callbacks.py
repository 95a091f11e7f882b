"""LangChain run plumbing of the adapters: child callbacks and configs, usage collection.

Members, the ranker and the fuser run as children of the caller's run: their configs carry the
parent's child callbacks, a run name and a tag.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.messages import AIMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import RunnableConfig, RunnableLambda

from blender_core.blend import RankStep
from blender_core.members import Outcome
from blender_core.ranking import Ranking
from blender_core.staging import StageStep

__all__ = [
    "FUSER_TAG",
    "MEMBER_TAG",
    "RANKER_TAG",
    "STAGE_TAG",
    "ChildCallbacks",
    "UsageCollector",
    "achild_callbacks",
    "child_callbacks",
    "child_config",
    "member_parent",
    "set_rank_callbacks",
    "trace_ranking",
    "trace_stage",
    "with_handler",
]

MEMBER_TAG = "llm_blender:member"
"""Tag on every member run (filter member events out of ``astream_events`` with it)."""
FUSER_TAG = "llm_blender:fuser"
"""Tag on the fuser's run when the fuser is a LangChain model."""
RANKER_TAG = "llm_blender:ranker"
"""Tag on the ranker's run (named for the ranker, with N, strategy, top-K and passes)."""
STAGE_TAG = "llm_blender:stage"
"""Tag on each stage's run (``"stage 0"``, ...: the members a policy called together)."""


ChildCallbacks = CallbackManager | AsyncCallbackManager | list[BaseCallbackHandler] | None


M = TypeVar("M", CallbackManager, AsyncCallbackManager)


def _child(kind: type[M], run_manager: Any) -> M | None:
    if run_manager is None:
        return None
    manager = kind(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return manager


def child_callbacks(run_manager: CallbackManagerForLLMRun | None) -> CallbackManager | None:
    """A callback manager for runs nested under an LLM run (LLM run managers have no
    ``get_child``; this mirrors the chain run managers' one)."""
    return _child(CallbackManager, run_manager)


def achild_callbacks(
    run_manager: AsyncCallbackManagerForLLMRun | None,
) -> AsyncCallbackManager | None:
    """Async :func:`child_callbacks`."""
    return _child(AsyncCallbackManager, run_manager)


def child_config(callbacks: ChildCallbacks, run_name: str, tag: str) -> RunnableConfig:
    """The config a child run gets: the parent's child callbacks, a run name and a tag."""
    config: RunnableConfig = {"run_name": run_name, "tags": [tag]}
    if callbacks is not None:
        config["callbacks"] = callbacks
    return config


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


def with_handler(callbacks: ChildCallbacks, handler: BaseCallbackHandler) -> ChildCallbacks:
    """``callbacks`` with ``handler`` added (inherited by child runs)."""
    if callbacks is None:
        return [handler]
    if isinstance(callbacks, list):
        return [*callbacks, handler]
    manager = callbacks.copy()
    manager.add_handler(handler, inherit=True)
    return manager


_RANK_CALLBACKS: contextvars.ContextVar[ChildCallbacks] = contextvars.ContextVar(
    "llm_blender_rank_callbacks", default=None
)


def set_rank_callbacks(callbacks: ChildCallbacks) -> None:
    """Make ``callbacks`` the parent of the ranker's run (:func:`trace_ranking`) for the rest of
    the current context (a context made to run one call in)."""
    _RANK_CALLBACKS.set(callbacks)


def _rank_config(step: RankStep) -> RunnableConfig:
    config = child_config(_RANK_CALLBACKS.get(), step.ranker, RANKER_TAG)
    config["metadata"] = {f"llm_blender_{key}": value for key, value in step.to_dict().items()}
    return config


async def trace_ranking(step: RankStep, rank: Callable[[], Awaitable[Ranking]]) -> Ranking:
    """The core pipeline's rank tracer: the ranking runs as a chain run named for the ranker,
    a child of the callbacks set by :func:`set_rank_callbacks` (the ensemble's run); its inputs
    are the :class:`~blender_core.blend.RankStep`, its outputs the ranking."""
    box: list[Ranking] = []

    async def run(inputs: dict[str, Any]) -> dict[str, Any]:
        ranking = await rank()
        box.append(ranking)
        return {"ranking": ranking.to_dict()}

    await RunnableLambda(run, name=step.ranker).ainvoke(step.to_dict(), _rank_config(step))
    return box[0]


# The stage run's child callbacks, keyed by the ensemble's callbacks object: a member of *this*
# ensemble nests under the stage; a nested ensemble's members (another key) do not.
_STAGE_PARENT: contextvars.ContextVar[tuple[ChildCallbacks, ChildCallbacks] | None] = (
    contextvars.ContextVar("llm_blender_stage_parent", default=None)
)


def member_parent(callbacks: ChildCallbacks) -> ChildCallbacks:
    """Where a member run nests: the stage run it is called in (:func:`trace_stage`) when that
    stage belongs to the ensemble whose child callbacks are ``callbacks``, else ``callbacks``."""
    current = _STAGE_PARENT.get()
    if current is not None and current[0] is callbacks:
        return current[1]
    return callbacks


def _stage_outputs(outcomes: list[Outcome[Any]]) -> dict[str, Any]:
    return {
        "answered": [o.name for o in outcomes if o.failure is None],
        "failed": [o.failure.to_dict() for o in outcomes if o.failure is not None],
    }


async def trace_stage(
    step: StageStep, run: Callable[[], Awaitable[list[Outcome[Any]]]]
) -> list[Outcome[Any]]:
    """The core engine's stage tracer: each stage of member calls runs as a chain run named
    ``"stage <index>"``, a child of the callbacks set by :func:`set_rank_callbacks` (the
    ensemble's run); its inputs are the :class:`~blender_core.staging.StageStep`, its outputs the
    members that answered and those that failed, and the members' runs nest under it."""
    parent = _RANK_CALLBACKS.get()
    box: list[list[Outcome[Any]]] = []

    async def call(inputs: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        token = _STAGE_PARENT.set((parent, cast(ChildCallbacks, config.get("callbacks"))))
        try:
            outcomes = await run()
        finally:
            _STAGE_PARENT.reset(token)
        box.append(outcomes)
        return _stage_outputs(outcomes)

    config = child_config(parent, f"stage {step.index}", STAGE_TAG)
    config["metadata"] = {f"llm_blender_{key}": value for key, value in step.to_dict().items()}
    await RunnableLambda(call, name=config["run_name"]).ainvoke(step.to_dict(), config)
    return box[0]
