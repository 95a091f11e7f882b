"""The gateway's guards: bearer keys, the host check without a key, and secrets kept out of
everything the server sends or logs.

- :func:`bearer_matches` compares SHA-256 digests of the presented and the expected key with
  :func:`hmac.compare_digest`, so that neither the comparison time nor an early length check
  tells anything about the key.
- :func:`host_allowed` is the DNS-rebinding guard used when no key is set: a page on
  ``attacker.example`` whose name was pointed at 127.0.0.1 still sends ``Host:
  attacker.example`` (and its ``Origin``), which is not one of the configured names.
- :class:`Scrubber` redacts known secrets from text; :class:`StreamScrubber` does it for text
  that arrives in pieces (a secret split over two deltas is still caught).
- :class:`AccessLogFilter` blanks query values in uvicorn's access log lines.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from blender_core.secrets import redact

__all__ = [
    "AccessLogFilter",
    "Scrubber",
    "StreamScrubber",
    "basic_matches",
    "bearer_matches",
    "host_allowed",
    "redact_query",
]

_BEARER = re.compile(r"^\s*Bearer\s+(\S+)\s*$", re.IGNORECASE)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def bearer_matches(header: str | None, key: str) -> bool:
    """Whether an ``Authorization`` header carries ``key``.

    Both sides are hashed first (SHA-256) and the digests compared with
    :func:`hmac.compare_digest`: equal lengths always, so the key's length does not leak.
    """
    if not header:
        return False
    match = _BEARER.match(header)
    if match is None:
        return False
    return hmac.compare_digest(_digest(match.group(1)), _digest(key))


def basic_matches(header: str | None, key: str) -> bool:
    """Whether an ``Authorization: Basic`` header carries ``key`` as its password (any user
    name), compared as :func:`bearer_matches` does."""
    if not header:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return False
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    _, sep, password = decoded.partition(":")
    if not sep:
        return False
    return hmac.compare_digest(_digest(password), _digest(key))


def _host_name(value: str) -> str | None:
    """The host name of a ``Host`` header value (``name[:port]``, ``[v6]:port``)."""
    value = value.strip()
    if not value:
        return None
    try:
        parts = urlsplit(f"//{value}")
        name = parts.hostname
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return None
    return name.lower() if name else None


def host_allowed(host: str | None, origin: str | None, names: frozenset[str] | None) -> bool:
    """Whether ``Host`` (and ``Origin``, when sent) name one of ``names`` (``None``: any).

    A request without ``Host`` is refused (HTTP/1.1 requires it). ``Origin: null`` (a
    sandboxed page or a file) is refused too.
    """
    if names is None:
        return True
    name = _host_name(host or "")
    if name is None or name not in names:
        return False
    if origin is not None:
        try:
            origin_name = urlsplit(origin.strip()).hostname
        except ValueError:
            return False
        if not origin_name or origin_name.lower() not in names:
            return False
    return True


class Scrubber:
    """:func:`blender_core.secrets.redact` with the server's known secrets (member keys,
    credentials in member URLs, the server's own key), applied to every answer, error message,
    failure, log line and metric label the server emits."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        return redact(text, self.secrets)

    def stream(self) -> StreamScrubber:
        """A scrubber for one streamed text."""
        return StreamScrubber(self)


class StreamScrubber:
    """Scrubs a text that arrives in pieces: holds back an end of the text that could be the
    start of a known secret until the next piece (or :meth:`flush`) shows what follows.

    Only such an end is held back, so ordinary text streams piece by piece. (Shapes that
    :func:`~blender_core.secrets.redact` finds without knowing them, ``sk-...`` keys, are
    caught within a piece.)
    """

    def __init__(self, scrub: Scrubber) -> None:
        self.scrub = scrub
        self.pending = ""

    def _partial(self, text: str) -> int:
        """Length of the longest end of ``text`` that begins a known secret."""
        best = 0
        for secret in self.scrub.secrets:
            for n in range(min(len(secret) - 1, len(text)), best, -1):
                if text.endswith(secret[:n]):
                    best = n
                    break
        return best

    def feed(self, piece: str) -> str:
        """The text that is safe to send now (possibly ``""``)."""
        text = self.scrub(self.pending + piece)
        hold = self._partial(text)
        cut = len(text) - hold
        out, self.pending = text[:cut], text[cut:]
        return out

    def flush(self) -> str:
        """What is left at the end of the text."""
        out, self.pending = self.scrub(self.pending), ""
        return out


def redact_query(target: str) -> str:
    """A request target with every query value blanked (``/v1/x?api_key=***&b=***``)."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    names = [item.partition("=")[0] for item in query.split("&") if item]
    return path + "?" + "&".join(f"{name}=***" for name in names)


class AccessLogFilter(logging.Filter):
    """Blanks query values and known secrets in uvicorn's access log lines.

    uvicorn logs ``'%s - "%s %s HTTP/%s" %d'`` with the full path and query as the third
    argument; a client that put a key in the query string would otherwise have it logged.
    """

    def __init__(self, scrub: Scrubber) -> None:
        super().__init__()
        self.scrub = scrub

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], self.scrub(redact_query(args[2])), *args[3:])
        return True
