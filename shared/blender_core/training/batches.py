"""Length-bucketed, token-budget batches of training pairs (the ranking speed-up, for training).

A batch padded to its longest pair wastes the difference on every shorter one; with candidates
cut to 128 tokens about a fifth of a random batch is padding, with 256 about a third. Here each
epoch's pairs are shuffled (seeded by ``seed + epoch``), cut into buckets of ``bucket`` pairs,
sorted by length inside each bucket, and packed into batches whose padded size
``pairs x longest`` stays within ``max_tokens``: short pairs travel many to a batch, long ones
few. The batch order is shuffled again, so lengths do not drift through the epoch.

The ``Trainer`` sizes its schedule from ``len(dataloader)`` once, so every epoch has the same
number of batches as the first: an epoch whose packing came out longer merges its two smallest
neighbouring batches, one that came out shorter splits its largest, until the count matches.

Example:
    .. code-block:: python

        sampler = TokenBudgetBatchSampler(lambda: lengths, max_tokens=8 * 320, seed=0)
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collator)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

__all__ = ["TokenBudgetBatchSampler", "pack_batches"]


def pack_batches(
    lengths: Sequence[int], *, max_tokens: int, bucket: int, rng: random.Random
) -> list[list[int]]:
    """Indices of ``lengths`` packed into length-sorted batches within ``max_tokens``.

    Args:
        lengths: Tokens of each item.
        max_tokens: Most padded tokens per batch (``items x longest``); an item longer than
            this travels alone.
        bucket: Items sorted together (after a shuffle); larger buckets pad less, smaller ones
            keep more randomness in which items share a batch.
        rng: Seeded generator for the shuffles.

    Returns:
        The batches in shuffled order; every index exactly once.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if bucket < 1:
        raise ValueError(f"bucket must be >= 1, got {bucket}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start : start + bucket], key=lambda i: (lengths[i], i))
        current: list[int] = []
        longest = 0
        for index in chunk:
            width = max(longest, lengths[index])
            if current and width * (len(current) + 1) > max_tokens:
                batches.append(current)
                current, width = [], lengths[index]
            current.append(index)
            longest = width
        if current:
            batches.append(current)
    rng.shuffle(batches)
    return batches


def _cost(batch: Sequence[int], lengths: Sequence[int]) -> int:
    return len(batch) * max(lengths[i] for i in batch)


def _fit_count(batches: list[list[int]], count: int, lengths: Sequence[int]) -> list[list[int]]:
    """Merge the cheapest neighbours / split the largest until there are ``count`` batches."""
    batches = [list(b) for b in batches]
    while len(batches) > count and len(batches) > 1:
        k = min(
            range(len(batches) - 1),
            key=lambda j: _cost(batches[j] + batches[j + 1], lengths),
        )
        batches[k : k + 2] = [batches[k] + batches[k + 1]]
    while len(batches) < count:
        k = max(range(len(batches)), key=lambda j: (len(batches[j]), _cost(batches[j], lengths)))
        if len(batches[k]) < 2:
            break  # fewer items than batches: nothing left to split
        ordered = sorted(batches[k], key=lambda i: lengths[i])
        half = len(ordered) // 2
        batches[k : k + 1] = [ordered[:half], ordered[half:]]
    return batches


class TokenBudgetBatchSampler:
    """A ``DataLoader`` batch sampler of length-bucketed batches within a token budget.

    Args:
        lengths: Returns the tokens of each item of the *current* epoch (called once per epoch,
            after :meth:`set_epoch`, so a dataset that re-draws its pairs is measured anew).
        max_tokens: Most padded tokens per batch.
        bucket: Items sorted together (see :func:`pack_batches`).
        seed: Base seed; epoch ``e`` packs with ``seed + e``.
        on_epoch: Called with the epoch number before measuring (e.g. the dataset's
            ``set_epoch``, so that the pairs are re-drawn before their lengths are read).

    Every epoch yields as many batches as the first (see the module doc).
    """

    def __init__(
        self,
        lengths: Callable[[], Sequence[int]],
        *,
        max_tokens: int,
        bucket: int = 512,
        seed: int = 0,
        on_epoch: Callable[[int], None] | None = None,
    ) -> None:
        self._lengths = lengths
        self.max_tokens = int(max_tokens)
        self.bucket = int(bucket)
        self.seed = int(seed)
        self.on_epoch = on_epoch
        self.epoch = 0
        self._count: int | None = None
        self._batches: list[list[int]] | None = None
        self._batches_epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s pairs and shuffle (the ``Trainer`` calls this)."""
        self.epoch = int(epoch)

    def _plan(self) -> list[list[int]]:
        if self._batches is not None and self._batches_epoch == self.epoch:
            return self._batches
        if self.on_epoch is not None:
            self.on_epoch(self.epoch)
        lengths = list(self._lengths())
        if not lengths:
            raise ValueError("no items to batch")
        batches = pack_batches(
            lengths,
            max_tokens=self.max_tokens,
            bucket=self.bucket,
            rng=random.Random(self.seed + self.epoch),
        )
        if self._count is None:
            self._count = len(batches)
        else:
            batches = _fit_count(batches, self._count, lengths)
        self._batches, self._batches_epoch = batches, self.epoch
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._plan()

    def __len__(self) -> int:
        return len(self._plan()) if self._count is None else self._count

    def padding_ratio(self) -> float:
        """Padded tokens / real tokens of the current epoch's batches (1.0: no padding)."""
        lengths = list(self._lengths())
        batches = self._plan()
        real = sum(lengths)
        return sum(_cost(b, lengths) for b in batches) / real if real else 1.0
