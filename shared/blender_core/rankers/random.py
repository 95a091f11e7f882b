"""A random ranker: the paper's "random selection" baseline."""

from __future__ import annotations

import random
from collections.abc import Sequence

from blender_core.ranking import BaseRanker, Ranking, validate_rank_inputs

__all__ = ["RandomRanker", "seeded_rng"]


def seeded_rng(seed: int | None, instruction: str, candidates: Sequence[str]) -> random.Random:
    """A random generator for one ranking call.

    With a seed, the generator depends only on ``(seed, instruction, candidates)``: ranking the
    same input gives the same result whatever was ranked before and from whichever thread.
    Without a seed it is seeded from the operating system.
    """
    if seed is None:
        return random.Random()
    # str seeds are hashed with SHA-512 by random.Random: stable across runs and processes.
    key = "\x1f".join([str(seed), instruction, *candidates])
    return random.Random(key)


class RandomRanker(BaseRanker):
    """Ranks candidates in a random order (a baseline).

    Args:
        seed: With a seed, the ranking of a given instruction and candidate list is reproducible
            (it does not depend on call order); ``None`` draws fresh randomness each call.

    Example:
        .. code-block:: python

            from blender_core import RandomRanker

            ranker = RandomRanker(seed=0)
            ranking = ranker.rank("Say hi", ["hi!", "hello", "hey"])
            ranking.order  # a permutation of (0, 1, 2), the same on every run
    """

    def __init__(self, seed: int | None = None) -> None:
        if seed is not None and not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        self.seed = seed

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        """Rank each candidate list in a random order; scores are ``n - position``."""
        validate_rank_inputs(instructions, candidate_lists)
        rankings = []
        for instruction, candidates in zip(instructions, candidate_lists, strict=True):
            n = len(candidates)
            order = list(range(n))
            seeded_rng(self.seed, instruction, candidates).shuffle(order)
            scores = [0.0] * n
            for position, index in enumerate(order):
                scores[index] = float(n - position)
            rankings.append(Ranking.from_scores(scores, strategy="random"))
        return rankings

    def __repr__(self) -> str:
        return f"RandomRanker(seed={self.seed!r})"
