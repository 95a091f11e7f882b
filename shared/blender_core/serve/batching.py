"""Cross-request batching of ranking work: concurrent requests share one ``rank_batch`` call.

The gateway wraps each shared ranker in a :class:`SharedBatchRanker`. Its :meth:`arank` does
not rank at once: calls that arrive while a batch is being ranked (or within ``max_wait``
seconds of the first) are collected and ranked together by one ``rank_batch`` on the ranker's
own thread (one per shared ranker, so that its tensors' memory stays in one allocator arena). A
PairRanker then packs the pairs of every request into its length-sorted, token-budget batches
(fuller batches, fewer forward passes); the consensus ranker embeds every text of the batch in
one encoder pass. A result never depends on what else shares the batch (the rankers truncate and
score per pair), so sharing changes speed, not answers.

Example:
    .. code-block:: python

        shared = SharedBatchRanker(PairRanker.from_pretrained("llm-blender/PairRM"))
        ranking = await shared.arank("Say hi", ["hi!", "go away"])  # batched with its peers
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from blender_core.ranking import Ranker, Ranking

__all__ = ["SharedBatchRanker"]

T = TypeVar("T")


@dataclass
class _Pending:
    instruction: str
    candidates: list[str]
    future: asyncio.Future[Ranking]


class SharedBatchRanker:
    """A ranker whose concurrent :meth:`arank` calls share ``rank_batch`` calls.

    Args:
        ranker: The ranker (anything with ``rank_batch``; PairRanker, consensus...).
        strategy: Passed to ``rank_batch(..., strategy=...)`` when set (PairRanker strategies).
        max_wait: Seconds the first call of a batch waits for company (0: only the calls that
            queued while the previous batch ran).
        max_requests: Most requests in one batch.
        on_batch: Called with the number of requests of each batch (metrics).

    The sync :meth:`rank` / :meth:`rank_batch` go straight to the wrapped ranker.
    """

    def __init__(
        self,
        ranker: Ranker,
        *,
        strategy: str | None = None,
        max_wait: float = 0.002,
        max_requests: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_requests < 1:
            raise ValueError(f"max_requests must be >= 1, got {max_requests}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait}")
        self.ranker = ranker
        self.strategy = strategy
        self.max_wait = max_wait
        self.max_requests = max_requests
        self.on_batch = on_batch
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task[None] | None = None
        # One thread does all the ranking: the models lock per call anyway, and one thread keeps
        # the tensors' memory in one allocator arena instead of one per pool thread.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blender-rank")

    @property
    def stats(self) -> Any:
        """The wrapped ranker's stats (PairRanker), for the metrics."""
        return getattr(self.ranker, "stats", None)

    def _kwargs(self) -> dict[str, Any]:
        return {"strategy": self.strategy} if self.strategy is not None else {}

    def rank(self, instruction: str, candidates: Sequence[str], **kwargs: Any) -> Ranking:
        return self.ranker.rank(instruction, candidates, **{**self._kwargs(), **kwargs})

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]], **kwargs: Any
    ) -> list[Ranking]:
        return self.ranker.rank_batch(instructions, candidate_lists, **{**self._kwargs(), **kwargs})

    async def arank(self, instruction: str, candidates: Sequence[str]) -> Ranking:
        """Rank ``candidates`` together with the other requests waiting now."""
        if isinstance(candidates, str):
            raise TypeError("candidates must be a list of strings, not a single string")
        loop = asyncio.get_running_loop()
        pending = _Pending(instruction, list(candidates), loop.create_future())
        self._queue.append(pending)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        try:
            return await asyncio.shield(pending.future)
        except asyncio.CancelledError:
            pending.future.cancel()  # dropped from its batch if it has not started yet
            raise

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the ranking thread (other work on the same model)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(fn, *args, **kwargs))

    async def _drain(self) -> None:
        while self._queue:
            if self.max_wait:
                await asyncio.sleep(self.max_wait)
            batch = [p for p in self._queue[: self.max_requests] if not p.future.done()]
            del self._queue[: self.max_requests]
            if not batch:
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch))
            try:
                rankings = await self.run(
                    self.rank_batch, [p.instruction for p in batch], [p.candidates for p in batch]
                )
            except Exception as exc:
                await self._fail_alone(batch, exc)
                continue
            for p, ranking in zip(batch, rankings, strict=True):
                if not p.future.done():
                    p.future.set_result(ranking)

    async def _fail_alone(self, batch: list[_Pending], exc: Exception) -> None:
        """A batch failed: rank its requests one by one so one bad request fails only itself."""
        if len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_exception(exc)
            return
        for p in batch:
            if p.future.done():
                continue
            try:
                ranking = await self.run(self.rank, p.instruction, p.candidates)
            except Exception as one:
                p.future.set_exception(one)
            else:
                p.future.set_result(ranking)

    def __repr__(self) -> str:
        return f"SharedBatchRanker({self.ranker!r}, strategy={self.strategy!r})"
