"""The ranking value every ranker returns, the protocol rankers follow, and the abilities a
ranker may declare (:class:`RankerAbilities`), which the pipeline reads with the helpers here
(:func:`arank_with`, :func:`selects_top_k`, :func:`planned_passes`, :func:`ranker_name`): it
never tests for a concrete ranker class."""

from __future__ import annotations

import asyncio
import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, cast, runtime_checkable

__all__ = [
    "MAX_PAIRWISE_CANDIDATES",
    "BaseRanker",
    "Ranker",
    "RankerAbilities",
    "Ranking",
    "accepts_members",
    "arank_with",
    "check_pairwise_size",
    "pair_passes",
    "planned_passes",
    "rank_batch_with",
    "rank_with",
    "ranker_name",
    "selects_top_k",
    "source_for",
    "takes_strategy",
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
        ordered: How many of the best (the first ``ordered`` of :attr:`order`) were ranked
            against each other and have comparable scores; ``None``: all of them. A top-K
            selection (``strategy="top_k"``) orders only the knockout's survivors: the others'
            scores say the round they reached (lower, in tiers), not how good they are.

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
    ordered: int | None = None

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.ordered is not None and not 1 <= self.ordered <= n:
            raise ValueError(f"ordered must be between 1 and {n}, got {self.ordered}")
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
        ordered: int | None = None,
    ) -> Self:
        """Build a ranking from per-candidate scores (higher is better).

        Ties keep input order in ``order`` and share the better rank in ``ranks``.
        """
        values = tuple(float(s) for s in scores)
        order = tuple(sorted(range(len(values)), key=lambda i: (-values[i], i)))
        ranks = tuple(1 + sum(1 for other in values if other > value) for value in values)
        frozen_matrix = (
            tuple(tuple(float(x) for x in row) for row in matrix) if matrix is not None else None
        )
        return cls(
            order=order,
            ranks=ranks,
            scores=values,
            matrix=frozen_matrix,
            strategy=strategy,
            ordered=ordered,
        )

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
        """A JSON-serialisable view (``ordered`` only for a partial order, see above)."""
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
        if self.ordered is not None:
            out["ordered"] = self.ordered
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


class RankerAbilities(Protocol):
    """What a ranker may declare beyond :class:`Ranker`, all optional; the pipeline reads them
    through the helpers of this module, so a new ranker needs no change outside its own file.

    Attributes:
        strategies: The ``strategy=`` values ``rank``/``arank``/``rank_batch`` accept (a
            ranker without it may still take ``strategy=``: its signature says so).
        accepts_members: ``rank``/``arank`` take ``members=`` (who gave each candidate).
        accepts_input: ``rank``/``arank`` take ``input=`` (the context, e.g. a conversation's
            history) apart from the instruction; other rankers read both joined as one source
            (``instruction + "\n\n" + input``).
        trace_name: The name traces and failures give it (default: its class, and the LLM it
            wraps if any).
    """

    strategies: ClassVar[tuple[str, ...]]
    accepts_members: ClassVar[bool]
    accepts_input: ClassVar[bool]
    trace_name: str

    def selects_top_k(self, strategy: str | None) -> bool:
        """Whether ``arank(..., top_k=K)`` with ``strategy`` selects the best K without a full
        order (fewer comparisons; the others' scores are then not comparable)."""
        ...

    def planned_passes(self, n: int, strategy: str | None, top_k: int | None) -> int | None:
        """The comparisons (model passes) ranking ``n`` candidates makes (``None``: unknown)."""
        ...


def _accepts(func: Any, name: str) -> bool:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def takes_strategy(ranker: Any, method: str = "rank") -> bool:
    """Whether ``ranker`` takes ``strategy=`` (declared ``strategies``, or the signature of its
    ``method``)."""
    declared = getattr(ranker, "strategies", None)
    if declared is not None:
        return bool(declared)
    return _accepts(getattr(ranker, method, None), "strategy")


def accepts_members(ranker: Any) -> bool:
    """Whether ``ranker`` declares ``accepts_members`` (it is told who gave each candidate)."""
    return bool(getattr(ranker, "accepts_members", False))


def selects_top_k(ranker: Any, strategy: str | None) -> bool:
    """Whether ``ranker`` declares that it selects the best K with ``strategy``."""
    declared = getattr(ranker, "selects_top_k", None)
    return bool(declared(strategy)) if callable(declared) else False


def planned_passes(ranker: Any, n: int, strategy: str | None, top_k: int | None) -> int | None:
    """The comparisons ``ranker`` declares for ``n`` candidates (``None`` where it does not)."""
    declared = getattr(ranker, "planned_passes", None)
    return cast(int | None, declared(n, strategy, top_k)) if callable(declared) else None


