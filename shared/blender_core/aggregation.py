"""From pair logits to rankings: MaxLogits, MaxWins and single-pass bubble selection (pure Python).

``M[i][j] = logit(c_i, c_j)`` (> 0: ``c_i`` beats ``c_j``), diagonal 0.

- MaxLogits (the reference's ``rank``): ``score_i = (1/N) * sum_j (M[i][j] - M[j][i])``.
- MaxWins: ``score_i = #{j : M[i][j] > 0} + #{j : M[j][i] < 0}``.
- Bubble (best-of-n with 2(N-1) pair evaluations): one pass over a permutation; at each step
  ``d = logit(cur, next) - logit(next, cur)`` and ``cur`` stays if ``d > 0``.

Example:
    .. code-block:: python

        from blender_core.aggregation import max_logits_scores

        max_logits_scores([[0.0, 1.0], [-2.0, 0.0]])  # [1.5, -1.5]
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

__all__ = [
    "STRATEGIES",
    "BubblePass",
    "bubble",
    "bubble_permutation",
    "max_logits_scores",
    "max_wins_scores",
    "one_way_pairs",
]

#: The aggregation strategies a PairRanker offers.
STRATEGIES = ("max_logits", "max_wins", "bubble")


def _check_square(matrix: Sequence[Sequence[float]]) -> int:
    n = len(matrix)
    if n == 0:
        raise ValueError("the pair matrix is empty")
    if any(len(row) != n for row in matrix):
        raise ValueError(f"the pair matrix must be {n}x{n}")
    return n


def max_logits_scores(matrix: Sequence[Sequence[float]]) -> list[float]:
    """``score_i = (1/N) * sum_{j != i} (M[i][j] - M[j][i])``."""
    n = _check_square(matrix)
    return [sum(matrix[i][j] - matrix[j][i] for j in range(n) if j != i) / n for i in range(n)]


def max_wins_scores(matrix: Sequence[Sequence[float]]) -> list[float]:
    """``score_i = #{j != i : M[i][j] > 0} + #{j != i : M[j][i] < 0}`` (as A and as B)."""
    n = _check_square(matrix)
    return [
        float(
            sum(1 for j in range(n) if j != i and matrix[i][j] > 0)
            + sum(1 for j in range(n) if j != i and matrix[j][i] < 0)
        )
        for i in range(n)
    ]


def bubble_permutation(n: int, seed: int | None, *, key: Sequence[str] | None = None) -> list[int]:
    """The order in which bubble selection visits ``n`` candidates.

    With a ``seed`` the permutation is a function of the seed and of ``key`` (the input's own
    texts), so an input gets the same permutation whatever other inputs share a batch
    call. ``seed=None`` draws a fresh permutation (not reproducible, like the reference).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if seed is None:
        rng = random.Random()
    else:
        digest = hashlib.sha256(str(seed).encode())
        for text in key or ():
            digest.update(b"\x00" + text.encode("utf-8", "surrogatepass"))
        rng = random.Random(int.from_bytes(digest.digest()[:8], "big"))
    order = list(range(n))
    rng.shuffle(order)
    return order


def one_way_pairs(
    n: int, seed: int | None, *, key: Sequence[str] | None = None
) -> list[tuple[int, int]]:
    """Each unordered pair of ``range(n)`` once, as ``(a, b)`` in a seeded random direction.

    Order and directions are a function of ``seed`` and ``key`` (as for
    :func:`bubble_permutation`); ``seed=None`` uses seed 0, so a ranking never depends on luck.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    digest = hashlib.sha256(b"one-way\x00" + str(0 if seed is None else seed).encode())
    for text in key or ():
        digest.update(b"\x00" + text.encode("utf-8", "surrogatepass"))
    rng = random.Random(int.from_bytes(digest.digest()[:8], "big"))
    out = [(i, j) if rng.random() < 0.5 else (j, i) for i in range(n) for j in range(i + 1, n)]
    rng.shuffle(out)
    return out


class BubblePass:
    """One bubble pass, driven step by step (so that many inputs can share each forward batch).

    Scores (what :class:`~blender_core.ranking.Ranking` gets): a candidate eliminated at comparison
    ``k`` (1-based, ``N-1`` comparisons in all) scores ``k``; the champion, never eliminated,
    scores ``N``. So ``order[0]`` is the champion, ``order[1]`` the candidate it beat (or that held
    the lead before it) at the last comparison, and so on: ranks are 1..N without ties. Only the
    champion is a real verdict: the rest is elimination order, which depends on the permutation.

    Example:
        .. code-block:: python

            p = BubblePass([2, 0, 1])
            while (pair := p.next_pair()) is not None:
                cur, nxt = pair
                p.record(logit(cur, nxt) - logit(nxt, cur))
            p.champion, p.scores()
    """

    def __init__(self, permutation: Sequence[int]) -> None:
        n = len(permutation)
        if n == 0 or sorted(permutation) != list(range(n)):
            raise ValueError(f"permutation must be a permutation of range({n})")
        self.permutation = list(permutation)
        self.champion = self.permutation[0]
        self.step = 0  # comparisons done
        self.eliminated_at: dict[int, int] = {}
        #: ``(cur, next, d)`` for every comparison made, in order.
        self.history: list[tuple[int, int, float]] = []

    @property
    def done(self) -> bool:
        """Whether all ``N - 1`` comparisons are made."""
        return self.step >= len(self.permutation) - 1

    def next_pair(self) -> tuple[int, int] | None:
        """``(cur, next)`` to compare now, or ``None`` when the pass is over."""
        if self.done:
            return None
        return self.champion, self.permutation[self.step + 1]

    def record(self, d: float) -> None:
        """Record ``d = logit(cur, next) - logit(next, cur)``: ``cur`` stays if ``d > 0``."""
        pair = self.next_pair()
        if pair is None:
            raise RuntimeError("the bubble pass is already over")
        cur, nxt = pair
        self.step += 1
        self.history.append((cur, nxt, float(d)))
        if d > 0:
            self.eliminated_at[nxt] = self.step
        else:
            self.eliminated_at[cur] = self.step
            self.champion = nxt

    def scores(self) -> list[float]:
        """Per candidate (input order): elimination step, ``N`` for the champion."""
        if not self.done:
            raise RuntimeError("the bubble pass is not over")
        n = len(self.permutation)
        return [float(self.eliminated_at.get(i, n)) for i in range(n)]


def bubble(permutation: Sequence[int], compare: Callable[[int, int], float]) -> BubblePass:
    """Run a bubble pass with ``compare(cur, next) = logit(cur, next) - logit(next, cur)``."""
    state = BubblePass(permutation)
    while (pair := state.next_pair()) is not None:
        state.record(compare(*pair))
    return state
