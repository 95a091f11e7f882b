"""One thread-safe lazy value: built by its factory on first use, once, whoever asks first.

The adapters and the core hold rankers, fusers and models that are expensive to load (model
weights) and must not load at construction (LangChain and LlamaIndex objects are built eagerly,
often at import time). :class:`Lazy` is the one double-checked-lock loader they share.

Example:
    .. code-block:: python

        from blender_core.lazy import Lazy
        from blender_core.loading import load_ranker

        ranker = Lazy(lambda: load_ranker("llm-blender/PairRM"))
        ranker.loaded  # False: nothing loaded yet
        ranker.get().rank("Say hi", ["hi!", "go away"])  # loads once, then reuses
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Lazy"]

T = TypeVar("T")


class Lazy(Generic[T]):
    """A value built by ``factory`` on the first :meth:`get`, exactly once across threads.

    A factory that raises leaves the value unbuilt (the next :meth:`get` tries again), so a
    transient failure (a hub that did not answer) is not remembered.

    Args:
        factory: Builds the value; called at most once successfully.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._value: T | None = None
        self._loaded = False

    @property
    def loaded(self) -> bool:
        """Whether the value has been built."""
        return self._loaded

    def get(self) -> T:
        """The value, built on first use (other threads wait for the one building it)."""
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._value = self._factory()
                    self._loaded = True
        return self._value  # type: ignore[return-value]

    async def aget(self) -> T:
        """:meth:`get` for coroutines: a first build (model weights) runs in a worker thread."""
        if self._loaded:
            return self._value  # type: ignore[return-value]
        return await asyncio.to_thread(self.get)

    def set(self, value: T) -> None:
        """Use ``value`` (already built) from now on."""
        with self._lock:
            self._value = value
            self._loaded = True

    def __repr__(self) -> str:
        state = repr(self._value) if self._loaded else "not loaded"
        return f"Lazy({state})"
