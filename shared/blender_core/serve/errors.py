"""Errors the gateway answers with, in OpenAI's JSON error shape.

Every error body is ``{"error": {"message", "type", "param", "code"}}`` so that OpenAI clients
raise their usual exception types (``BadRequestError``, ``AuthenticationError``,
``RateLimitError``...) with a readable message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ApiError", "error_body"]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
    499: "client_closed_request",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


def error_body(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of an error response."""
    error: dict[str, Any] = {
        "message": message,
        "type": _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": param,
        "code": code,
    }
    if extra:
        error.update(extra)
    return {"error": error}


class ApiError(Exception):
    """An HTTP error answered as OpenAI-style JSON.

    Args:
        status: HTTP status code.
        message: What went wrong, for the client (never a secret).
        param: The request field at fault, if any (``messages[0].content``).
        code: A short machine-readable code (``model_not_found``, ``body_too_large``...).
        headers: Extra response headers (``Retry-After``, ``WWW-Authenticate``).
        extra: Extra fields of the error object (``failures`` of a 502).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        return error_body(
            self.status, self.message, param=self.param, code=self.code, extra=self.extra
        )
