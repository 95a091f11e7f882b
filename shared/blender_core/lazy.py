"""One thread-safe lazy value: built by its factory on first use, once, whoever asks first.

The adapters and the core hold rankers, fusers and models that are expensive to load (model
weights) and must not load at construction (LangChain and LlamaIndex objects are built eagerly,
often at import time). :class:`Lazy` is the one double-checked-lock loader they share;
:func:`lazy_exports` gives a package names that import their module on first access.

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
import importlib
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["Lazy", "lazy_exports"]

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

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled (sent to a worker process) unbuilt: the value is built again where it is used
        return (Lazy, (self._factory,))


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's module-level ``__getattr__`` and ``__dir__`` (PEP 562) for lazy public names.

    Each name in ``exports`` (name -> module) is imported from its module on first access and
    then kept in the package, so heavy libraries (torch, transformers) load only when used.

    Example:
        .. code-block:: python

            _EXPORTS = {"train_ranker": "blender_core.training.ranker_run"}
            __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module_name = exports.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_name), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
