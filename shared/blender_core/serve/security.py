"""Bearer keys compared in constant time, and secrets kept out of everything the server sends."""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable

from blender_core.secrets import redact

__all__ = ["Scrubber", "bearer_matches"]

_BEARER = re.compile(r"^\s*Bearer\s+(\S+)\s*$", re.IGNORECASE)


def bearer_matches(header: str | None, key: str) -> bool:
    """Whether an ``Authorization`` header carries ``key`` (``hmac.compare_digest``)."""
    if not header:
        return False
    match = _BEARER.match(header)
    if match is None:
        return False
    return hmac.compare_digest(match.group(1).encode("utf-8"), key.encode("utf-8"))


class Scrubber:
    """:func:`blender_core.secrets.redact` with the server's known secrets (member keys,
    credentials in member URLs, the server's own key), applied to every error message, failure,
    log line and metric label the server emits."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(s for s in secrets if s)

    def __call__(self, text: str) -> str:
        return redact(text, self.secrets)
