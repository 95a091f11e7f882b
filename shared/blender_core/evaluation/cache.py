"""A content-addressed cache of metric scores.

A score is stored under the SHA-256 of (the metric's configuration, the candidate, the
reference), so the same text pair scored by the same metric configuration is never computed twice,
whichever record or method it comes from. The cache lives in memory and, optionally, in a JSONL
file that later runs read back. A damaged line (for example one cut short by a kill) is skipped
with a warning, and the next append starts on a fresh line; scores are strict JSON (``NaN`` is
stored as ``null``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from blender_core.io import dumps_json

__all__ = ["ScoreCache", "content_key", "model_key"]

logger = logging.getLogger(__name__)


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


_SAMPLE = 1 << 20


def model_key(model: str | Path) -> str:
    """The cache identity of a model: a hub id as is, a local folder by name and content.

    A local folder is named ``local:NAME:FINGERPRINT`` where the fingerprint hashes every file's
    relative path and size, small files (up to 2 MiB) whole and the first and last MiB of larger
    ones (weights): two different folders that share a name never share scores, while a moved
    or copied folder keeps its cache.
    """
    path = Path(model)
    if not path.is_dir():
        return str(model)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix()}\0{size}\0".encode())
        with file.open("rb") as handle:
            if size <= 2 * _SAMPLE:
                digest.update(handle.read())
            else:
                digest.update(handle.read(_SAMPLE))
                handle.seek(size - _SAMPLE)
                digest.update(handle.read(_SAMPLE))
    return f"local:{path.resolve().name}:{digest.hexdigest()[:16]}"


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
        self._needs_newline = False
        self.skipped = 0
        """Damaged lines skipped when the file was read."""
        if self.path is not None and self.path.is_file():
            self._load(self.path)

    def _load(self, path: Path) -> None:
        last = b"\n"
        with path.open("rb") as handle:
            for line_number, raw in enumerate(handle, start=1):
                last = raw
                if not raw.strip():
                    continue
                try:
                    entry = json.loads(raw.decode("utf-8"))
                    score = entry["score"]
                    if score is not None and (
                        isinstance(score, bool) or not isinstance(score, int | float)
                    ):
                        raise TypeError(f"score is {type(score).__name__}")
                    self._scores[str(entry["key"])] = math.nan if score is None else float(score)
                except (ValueError, KeyError, TypeError, RecursionError) as exc:
                    self.skipped += 1
                    logger.warning(
                        "%s:%d: skipped a damaged score cache line (%s); it will be recomputed",
                        path,
                        line_number,
                        exc,
                    )
        self._needs_newline = not last.endswith(b"\n")

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
                # Appending keeps earlier lines; a line cut by a kill is skipped on the next read.
                with self.path.open("a", encoding="utf-8") as handle:
                    if self._needs_newline:
                        handle.write("\n")
                        self._needs_newline = False
                    for key, value in new:
                        handle.write(dumps_json({"key": key, "score": value}) + "\n")
