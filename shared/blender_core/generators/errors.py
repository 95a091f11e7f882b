"""Errors raised by generator adapters."""

from __future__ import annotations

from blender_core.secrets import redact

__all__ = ["GeneratorError", "GeneratorTimeoutError"]


class GeneratorError(RuntimeError):
    """A base model call failed (HTTP error, malformed response, bad return value...).

    The message and the body excerpt pass through :func:`~blender_core.secrets.redact`
    (URL credentials, ``Authorization``/``api-key`` values, bearer tokens): an adapter that
    knows its key removes it too, before it builds the error.

    Attributes:
        status_code: The HTTP status code, when the failure is an HTTP error response.
        body: An excerpt of the response body, when there is one.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, body: str | None = None
    ) -> None:
        super().__init__(redact(message))
        self.status_code = status_code
        self.body = None if body is None else redact(body)


class GeneratorTimeoutError(GeneratorError, TimeoutError):
    """A base model call ran past its timeout (a :class:`GeneratorError` and a ``TimeoutError``)."""
