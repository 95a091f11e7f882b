"""Errors raised by generator adapters."""

from __future__ import annotations

__all__ = ["GeneratorError", "GeneratorTimeoutError"]


class GeneratorError(RuntimeError):
    """A base model call failed (HTTP error, malformed response, bad return value...).

    Attributes:
        status_code: The HTTP status code, when the failure is an HTTP error response.
        body: An excerpt of the response body, when there is one.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, body: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class GeneratorTimeoutError(GeneratorError, TimeoutError):
    """A base model call ran past its timeout (a :class:`GeneratorError` and a ``TimeoutError``)."""
