"""Keys that stay home: a holder that never shows its value, and one redaction helper.

:class:`Secret` holds an API key: its ``repr``/``str`` are masked, it has no ``__dict__`` (so
``vars`` shows nothing) and it refuses to be pickled. :func:`redact` removes credentials from any
text before it goes into an error message, a log line, a ``repr`` or result metadata: the given
secret values, URL credentials (``user:pass@``), the values of ``Authorization`` / ``api-key``
style headers and fields, ``Bearer`` tokens and OpenAI-style ``sk-...`` keys.

Example:
    .. code-block:: python

        from blender_core.secrets import Secret, redact

        key = Secret("sk-live-123456")
        repr(key)  # "Secret('***')"
        redact("401: got 'Authorization: Bearer sk-live-123456'", [key])
        # "401: got 'Authorization: Bearer ***'"
        redact("cannot reach https://bob:hunter2@example.com/v1")
        # 'cannot reach https://***@example.com/v1'
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Iterable
from typing import Any, NoReturn
from urllib.parse import quote

__all__ = [
    "REDACTED",
    "InsecureTransportWarning",
    "Secret",
    "is_loopback_host",
    "redact",
    "secret_value",
]

REDACTED = "***"
"""What every redacted credential is replaced with."""

_MIN_SECRET = 4
"""Secret values shorter than this are not searched for in text (they would blank common words)."""

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#]*@")
_HEADER_VALUE = re.compile(
    r"(?i)((?:proxy-)?authorization|x-api-key|api[-_]?key|x-goog-api-key|access[-_]token)"
    r"([\"']?\s*[:=]\s*[\"']?)"
    r"((?:bearer|basic|token)\s+)?"
    r"[^\s\"',;&}\]]+"
)
_QUERY_VALUE = re.compile(r"(?i)([?&](?:key|token|password|sig|signature)=)[^&\s#\"']+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{6,}")
_OPENAI_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")


class InsecureTransportWarning(UserWarning):
    """A key would travel in clear text (plain ``http://`` to a host other than this machine)."""


class Secret:
    """A secret string (an API key) that never shows in ``repr``, ``str``, ``vars`` or a pickle.

    ``pickle.dumps`` raises ``TypeError``: a key must be supplied again in the process that
    uses it (e.g. from its own environment). Copies (``copy.copy`` / ``deepcopy``) are the same
    object. Comparison with another :class:`Secret` is constant-time.

    Args:
        value: The secret text.

    Example:
        .. code-block:: python

            key = Secret(os.environ["MY_KEY"])
            headers = {"Authorization": f"Bearer {key.get_secret_value()}"}
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, got {type(value).__name__}")
        object.__setattr__(self, "_value", value)

    def get_secret_value(self) -> str:
        """The secret text (the name pydantic's ``SecretStr`` uses too)."""
        value: str = object.__getattribute__(self, "_value")
        return value

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("a Secret is immutable")

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __bool__(self) -> bool:
        return bool(self.get_secret_value())

    def __len__(self) -> int:
        return len(self.get_secret_value())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(
            self.get_secret_value().encode(), other.get_secret_value().encode()
        )

    def __hash__(self) -> int:
        return hash((Secret, self.get_secret_value()))

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(
            "a Secret is never pickled: supply the key again in the process that uses it "
            "(for example from that process's environment)"
        )

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


def secret_value(secret: str | Secret | Any | None) -> str | None:
    """The text of ``secret``: a ``str``, a :class:`Secret`, anything with ``get_secret_value()``
    (pydantic's ``SecretStr``), or ``None``."""
    if secret is None or isinstance(secret, str):
        return secret
    getter = getattr(secret, "get_secret_value", None)
    if callable(getter):
        value = getter()
        if isinstance(value, str):
            return value
    raise TypeError(f"expected a str or a secret string, got {type(secret).__name__}")


def redact(text: str, secrets: Iterable[str | Secret | Any | None] = ()) -> str:
    """``text`` without credentials, each replaced with ``***``.

    Removed: every value in ``secrets`` (also URL-encoded; values under 4 characters are
    skipped), URL credentials (``scheme://user:pass@`` -> ``scheme://***@``), the values of
    ``Authorization``, ``Proxy-Authorization``, ``api-key``, ``x-api-key``, ``api_key`` and
    ``access_token`` headers or fields (``Bearer``/``Basic`` kept), ``key=``/``token=``/
    ``password=`` query parameters, ``Bearer`` tokens and OpenAI-style ``sk-...`` keys.

    Args:
        text: Any text (an error message, a response body, a URL).
        secrets: Known secret values to remove wherever they appear, whatever their shape.

    Returns:
        The redacted text (unchanged when it holds no credential).
    """
    for secret in secrets:
        value = secret_value(secret)
        if not value or len(value) < _MIN_SECRET:
            continue
        for form in {value, quote(value, safe="")}:
            text = text.replace(form, REDACTED)
    text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _HEADER_VALUE.sub(rf"\1\2\3{REDACTED}", text)
    text = _QUERY_VALUE.sub(rf"\1{REDACTED}", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    return _OPENAI_KEY.sub(REDACTED, text)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an IP address, brackets allowed) is this machine."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
