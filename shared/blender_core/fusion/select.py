"""The "no fusion" fuser: return the top-ranked candidate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from blender_core.fusion.base import BaseFuser

__all__ = ["SelectFuser"]


class SelectFuser(BaseFuser):
    """Returns the best candidate as is (``candidates[0]``; candidates come best first).

    This is LLM-Blender without GenFuser: ranking alone. Extra keyword arguments are ignored.

    Example:
        .. code-block:: python

            from blender_core import SelectFuser

            SelectFuser().fuse("Say hi", ["hello!", "hi"])  # "hello!"
    """

    def fuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kwargs: Any
    ) -> str:
        if isinstance(candidates, str) or not isinstance(candidates, Sequence):
            raise TypeError(
                f"candidates must be a sequence of strings, got {type(candidates).__name__}"
            )
        if len(candidates) == 0:
            raise ValueError("SelectFuser needs at least one candidate")
        best = candidates[0]
        if not isinstance(best, str):
            raise TypeError(f"candidates[0] must be a str, got {type(best).__name__}")
        return best

    async def afuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kwargs: Any
    ) -> str:
        return self.fuse(instruction, candidates, input=input, **kwargs)

    def __repr__(self) -> str:
        return "SelectFuser()"
