"""A content-addressed cache of metric scores.

A score is stored under the SHA-256 of (the metric's configuration, the candidate, the
reference), so the same text pair scored by the same metric configuration is never computed twice,
whichever record or method it comes from. The cache lives in memory and, optionally, in a JSONL
file that later runs read back.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["ScoreCache", "content_key"]


def content_key(config: Mapping[str, Any], candidate: str, reference: str) -> str:
    """The cache key of one scored pair: SHA-256 over the config (as sorted JSON) and both texts."""
    digest = hashlib.sha256()
    digest.update(json.dumps(dict(config), sort_keys=True, default=str).encode("utf-8"))
    for text in (candidate, reference):
        encoded = text.encode("utf-8")
        # Length-prefix each text so that ("ab", "c") and ("a", "bc") never collide.
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


class ScoreCache:
    """Scores by content key, in memory and optionally persisted to a JSONL file.

    Args:
        path: A JSONL file of ``{"key": ..., "score": ...}`` lines; read when it exists and
            appended to by :meth:`update`. ``None`` keeps the cache in memory only.

    Example:
        .. code-block:: python

            cache = ScoreCache("cache/bertscore.jsonl")
            key = content_key({"metric": "bertscore"}, "candidate", "reference")
            cache.get(key)  # None the first time
            cache.update({key: 0.9})
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._scores: dict[str, float] = {}
        self._lock = threading.Lock()
        if self.path is not None and self.path.is_file():
            with self.path.open(encoding="utf-8") as handle:
                for line_number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        entry = json.loads(line)
                        self._scores[str(entry["key"])] = float(entry["score"])
                    except (ValueError, KeyError, TypeError) as exc:
                        raise ValueError(
                            f"{self.path}:{line_number}: not a score cache line ({exc})"
                        ) from exc

    def __len__(self) -> int:
        return len(self._scores)

    def __contains__(self, key: object) -> bool:
        return key in self._scores

    def get(self, key: str) -> float | None:
        """The cached score of ``key``, or ``None``."""
        return self._scores.get(key)

    def update(self, scores: Mapping[str, float] | Iterable[tuple[str, float]]) -> None:
        """Add scores (and append them to the file, if any)."""
        items = list(scores.items()) if isinstance(scores, Mapping) else list(scores)
        with self._lock:
            new = [(k, float(v)) for k, v in items if k not in self._scores]
            self._scores.update(new)
            if self.path is not None and new:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as handle:
                    for key, value in new:
                        handle.write(json.dumps({"key": key, "score": value}) + "\n")
