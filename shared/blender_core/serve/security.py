"""Bearer keys compared in constant time, and scrubbing secrets out of outgoing text."""

from __future__ import annotations

import hmac
import importlib
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["Scrubber", "bearer_matches"]

_BEARER = re.compile(r"^\s*Bearer\s+(\S+)\s*$", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>https?://)[^/\s@:]+(?::[^/\s@]*)?@", re.IGNORECASE)
_TOKENISH = re.compile(
    r"(?i)\b(bearer\s+|(?:api[_-]?key|token|secret|password|key)=)[A-Za-z0-9._~+/=-]{8,}"
)


def bearer_matches(header: str | None, key: str) -> bool:
    """Whether an ``Authorization`` header carries ``key`` (``hmac.compare_digest``)."""
    if not header:
        return False
    match = _BEARER.match(header)
    if match is None:
        return False
    return hmac.compare_digest(match.group(1).encode("utf-8"), key.encode("utf-8"))


class Scrubber:
    """Removes secrets from text before it leaves the server (responses, logs, metrics).

    Known secrets (member keys, credentials of member URLs, the server's own key) are replaced by
    ``***``; so are credentials written into any URL (``https://user:pw@host``) and bearer or
    ``key=`` tokens. :func:`blender_core.secrets.redact` runs too when it is available.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        try:  # the core's redaction, where this version has it
            core_secrets = importlib.import_module("blender_core.secrets")
        except ImportError:
            core_secrets = None
        self._redact: Any = getattr(core_secrets, "redact", None)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
        text = _TOKENISH.sub(r"\1***", text)
        if self._redact is not None:
            text = str(self._redact(text))
        return text
