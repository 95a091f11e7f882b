"""The protocol every fuser follows."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["BaseFuser", "Fuser", "validate_fuse_inputs"]


def validate_fuse_inputs(
    instruction: Any, candidates: Any, input: Any, *, fuser: str = "the fuser"
) -> list[str]:
    """Check a fuse call's arguments and return the candidates as a new list.

    Raises a clear ``TypeError`` for a non-str instruction/input, candidates that are not a
    sequence of strings (a bare str included), and ``ValueError`` (naming ``fuser``) for no
    candidates. The caller's sequence is never modified.
    """
    if not isinstance(instruction, str):
        raise TypeError(f"instruction must be a str, got {type(instruction).__name__}")
    if not isinstance(input, str):
        raise TypeError(f"input must be a str, got {type(input).__name__}")
    if isinstance(candidates, str) or not isinstance(candidates, Sequence):
        raise TypeError(
            f"candidates must be a sequence of strings, got {type(candidates).__name__}"
        )
    if len(candidates) == 0:
        raise ValueError(f"{fuser} needs at least one candidate")
    for i, c in enumerate(candidates):
        if not isinstance(c, str):
            raise TypeError(f"candidates[{i}] must be a str, got {type(c).__name__}")
    return list(candidates)


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
