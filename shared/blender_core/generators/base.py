"""The protocol every base model adapter follows."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
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

    Adapters with a native async client override :meth:`agenerate`; adapters that can stream
    tokens override :meth:`stream` / :meth:`astream` (by default they yield the whole answer once).
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

    def stream(self, prompt: Prompt, **kwargs: Any) -> Iterator[str]:
        """Answer ``prompt`` as text deltas whose concatenation is the answer.

        The default yields the whole :meth:`generate` answer once; streaming adapters yield
        pieces as the model produces them. Closing the iterator early stops the generation
        where the adapter can.

        Example:
            .. code-block:: python

                for delta in generator.stream("Name three primes."):
                    print(delta, end="", flush=True)
        """
        yield self.generate(prompt, **kwargs)

    async def astream(self, prompt: Prompt, **kwargs: Any) -> AsyncIterator[str]:
        """Async :meth:`stream` (the default yields the whole :meth:`agenerate` answer once).

        Example:
            .. code-block:: python

                async for delta in generator.astream("Name three primes."):
                    print(delta, end="", flush=True)
        """
        yield await self.agenerate(prompt, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class _StripDeltas:
    """Strips a stream of deltas as ``str.strip`` strips their concatenation.

    Leading whitespace is dropped; trailing whitespace is held back until more text follows it,
    so that a streamed answer concatenates to exactly the stripped one-shot answer.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.started = False
        self.pending = ""

    def feed(self, delta: Any) -> str:
        if not isinstance(delta, str):
            raise TypeError(f"{self.source} streamed {type(delta).__name__}, not str")
        if not self.started:
            delta = delta.lstrip()
            if not delta:
                return ""
            self.started = True
        text = self.pending + delta
        kept = text.rstrip()
        self.pending = text[len(kept) :]
        return kept
