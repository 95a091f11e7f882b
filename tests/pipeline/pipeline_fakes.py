"""Scripted fakes of the Generator, Fuser and Ranker protocols for the pipeline tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["FakeGenerator", "LengthRanker", "RecordingFuser"]


class FakeGenerator:
    """A Generator whose answer, delay and failure are scripted.

    ``mode="async"`` sleeps with ``asyncio.sleep``; ``mode="sync"`` blocks in ``time.sleep``
    inside a worker thread (as a local model would).
    """

    def __init__(
        self,
        name: str,
        answer: str | Callable[[str], Any] = "answer",
        *,
        delay: float = 0.0,
        error: BaseException | None = None,
        mode: str = "async",
    ) -> None:
        self.name = name
        self.answer = answer
        self.delay = delay
        self.error = error
        self.mode = mode
        self.prompts: list[Any] = []

    def _answer(self, prompt: Any) -> Any:
        self.prompts.append(prompt)
        if self.error is not None:
            raise self.error
        return self.answer(prompt) if callable(self.answer) else self.answer

    def generate(self, prompt: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay)
        return self._answer(prompt)

    async def agenerate(self, prompt: Any, **kwargs: Any) -> Any:
        if self.mode == "sync":
            return await asyncio.to_thread(self.generate, prompt, **kwargs)
        await asyncio.sleep(self.delay)
        return self._answer(prompt)


class RecordingFuser:
    """A Fuser that records what it gets and joins the candidates."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], str]] = []

    def fuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kw: Any
    ) -> str:
        self.calls.append((instruction, list(candidates), input))
        return " | ".join(candidates)

    async def afuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kw: Any
    ) -> str:
        return self.fuse(instruction, candidates, input=input)


class LengthRanker:
    """A deterministic Ranker: longer answers rank higher."""

    def __init__(self) -> None:
        from blender_core.ranking import BaseRanker, Ranking

        class _Impl(BaseRanker):
            def rank_batch(self, instructions, candidate_lists):  # type: ignore[no-untyped-def]
                return [
                    Ranking.from_scores([float(len(c)) for c in cands], strategy="length")
                    for cands in candidate_lists
                ]

        self._impl = _Impl()
        self.calls: list[tuple[str, list[str]]] = []

    def rank(self, instruction: str, candidates: Sequence[str]) -> Any:
        self.calls.append((instruction, list(candidates)))
        return self._impl.rank(instruction, candidates)

    def rank_batch(self, instructions: Sequence[str], candidate_lists: Any) -> Any:
        return self._impl.rank_batch(instructions, candidate_lists)

    async def arank(self, instruction: str, candidates: Sequence[str]) -> Any:
        return await asyncio.to_thread(self.rank, instruction, candidates)
