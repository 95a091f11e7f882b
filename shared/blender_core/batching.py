"""Token-budget batching with length-sorted buckets (pure Python).

Sequences are sorted by length (longest first, so that an out-of-memory error shows at once) and
cut into contiguous batches whose padded size ``len(batch) * longest`` stays within
``batch_tokens``. Where to cut is chosen by dynamic programming: it minimises the computed
(padded) tokens plus a fixed cost per forward pass, so a batch ends where lengths drop sharply
instead of being filled to the budget with much shorter sequences. A sequence longer than the
budget gets a batch of its own. Because every pair is truncated on its
own and padded at the end, the scores do not depend on which batch a pair lands in.

:func:`plan_bucketed_batches` is the plan :class:`~blender_core.pair_ranker.PairRanker` runs:
each sequence is padded to a width that depends on its own length only (:func:`bucket_width`,
at most 1/16 more than the length) and a batch holds sequences of one width. The kernels then
see the same shapes for a pair whatever its neighbours, which makes its logit bit-identical
whether it is scored alone or among other callers' pairs (see :mod:`blender_core.pair_scheduler`).

Example:
    .. code-block:: python

        from blender_core.batching import plan_batches, padding_efficiency

        batches = plan_batches([30, 500, 480, 25], batch_tokens=1024)  # [[1, 2], [0, 3]]
        padding_efficiency([30, 500, 480, 25], batches)  # real tokens / computed tokens
        plan_bucketed_batches([30, 500, 480, 25], 1024)  # [(512, [1]), (480, [2]), (32, [0, 3])]
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BUCKET_MIN_STEP",
    "DEFAULT_BATCH_TOKENS",
    "PASS_COST_TOKENS",
    "bucket_width",
    "padding_efficiency",
    "plan_batches",
    "plan_bucketed_batches",
]

#: Padded tokens per forward pass. At PairRM's longest pair (2048 tokens) this is 4 sequences; the
#: attention scores of deberta-v3-large then take about 2 GB in fp32, so memory stays bounded on CPU
#: and on small GPUs while batches of typical answers (200-500 tokens) hold 16-40 pairs.
DEFAULT_BATCH_TOKENS = 8192

#: The cost of one forward pass beyond its tokens, in tokens, when choosing where to cut batches:
#: higher values give fewer, fuller batches; zero would give one sequence per batch.
PASS_COST_TOKENS = 256

#: Smallest rounding step of :func:`bucket_width` (tokens).
BUCKET_MIN_STEP = 8


def plan_batches(
    lengths: Sequence[int],
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    *,
    max_batch_size: int | None = None,
) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches, longest first, each within the token budget.

    Args:
        lengths: Length (tokens) of each sequence.
        batch_tokens: Budget of padded tokens (``batch size * longest length``) per batch.
        max_batch_size: Optional cap on sequences per batch.
    """
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    widths = [max(int(lengths[i]), 1) for i in order]
    n = len(order)
    # best[j]: least cost of batching the j longest sequences; cut[j]: where its last batch starts.
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for start in range(n):
        width = widths[start]  # sorted: the first of a batch is its longest
        limit = max(1, batch_tokens // width)
        if max_batch_size is not None:
            limit = min(limit, max_batch_size)
        for size in range(1, min(limit, n - start) + 1):
            cost = best[start] + size * width + PASS_COST_TOKENS
            if cost <= best[start + size]:  # ties: fill the earlier batches
                best[start + size] = cost
                cut[start + size] = start
    batches: list[list[int]] = []
    end = n
    while end > 0:
        start = cut[end]
        batches.append(order[start:end])
        end = start
    batches.reverse()
    return batches


def padding_efficiency(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Real tokens / computed (padded) tokens over ``batches``; 1.0 when nothing is computed."""
    real = sum(lengths[i] for batch in batches for i in batch)
    computed = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches if batch)
    return real / computed if computed else 1.0


def bucket_width(length: int) -> int:
    """The padded width of a sequence of ``length`` tokens: rounded up to a step of 1/16 of
    its power of two (``BUCKET_MIN_STEP`` at least), so padding adds at most 6.25%.

    Examples: 5 -> 8, 300 -> 304, 1024 -> 1024, 1025 -> 1088, 2048 -> 2048.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be an int >= 0, got {length!r}")
    length = max(length, 1)
    step = max(BUCKET_MIN_STEP, 1 << max(0, length.bit_length() - 5))
    return -(-length // step) * step


def plan_bucketed_batches(
    lengths: Sequence[int],
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    *,
    max_batch_size: int | None = None,
) -> list[tuple[int, list[int]]]:
    """``(width, indices)`` batches: sequences of one :func:`bucket_width` each, widest first.

    A batch holds at most ``max(1, batch_tokens // width)`` sequences (and ``max_batch_size``);
    the sequences of a width are split into batches of near-equal sizes, in input order.
    """
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    groups: dict[int, list[int]] = {}
    for i, length in enumerate(lengths):
        groups.setdefault(bucket_width(int(length)), []).append(i)
    plan: list[tuple[int, list[int]]] = []
    for width in sorted(groups, reverse=True):
        members = groups[width]
        limit = max(1, batch_tokens // width)
        if max_batch_size is not None:
            limit = min(limit, max_batch_size)
        count = -(-len(members) // limit)
        size, extra = divmod(len(members), count)
        start = 0
        for b in range(count):
            end = start + size + (1 if b < extra else 0)
            plan.append((width, members[start:end]))
            start = end
    return plan
