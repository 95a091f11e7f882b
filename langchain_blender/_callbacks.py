"""LangChain run plumbing of the adapters: child callbacks and configs, usage collection.

Members, the ranker and the fuser run as children of the caller's run: their configs carry the
parent's child callbacks, a run name and a tag.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

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
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ContextThreadPoolExecutor

__all__ = [
    "FUSER_TAG",
    "MEMBER_TAG",
    "ChildCallbacks",
    "UsageCollector",
    "achild_callbacks",
    "child_callbacks",
    "child_config",
    "run_sync",
    "with_handler",
]

MEMBER_TAG = "llm_blender:member"
"""Tag on every member run (filter member events out of ``astream_events`` with it)."""
FUSER_TAG = "llm_blender:fuser"
"""Tag on the fuser's run when the fuser is a LangChain model."""

T = TypeVar("T")

ChildCallbacks = CallbackManager | AsyncCallbackManager | list[BaseCallbackHandler] | None


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
