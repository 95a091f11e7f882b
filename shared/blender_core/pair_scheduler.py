"""Shared batches across callers: concurrent pair-logit requests coalesced into one plan.

A :class:`~blender_core.pair_ranker.PairRanker` used by many threads or asyncio tasks at once (a
server, a LangChain app with many concurrent ``ainvoke`` calls, a query engine under load) would
otherwise run one caller's small batches after another's. :class:`PairScheduler` lets callers
hand in their encoded pairs and wait: one of the waiting callers (the *leader*) takes what every
caller has pending (after a short collection window while other callers are still encoding,
and up to a cap of padded tokens per round), plans token-budget batches over all of it with
:func:`~blender_core.batching.plan_bucketed_batches`, runs them, and hands each caller exactly
its own logits. Identical pairs of different callers are computed once. No background thread
is started: the leader is a caller thread, and leadership passes on when its round ends.

Results are bit-identical to a solo call because the batch plan is bucketed: each pair is padded
to a width that depends on its own length only, a batch holds one width, and the ranker's forward
computes every row with the same kernels and shapes whatever the batch size (its head runs row
by row). ``tests/ranker/test_shared_batches.py`` checks ``torch.equal``-style equality against
solo calls for 32 concurrent threads and asyncio tasks, in float32 and bfloat16.

Example:
    .. code-block:: python

        from blender_core.pair_scheduler import PairScheduler

        def run_batch(width, seqs):  # the model: one logit per padded sequence
            return [float(sum(s)) for s in seqs]

        scheduler = PairScheduler(run_batch, batch_tokens=4096)
        with scheduler.caller():
            scheduler.compute([[1, 2, 3], [4, 5]])  # [6.0, 9.0]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from blender_core.batching import bucket_width, plan_bucketed_batches

__all__ = ["DEFAULT_WINDOW_S", "ROUND_BUDGET_BATCHES", "PairScheduler", "RoundReport"]

#: How long a leader waits for callers that are still encoding their pairs (seconds). It only
#: waits while some caller is inside the ranker without a pending request, so a solo caller never
#: waits.
DEFAULT_WINDOW_S = 0.003

#: Default cap of one round: this many full batches of padded tokens.
ROUND_BUDGET_BATCHES = 8

RunBatch = Callable[[int, list[Sequence[int]]], list[float]]


class RoundReport:
    """What one round served, handed to the ``on_round`` hook.

    Attributes:
        requests: Caller requests with pairs in this round.
        pairs: Pairs asked for in this round (before deduplication).
        computed: Distinct pairs computed.
    """

    __slots__ = ("computed", "pairs", "requests")

    def __init__(self, requests: int, pairs: int, computed: int) -> None:
        self.requests = requests
        self.pairs = pairs
        self.computed = computed


class _Request:
    __slots__ = ("done", "error", "next", "order", "progress", "results", "seqs", "widths")

    def __init__(self, seqs: list[Sequence[int]], progress: Callable[[int], object] | None) -> None:
        self.seqs = seqs
        self.widths = [bucket_width(len(s)) for s in seqs]
        # Widest first, so that a request split over rounds gives each round similar widths.
        self.order = sorted(range(len(seqs)), key=lambda i: (-self.widths[i], i))
        self.next = 0
        self.results: list[float] = [0.0] * len(seqs)
        self.progress = progress
        self.error: BaseException | None = None
        self.done = False


class PairScheduler:
    """Coalesce the pair-logit requests of concurrent callers into shared batches.

    Args:
        run_batch: ``run_batch(width, seqs) -> logits``: one forward pass of ``seqs`` (token-id
            lists, each at most ``width`` long) padded to exactly ``width``. Called by one thread
            at a time.
        batch_tokens: Padded tokens per forward pass (read at every round; may be changed).
        window_s: Collection window (seconds); see :data:`DEFAULT_WINDOW_S`.
        max_round_tokens: Most padded tokens taken into one round (``None``:
            :data:`ROUND_BUDGET_BATCHES` x ``batch_tokens``). A large request is split over
            rounds, so that small requests arriving meanwhile are served between its parts.
        on_round: Called by the leader after each successful round with a :class:`RoundReport`.
        share: ``False``: a round serves one request only (callers still do not spin on a lock,
            but each request gets the batch plan it would get alone). For backends whose
            kernels do not give a row the same bits whatever the batch size.
    """

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        batch_tokens: int,
        window_s: float = DEFAULT_WINDOW_S,
        max_round_tokens: int | None = None,
        on_round: Callable[[RoundReport], object] | None = None,
        share: bool = True,
    ) -> None:
        if not isinstance(window_s, int | float) or window_s < 0:
            raise ValueError(f"window_s must be a number >= 0, got {window_s!r}")
        if max_round_tokens is not None and (
            isinstance(max_round_tokens, bool)
            or not isinstance(max_round_tokens, int)
            or max_round_tokens < 1
        ):
            raise ValueError(f"max_round_tokens must be a positive int, got {max_round_tokens!r}")
        self._run_batch = run_batch
        self.batch_tokens = batch_tokens
        self.window_s = float(window_s)
        self.max_round_tokens = max_round_tokens
        self._on_round = on_round
        self.share = bool(share)
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[_Request] = []
        self._pending_tokens = 0
        self._active = 0  # callers inside caller()
        self._waiting = 0  # callers inside compute()
        self._leading = False

    # ---- the caller's side ------------------------------------------------------------------

    @contextmanager
    def caller(self) -> Iterator[None]:
        """Mark a caller as busy (encoding its pairs): a leader's window waits for it."""
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def compute(
        self, seqs: Sequence[Sequence[int]], progress: Callable[[int], object] | None = None
    ) -> list[float]:
        """The logit of every sequence in ``seqs`` (input order), computed in shared rounds.

        ``progress(n)`` is called (from the leader's thread) as ``n`` more of them are done. An
        error in a round is raised in every caller whose pairs were in it.
        """
        request = _Request(list(seqs), progress)
        if not request.seqs:
            return []
        with self._cond:
            self._pending.append(request)
            self._pending_tokens += sum(request.widths)
            self._waiting += 1
            self._cond.notify_all()
            try:
                while True:
                    while not request.done and self._leading:
                        self._cond.wait()
                    if request.done:
                        break
                    self._leading = True
                    taken: list[tuple[_Request, list[int]]] = []
                    try:
                        self._collect()
                        taken = self._take()
                        self._cond.release()
                        try:
                            self._run(taken)
                        finally:
                            self._cond.acquire()
                    finally:
                        # Rounds run one at a time, so a request whose last part was taken has
                        # had every part computed once its round is over.
                        for req, _ in taken:
                            if req.error is not None or req.next == len(req.order):
                                if req.error is not None:
                                    self._withdraw(req)
                                req.done = True
                        self._leading = False
                        self._cond.notify_all()
            finally:
                self._waiting -= 1
                if not request.done:  # interrupted while waiting: withdraw what is left
                    self._withdraw(request)
        if request.error is not None:
            raise request.error
        return request.results

    # ---- the leader's side (self._cond held unless said otherwise) --------------------------

    def _cap(self) -> int:
        if self.max_round_tokens is not None:
            return self.max_round_tokens
        return ROUND_BUDGET_BATCHES * max(1, int(self.batch_tokens))

    def _collect(self) -> None:
        """Wait up to the window while callers are still encoding and the round is not full."""
        if self.window_s <= 0 or not self.share:
            return
        deadline = time.monotonic() + self.window_s
        while self._active > self._waiting and self._pending_tokens < self._cap():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _take(self) -> list[tuple[_Request, list[int]]]:
        """FIFO: whole requests, and part of the last one, up to the round's token cap."""
        cap = self._cap()
        tokens = 0
        taken: list[tuple[_Request, list[int]]] = []
        while self._pending and (tokens < cap or not taken):
            req = self._pending[0]
            part: list[int] = []
            while req.next < len(req.order):
                index = req.order[req.next]
                width = req.widths[index]
                if tokens + width > cap and (taken or part):
                    break
                part.append(index)
                tokens += width
                req.next += 1
                self._pending_tokens -= width
            if part:
                taken.append((req, part))
            if req.next == len(req.order):
                self._pending.pop(0)
            else:
                break
            if not self.share:
                break
        return taken

    def _withdraw(self, request: _Request) -> None:
        if request in self._pending:
            self._pending.remove(request)
            self._pending_tokens -= sum(request.widths[i] for i in request.order[request.next :])
        request.done = True

    def _run(self, taken: list[tuple[_Request, list[int]]]) -> None:
        """Plan and run one round (without the lock); errors go to every request in it."""
        unique: dict[tuple[int, ...], int] = {}
        owners: list[list[tuple[_Request, int]]] = []
        seqs: list[Sequence[int]] = []
        pairs = 0
        for req, part in taken:
            for index in part:
                seq = req.seqs[index]
                key = tuple(seq)
                slot = unique.get(key)
                if slot is None:
                    slot = unique[key] = len(seqs)
                    seqs.append(seq)
                    owners.append([])
                owners[slot].append((req, index))
                pairs += 1
        try:
            plan = plan_bucketed_batches([len(s) for s in seqs], max(1, int(self.batch_tokens)))
            for width, batch in plan:
                logits = self._run_batch(width, [seqs[i] for i in batch])
                if len(logits) != len(batch):
                    raise RuntimeError(
                        f"run_batch returned {len(logits)} logits for {len(batch)} sequences"
                    )
                counts: dict[int, tuple[_Request, int]] = {}
                for slot, value in zip(batch, logits, strict=True):
                    for req, index in owners[slot]:
                        req.results[index] = value
                        seen = counts.get(id(req))
                        counts[id(req)] = (req, (seen[1] if seen else 0) + 1)
                for req, count in counts.values():
                    if req.progress is not None:
                        req.progress(count)
        except BaseException as error:
            for req, _ in taken:
                if req.error is None:
                    req.error = error
            return
        if self._on_round is not None:
            self._on_round(RoundReport(requests=len(taken), pairs=pairs, computed=len(seqs)))
