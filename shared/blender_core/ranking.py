"""The ranking value every ranker returns, and the protocol rankers follow."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "MAX_PAIRWISE_CANDIDATES",
    "BaseRanker",
    "Ranker",
    "Ranking",
    "check_pairwise_size",
    "validate_rank_inputs",
]

MAX_PAIRWISE_CANDIDATES = 512
"""Most candidates per input for all-pairs strategies (N(N-1) comparisons: 261,632 at 512)."""
_WARN_PAIRWISE_CANDIDATES = 64


@dataclass(frozen=True)
class Ranking:
    """An immutable ranking of N candidates.

    Attributes:
        order: Candidate indices, best first. ``candidates[order[0]]`` is the winner.
        ranks: 1-based rank of each candidate, in input order; ties share the better rank
            (``ranks[i] == 1 + #{j : scores[j] > scores[i]}``). Not an ordering: use ``order``.
        scores: One score per candidate, in input order; higher is better.
        matrix: The pair matrix ``M[i][j] = logit(c_i, c_j)`` where the ranker computed it.
        strategy: The name of the aggregation that produced the scores.

    Example:
        .. code-block:: python

            ranking = Ranking.from_scores([0.1, 2.0, -1.0])
            ranking.order  # (1, 0, 2)
            ranking.ranks  # (2, 1, 3)
            ranking.best  # 1
    """

    order: tuple[int, ...]
    ranks: tuple[int, ...]
    scores: tuple[float, ...]
    matrix: tuple[tuple[float, ...], ...] | None = None
    strategy: str | None = None

    def __post_init__(self) -> None:
        n = len(self.scores)
        if n == 0:
            raise ValueError("a Ranking needs at least one candidate")
        if len(self.order) != n or len(self.ranks) != n:
            raise ValueError(
                f"order ({len(self.order)}), ranks ({len(self.ranks)}) and scores ({n}) "
                "must have the same length"
            )
        if sorted(self.order) != list(range(n)):
            raise ValueError(f"order must be a permutation of range({n}), got {self.order}")
        if self.matrix is not None and (
            len(self.matrix) != n or any(len(row) != n for row in self.matrix)
        ):
            raise ValueError(f"matrix must be {n}x{n}")

    @classmethod
    def from_scores(
        cls,
        scores: Sequence[float],
        *,
        matrix: Sequence[Sequence[float]] | None = None,
        strategy: str | None = None,
    ) -> Ranking:
        """Build a ranking from per-candidate scores (higher is better).

        Ties keep input order in ``order`` and share the better rank in ``ranks``.
        """
        values = tuple(float(s) for s in scores)
        order = tuple(sorted(range(len(values)), key=lambda i: (-values[i], i)))
        ranks = tuple(1 + sum(1 for other in values if other > value) for value in values)
        frozen_matrix = (
            tuple(tuple(float(x) for x in row) for row in matrix) if matrix is not None else None
        )
        return cls(order=order, ranks=ranks, scores=values, matrix=frozen_matrix, strategy=strategy)

    @property
    def best(self) -> int:
        """Index of the best candidate."""
        return self.order[0]

    def top_k(self, k: int) -> tuple[int, ...]:
        """Indices of the ``k`` best candidates, best first."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return self.order[:k]

    def __len__(self) -> int:
        return len(self.scores)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        out: dict[str, Any] = {
            "order": list(self.order),
            "ranks": list(self.ranks),
            "scores": list(self.scores),
            "best": self.best,
        }
        if self.strategy is not None:
            out["strategy"] = self.strategy
        if self.matrix is not None:
            out["matrix"] = [list(row) for row in self.matrix]
        return out


def validate_rank_inputs(
    instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
) -> None:
    """Raise a clear ``TypeError``/``ValueError`` for malformed ranking input."""
    if isinstance(instructions, str) or not isinstance(instructions, Sequence):
        raise TypeError(
            f"instructions must be a list of strings, got {type(instructions).__name__}"
        )
    if isinstance(candidate_lists, str) or not isinstance(candidate_lists, Sequence):
        raise TypeError(
            f"candidate_lists must be a list of lists of strings, "
            f"got {type(candidate_lists).__name__}"
        )
    if len(instructions) != len(candidate_lists):
        raise ValueError(
            f"instructions ({len(instructions)}) and candidate_lists ({len(candidate_lists)}) "
            "must have the same length"
        )
    for i, instruction in enumerate(instructions):
        if not isinstance(instruction, str):
            raise TypeError(f"instruction {i} must be a string, got {type(instruction).__name__}")
    for i, candidates in enumerate(candidate_lists):
        if isinstance(candidates, str) or not isinstance(candidates, Sequence):
            raise TypeError(
                f"candidates of input {i} must be a list of strings, "
                f"got {type(candidates).__name__}"
            )
        if len(candidates) == 0:
            raise ValueError(f"candidates of input {i} is empty: nothing to rank")
        for j, candidate in enumerate(candidates):
            if not isinstance(candidate, str):
                raise TypeError(
                    f"candidate {j} of input {i} must be a string, got {type(candidate).__name__}"
                )


def check_pairwise_size(
    candidate_lists: Sequence[Sequence[str]],
    *,
    strategy: str,
    limit: int = MAX_PAIRWISE_CANDIDATES,
    ordered: bool = True,
) -> None:
    """Refuse, or warn about, candidate lists too long for an all-pairs (O(N^2)) strategy.

    Args:
        candidate_lists: The lists to rank.
        strategy: Named in the messages.
        limit: Most candidates per list; more raise ``ValueError``.
        ordered: Whether both orders of a pair are compared (N(N-1) rather than N(N-1)/2).

    A list longer than 64 candidates logs a warning with the number of comparisons.
    """
    longest = max((len(c) for c in candidate_lists), default=0)
    pairs = longest * (longest - 1) // (1 if ordered else 2)
    if longest > limit:
        raise ValueError(
            f"{longest} candidates need {pairs:,} pair comparisons with strategy {strategy!r}; "
            f"the limit is {limit} candidates per input: split the list, pre-select candidates "
            "or use an O(N) strategy (PairRanker's 'bubble')"
        )
    if longest > _WARN_PAIRWISE_CANDIDATES:
        logging.getLogger(__name__).warning(
            "%d candidates: strategy %r makes %d pair comparisons (quadratic in N)",
            longest,
            strategy,
            pairs,
        )


@runtime_checkable
class Ranker(Protocol):
    """Anything that ranks candidate answers to an instruction."""

    def rank(self, instruction: str, candidates: Sequence[str]) -> Ranking: ...

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]: ...

    async def arank(self, instruction: str, candidates: Sequence[str]) -> Ranking: ...


class BaseRanker(ABC):
    """Base class for rankers: implement :meth:`rank_batch`; the rest is derived.

    The async forms run the sync work in a worker thread so that the event loop is never blocked.
    """

    @abstractmethod
    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        """Rank each candidate list for its instruction."""

    def rank(self, instruction: str, candidates: Sequence[str]) -> Ranking:
        """Rank ``candidates`` as answers to ``instruction``."""
        if isinstance(candidates, str):
            raise TypeError("candidates must be a list of strings, not a single string")
        return self.rank_batch([instruction], [candidates])[0]

    async def arank(self, instruction: str, candidates: Sequence[str]) -> Ranking:
        """Async :meth:`rank`, run in a worker thread."""
        return await asyncio.to_thread(self.rank, instruction, candidates)

    async def arank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        """Async :meth:`rank_batch`, run in a worker thread."""
        return await asyncio.to_thread(self.rank_batch, instructions, candidate_lists)
