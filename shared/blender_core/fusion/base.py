"""The protocol every fuser follows."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["BaseFuser", "Fuser"]


@runtime_checkable
class Fuser(Protocol):
    """Writes one answer from the top-ranked candidates (given best first)."""

    def fuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kwargs: Any
    ) -> str: ...

    async def afuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kwargs: Any
    ) -> str: ...


class BaseFuser(ABC):
    """Base class: implement :meth:`fuse`; :meth:`afuse` runs it in a worker thread."""

    @abstractmethod
    def fuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kwargs: Any
    ) -> str:
        """Fuse ``candidates`` (best first) into one answer."""

    async def afuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kwargs: Any
    ) -> str:
        return await asyncio.to_thread(self.fuse, instruction, candidates, input=input, **kwargs)