def ranker_name(ranker: Any) -> str:
    """A ranker's (or fuser's) name for traces and failures: its declared ``trace_name``, else
    its class, and the LLM it wraps if any (``"LLMJudgeRanker(gpt-4o)"``)."""
    declared = getattr(ranker, "trace_name", None)
    if isinstance(declared, str) and declared:
        return declared
    name = type(ranker).__name__
    inner = getattr(ranker, "generator", None) or getattr(ranker, "judge", None)
    inner_name = getattr(inner, "name", None)
    return f"{name}({inner_name})" if isinstance(inner_name, str) else name


def source_for(ranker: Any, instruction: str, input: str) -> tuple[str, dict[str, Any]]:
    """What ``ranker`` reads as the instruction, and the ``input=`` option where it declares
    ``accepts_input``; otherwise instruction and input joined (``"\n\n"``) as one source."""
    if getattr(ranker, "accepts_input", False):
        return instruction, {"input": input}
    return (f"{instruction}\n\n{input}" if input else instruction), {}


def _options(
    ranker: Any,
    strategy: str | None,
    top_k: int | None,
    members: Any,
    method: str = "rank",
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if members is not None and accepts_members(ranker):
        options["members"] = members
    if strategy is not None:
        if not takes_strategy(ranker, method):
            raise ValueError(
                f"strategy={strategy!r} was given but {ranker_name(ranker)} takes none"
            )
        options["strategy"] = strategy
    if top_k is not None and selects_top_k(ranker, strategy):
        options["top_k"] = top_k
    return options


def _prepared(
    ranker: Any,
    instruction: str,
    input: str,
    strategy: str | None,
    top_k: int | None,
    members: Any,
) -> tuple[str, dict[str, Any]]:
    source, options = source_for(ranker, instruction, input)
    options.update(_options(ranker, strategy, top_k, members))
    return source, options


def rank_with(
    ranker: Ranker,
    instruction: str,
    candidates: Sequence[str],
    *,
    input: str = "",
    strategy: str | None = None,
    top_k: int | None = None,
    members: Sequence[Any] | None = None,
) -> Ranking:
    """``ranker.rank`` with the options it declares: ``input`` (apart, or joined to the
    instruction: :func:`source_for`), ``strategy`` (refused clearly by a ranker that takes
    none), ``top_k`` (passed only to a ranker that selects the best K with that strategy;
    others rank fully) and ``members`` (only to a ranker that accepts them)."""
    source, options = _prepared(ranker, instruction, input, strategy, top_k, members)
    return cast(Ranking, cast(Any, ranker).rank(source, candidates, **options))


async def arank_with(
    ranker: Ranker,
    instruction: str,
    candidates: Sequence[str],
    *,
    input: str = "",
    strategy: str | None = None,
    top_k: int | None = None,
    members: Sequence[Any] | None = None,
) -> Ranking:
    """Async :func:`rank_with`: ``ranker.arank``, or ``rank`` in a worker thread where its
    ``arank`` does not take the options (a base ranker whose ``rank`` adds a ``strategy``)."""
    source, options = _prepared(ranker, instruction, input, strategy, top_k, members)
    target = cast(Any, ranker)
    if all(_accepts(target.arank, name) for name in options):
        return cast(Ranking, await target.arank(source, candidates, **options))
    return cast(
        Ranking, await asyncio.to_thread(lambda: target.rank(source, candidates, **options))
    )


def rank_batch_with(
    ranker: Ranker,
    instructions: Sequence[str],
    candidate_lists: Sequence[Sequence[str]],
    *,
    strategy: str | None = None,
) -> list[Ranking]:
    """``ranker.rank_batch`` with ``strategy`` where given (see :func:`rank_with`)."""
    options = _options(ranker, strategy, None, None, method="rank_batch")
    return list(cast(Any, ranker).rank_batch(instructions, candidate_lists, **options))


def pair_passes(n: int, strategy: str | None, top_k: int | None) -> int | None:
    """The pair comparisons of a pairwise ranker (PairRM family) for ``n`` candidates.

    ``n(n-1)`` for ``"max_logits"``/``"max_wins"``, ``2(n-1)`` for ``"bubble"``, and with
    ``top_k`` (max_logits) a seeded knockout (two passes a match) down to ``2*top_k`` survivors
    (one for ``top_k=1``) that max_logits then orders; ``None`` for another strategy.
    """
    if n < 2:
        return 0
    if strategy == "bubble":
        return 2 * (n - 1)
    if strategy not in (None, "max_logits", "max_wins"):
        return None
    if top_k is None or strategy == "max_wins":
        return n * (n - 1)
    keep = 1 if top_k == 1 else 2 * top_k
    passes, alive = 0, n
    while alive > keep:
        matches = alive // 2
        passes += 2 * matches
        alive -= matches
    return passes + alive * (alive - 1)
