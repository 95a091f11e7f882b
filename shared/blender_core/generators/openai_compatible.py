"""OpenAI-compatible chat completion servers (vLLM, llama.cpp, Ollama, OpenAI...) over httpx."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any

import httpx

from blender_core.generators.base import BaseGenerator
from blender_core.generators.callable import _run_coroutine
from blender_core.generators.errors import GeneratorError, GeneratorTimeoutError
from blender_core.types import Prompt, chat_messages

__all__ = ["OpenAICompatibleGenerator"]

_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_BODY_EXCERPT = 500
_RETRY_BACKOFF = 0.5  # seconds, doubled after each retry


def _excerpt(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _BODY_EXCERPT else text[:_BODY_EXCERPT] + "..."


class _RetryableError(Exception):
    """Internal: a failure worth retrying (5xx, connection error), wrapping the final error."""

    def __init__(self, error: GeneratorError) -> None:
        super().__init__(str(error))
        self.error = error


class OpenAICompatibleGenerator(BaseGenerator):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint, sync and native async.

    Args:
        model: The model name the server expects.
        base_url: API root such as ``http://localhost:8000/v1``; defaults to ``OPENAI_BASE_URL``,
            then ``OPENAI_API_BASE``, then the OpenAI API.
        api_key: Bearer token; defaults to ``OPENAI_API_KEY``. No key is fine for local servers.
        name: Name in results; defaults to ``model``.
        system_prompt: Sent as a system message before the prompt (unless the chat has one).
        temperature: Sampling temperature (server default when ``None``).
        max_tokens: Maximum answer length (server default when ``None``).
        timeout: Total seconds for one call, from connecting to the last byte of the answer,
            retries and their waits included (``None``: no limit). A server that sends its answer
            one byte at a time still fails at this deadline.
        max_retries: Retries on 5xx responses and connection errors (not on timeouts or 4xx).
        extra_body: Extra JSON fields merged into every request body (e.g. ``{"seed": 0}``).
        max_response_bytes: Most bytes of a response body read (decoded; 8 MiB by default): a
            longer body, or a ``Content-Length`` above it, raises :class:`GeneratorError` naming
            the cap, so memory stays bounded whatever the server sends.

    Raises (from :meth:`generate` / :meth:`agenerate`):
        GeneratorError: HTTP error status (``.status_code`` and a body excerpt), connection
            failure or malformed response.
        GeneratorTimeoutError: the request ran past ``timeout`` (also a ``TimeoutError``).

    Example:
        .. code-block:: python

            from blender_core import OpenAICompatibleGenerator

            llama = OpenAICompatibleGenerator("llama3.2", base_url="http://localhost:11434/v1")
            llama.generate("Name three primes.")
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        name: str | None = None,
        system_prompt: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = 60.0,
        max_retries: int = 0,
        max_response_bytes: int = 8 * 2**20,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty string")
        super().__init__(name or model)
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive or None, got {timeout}")
        self.model = model
        self.base_url = (
            base_url
            or os.environ.get("OPENAI_BASE_URL")
            or os.environ.get("OPENAI_API_BASE")
            or _DEFAULT_BASE_URL
        ).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        if isinstance(max_response_bytes, bool) or not isinstance(max_response_bytes, int):
            raise ValueError(f"max_response_bytes must be an int, got {max_response_bytes!r}")
        if max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be >= 1, got {max_response_bytes}")
        self.max_response_bytes = max_response_bytes
        self.extra_body = dict(extra_body or {})

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _messages(self, prompt: Prompt) -> list[dict[str, str]]:
        return chat_messages(prompt, self.system_prompt)

    def build_body(self, prompt: Prompt, **kwargs: Any) -> dict[str, Any]:
        """The JSON body sent for ``prompt``; keyword arguments override body fields."""
        body: dict[str, Any] = {"model": self.model, "messages": self._messages(prompt)}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        body.update(self.extra_body)
        if "max_new_tokens" in kwargs:  # the generator-wide name for the answer length
            kwargs.setdefault("max_tokens", kwargs.pop("max_new_tokens"))
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        body.update(kwargs)
        return body

    def _parse(self, status_code: int, raw: bytes) -> str:
        text = raw.decode("utf-8", errors="replace")
        if status_code >= 400:
            error = GeneratorError(
                f"{self.name}: HTTP {status_code} from {self.url}: {_excerpt(text)}",
                status_code=status_code,
                body=_excerpt(text),
            )
            raise _RetryableError(error) if status_code >= 500 else error
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise GeneratorError(
                f"{self.name}: malformed response from {self.url}: not JSON: {_excerpt(text)!r}",
                status_code=status_code,
                body=_excerpt(text),
            ) from exc
        problem = None
        content: Any = None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            problem = "no 'choices' list"
        elif not data["choices"]:
            problem = "empty 'choices'"
        else:
            first = data["choices"][0]
            message = first.get("message") if isinstance(first, dict) else None
            if not isinstance(message, dict):
                problem = "no 'message' in choices[0]"
            else:
                content = message.get("content")
                if not isinstance(content, str):
                    problem = "choices[0].message.content is missing or not a string"
        if problem is not None:
            raise GeneratorError(
                f"{self.name}: malformed response from {self.url}: {problem}: {_excerpt(text)}",
                status_code=status_code,
                body=_excerpt(text),
            )
        return str(content)

    async def _read(self, response: httpx.Response) -> bytes:
        """The body, read in chunks and never past ``max_response_bytes``."""
        cap = self.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_big(f"Content-Length {declared}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise self._too_big(f"more than {cap} bytes read")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_big(self, what: str) -> GeneratorError:
        return GeneratorError(
            f"{self.name}: the response from {self.url} exceeds max_response_bytes="
            f"{self.max_response_bytes} ({what}); raise max_response_bytes if it is legitimate"
        )

    def _timeout_error(self, exc: Exception) -> GeneratorTimeoutError:
        return GeneratorTimeoutError(
            f"{self.name}: no answer from {self.url} within the timeout of {self.timeout} s "
            f"({type(exc).__name__})"
        )

    def _connect_error(self, exc: Exception) -> _RetryableError:
        return _RetryableError(
            GeneratorError(f"{self.name}: cannot reach {self.url}: {type(exc).__name__}: {exc}")
        )

    def generate(self, prompt: Prompt, **kwargs: Any) -> str:
        # httpx's sync timeouts bound each read, not the request: the async path under one
        # asyncio deadline (in a private event loop) is what bounds the whole call.
        body = self.build_body(prompt, **kwargs)
        return str(_run_coroutine(self._bounded(body)))

    async def agenerate(self, prompt: Prompt, **kwargs: Any) -> str:
        return await self._bounded(self.build_body(prompt, **kwargs))

    async def _bounded(self, body: dict[str, Any]) -> str:
        """:meth:`_post` under the total deadline ``timeout``."""
        try:
            async with asyncio.timeout(self.timeout) as scope:
                return await self._post(body)
        except TimeoutError as exc:
            if scope.expired():
                raise self._timeout_error(exc) from None
            raise

    async def _post(self, body: dict[str, Any]) -> str:
        delay = _RETRY_BACKOFF
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for attempt in range(self.max_retries + 1):
                try:
                    try:
                        async with client.stream(
                            "POST", self.url, json=body, headers=self._headers()
                        ) as response:
                            status_code, raw = response.status_code, await self._read(response)
                    except httpx.TimeoutException as exc:
                        raise self._timeout_error(exc) from exc
                    except httpx.TransportError as exc:
                        raise self._connect_error(exc) from exc
                    return self._parse(status_code, raw)
                except _RetryableError as retry:
                    if attempt == self.max_retries:
                        raise retry.error from retry.__cause__
                    await asyncio.sleep(delay)
                    delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def __repr__(self) -> str:
        return (
            f"OpenAICompatibleGenerator(model={self.model!r}, name={self.name!r}, "
            f"base_url={self.base_url!r})"
        )
