"""The protocol every base model adapter follows."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

from blender_core.types import Prompt

__all__ = ["BaseGenerator", "Generator"]


@runtime_checkable
class Generator(Protocol):
    """A base LLM that answers a prompt (a string or a chat), sync and async.

    ``name`` identifies the model in results (candidates by model, failures, latency).
    """

    name: str

    def generate(self, prompt: Prompt, **kwargs: Any) -> str: ...

    async def agenerate(self, prompt: Prompt, **kwargs: Any) -> str: ...


class BaseGenerator(ABC):
    """Base class: implement :meth:`generate`; :meth:`agenerate` runs it in a worker thread.

    Adapters with a native async client override :meth:`agenerate`.
    """

    name: str

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a generator needs a non-empty name")
        self.name = name

    @abstractmethod
    def generate(self, prompt: Prompt, **kwargs: Any) -> str:
        """Answer ``prompt``."""

    async def agenerate(self, prompt: Prompt, **kwargs: Any) -> str:
        """Async :meth:`generate` (a worker thread unless overridden)."""
        return await asyncio.to_thread(self.generate, prompt, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
