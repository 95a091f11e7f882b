"""A bounded LRU cache of pair logits, keyed by model identity, precision and exact token ids.

Re-ranking the same candidates (a RAG rerank of the same nodes, a judge run resumed, a blend
repeated) then costs no forward pass. The key is a SHA-256 of the ranker's identity (config,
a fingerprint of its weights, device type and dtype) and of the pair's token ids, so a logit is
only reused for the very same input to the very same model in the same precision. The cache
belongs to one ranker: if you change the model's weights in place, call :meth:`clear`.

Example:
    .. code-block:: python

        from blender_core import PairRanker
        from blender_core.pair_cache import PairLogitCache

        ranker = PairRanker.from_pretrained("llm-blender/PairRM", cache=PairLogitCache(100_000))
        ranker.rank("Say hi", ["hi!", "go away"])
        ranker.rank("Say hi", ["hi!", "go away"])  # no forward pass
        ranker.stats.cache_hits  # 2
"""

from __future__ import annotations

import hashlib
import sys
import threading
from array import array
from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["ENTRY_OVERHEAD_BYTES", "PairLogitCache"]

#: Bytes counted per entry besides its key and value (the ordered-dict slot and links).
ENTRY_OVERHEAD_BYTES = 100


class PairLogitCache:
    """LRU of ``logit(a, b)`` bounded by entries and by bytes (thread-safe).

    Args:
        max_entries: Most logits kept.
        max_bytes: Most bytes kept (keys, values and :data:`ENTRY_OVERHEAD_BYTES` each).

    Attributes:
        hits: Lookups answered.
        misses: Lookups not answered.
    """

    def __init__(self, max_entries: int = 1_000_000, max_bytes: int = 256 * 2**20) -> None:
        for name, value in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[bytes, float] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def key(model_key: bytes, ids: Sequence[int]) -> bytes:
        """The cache key of one encoded pair for the model identified by ``model_key``."""
        digest = hashlib.sha256(model_key)
        digest.update(array("q", ids).tobytes())
        return digest.digest()

    @staticmethod
    def _size(key: bytes, value: float) -> int:
        return sys.getsizeof(key) + sys.getsizeof(value) + ENTRY_OVERHEAD_BYTES

    def get(self, key: bytes) -> float | None:
        """The cached logit, or ``None``; counts a hit or a miss."""
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: bytes, value: float) -> None:
        """Store a logit, evicting the least recently used ones beyond the bounds."""
        size = self._size(key, value)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= self._size(key, old)
            if size > self.max_bytes:
                return
            self._data[key] = float(value)
            self._bytes += size
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                evicted, value_out = self._data.popitem(last=False)
                self._bytes -= self._size(evicted, value_out)

    def clear(self) -> None:
        """Forget every logit (keeps the hit/miss counts)."""
        with self._lock:
            self._data.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes counted for the entries held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return (
            f"PairLogitCache({len(self)}/{self.max_entries} entries, "
            f"{self._bytes}/{self.max_bytes} bytes, hits={self.hits}, misses={self.misses})"
        )
