"""OpenAI-compatible chat completion servers (vLLM, llama.cpp, Ollama, OpenAI...) over httpx."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import warnings
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from blender_core.generators.base import BaseGenerator
from blender_core.generators.callable import _run_coroutine
from blender_core.generators.errors import GeneratorError, GeneratorTimeoutError
from blender_core.secrets import (
    InsecureTransportWarning,
    Secret,
    is_loopback_host,
    redact,
    secret_value,
)
from blender_core.types import Prompt, chat_messages

__all__ = ["OpenAICompatibleGenerator"]

_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_DEFAULT_KEY_HOST = "api.openai.com"
_DEFAULT_KEY_ENV = "OPENAI_API_KEY"
_BODY_EXCERPT = 500
_REDACT_MARGIN = 256
_RETRY_BACKOFF = 0.5  # seconds, doubled after each retry


def _excerpt(text: str, secrets: list[str]) -> str:
    """The first ``_BODY_EXCERPT`` characters of ``text``, redacted before the cut (so that a
    key that straddles the cut cannot leave its first half behind)."""
    margin = _REDACT_MARGIN + max((len(s) for s in secrets), default=0)
    text = redact(text.strip()[: _BODY_EXCERPT + margin], secrets)
    return text if len(text) <= _BODY_EXCERPT else text[:_BODY_EXCERPT] + "..."


def _split_base_url(raw: str) -> tuple[str, tuple[str, Secret] | None]:
    """``raw`` without its ``user:password@`` part, and that part (``None`` when absent)."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("base_url must be a non-empty URL")
    try:
        parts = urlsplit(raw.strip())
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"base_url is not a valid URL: {redact(raw)!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(
            f"base_url must be an http:// or https:// URL with a host, got {redact(raw)!r}"
        )
    auth = None
    if "@" in parts.netloc:
        auth = (unquote(parts.username or ""), Secret(unquote(parts.password or "")))
    clean = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return clean.rstrip("/"), auth


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
            then ``OPENAI_API_BASE``, then the OpenAI API. Credentials in it
            (``https://user:pass@host/v1``) are taken out of the URL and sent as HTTP Basic
            auth; :attr:`base_url`, ``repr`` and messages show the URL without them.
        api_key: Bearer token (a ``str``, a :class:`~blender_core.secrets.Secret` or pydantic's
            ``SecretStr``), sent to ``base_url`` whatever its host. No key is fine for local
            servers.
        api_key_env: Name of an environment variable to read the key from, sent to
            ``base_url`` whatever its host (the explicit opt-in; ``ValueError`` when it is
            unset). Without ``api_key`` and ``api_key_env`` the key is ``OPENAI_API_KEY``
            only when ``base_url`` is the OpenAI API (``https://api.openai.com``): the
            environment's key never goes to another server unasked.
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

    The key is held as a :class:`~blender_core.secrets.Secret`: it never shows in ``repr``,
    ``vars`` or messages (:func:`~blender_core.secrets.redact` removes it, URL credentials and
    ``Authorization``/``api-key`` values from every error, including a response body that echoes
    them). A pickled generator carries no key: one read from ``api_key_env`` or
    ``OPENAI_API_KEY`` is read again from the unpickling process's environment; an explicit
    ``api_key`` is dropped and calls then fail with a :class:`GeneratorError` saying so.
    A key (or URL credentials) sent over plain ``http://`` to a host other than this machine
    gives an :class:`~blender_core.secrets.InsecureTransportWarning`. Redirects are not
    followed (the key would go with them): a 3xx answer is a :class:`GeneratorError` naming
    the ``Location``.

    Raises (from :meth:`generate` / :meth:`agenerate`):
        GeneratorError: HTTP error status (``.status_code`` and a body excerpt), connection
            failure or malformed response.
        GeneratorTimeoutError: the request ran past ``timeout`` (also a ``TimeoutError``).

    Example:
        .. code-block:: python

            from blender_core import OpenAICompatibleGenerator

            llama = OpenAICompatibleGenerator("llama3.2", base_url="http://localhost:11434/v1")
            llama.generate("Name three primes.")
            vllm = OpenAICompatibleGenerator(
                "qwen", base_url="https://vllm.internal/v1", api_key_env="VLLM_API_KEY"
            )
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | Secret | Any | None = None,
        api_key_env: str | None = None,
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
        if api_key_env is not None and (not isinstance(api_key_env, str) or not api_key_env):
            raise ValueError("api_key_env must be the name of an environment variable")
        self.model = model
        self.base_url, self._url_auth = _split_base_url(
            base_url
            or os.environ.get("OPENAI_BASE_URL")
            or os.environ.get("OPENAI_API_BASE")
            or _DEFAULT_BASE_URL
        )
        self._key_env = api_key_env
        self._key_dropped = False
        if api_key is not None:
            self._key_source = "explicit"
            key = secret_value(api_key)
        elif api_key_env is not None:
            self._key_source = f"env:{api_key_env}"
            key = os.environ.get(api_key_env)
            if not key:
                raise ValueError(
                    f"api_key_env={api_key_env!r}: that environment variable is not set"
                )
        elif self._is_default_host():
            self._key_source = f"env:{_DEFAULT_KEY_ENV}"
            key = os.environ.get(_DEFAULT_KEY_ENV)
        else:
            self._key_source = "none"
            key = None
        self._api_key = Secret(key) if key else None
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
        self._warn_if_clear_text()

    @property
    def api_key(self) -> Secret | None:
        """The bearer key (masked in ``repr``; ``.get_secret_value()`` for the text), if any."""
        return self._api_key

    def _is_default_host(self) -> bool:
        parts = urlsplit(self.base_url)
        return parts.scheme == "https" and (parts.hostname or "") == _DEFAULT_KEY_HOST

    def _warn_if_clear_text(self) -> None:
        if not (self._api_key or self._url_auth):
            return
        parts = urlsplit(self.base_url)
        if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
            warnings.warn(
                f"{self.name}: the API key would travel unencrypted over plain http to "
                f"{parts.hostname}; use an https:// base_url (or a server on this machine)",
                InsecureTransportWarning,
                stacklevel=3,
            )

    def _secrets(self) -> list[str]:
        """Every secret this generator sends (removed from every message it writes)."""
        out = []
        if self._api_key:
            out.append(self._api_key.get_secret_value())
        if self._url_auth is not None:
            user, password = self._url_auth
            out.append(password.get_secret_value())
            out.append(self._basic_token(user, password))
        return [s for s in out if s]

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets())

    @staticmethod
    def _basic_token(user: str, password: Secret) -> str:
        raw = f"{user}:{password.get_secret_value()}".encode()
        return base64.b64encode(raw).decode("ascii")

    def __getstate__(self) -> dict[str, Any]:
        # Keys never travel in pickles: an environment key is read again where it is unpickled.
        state = dict(self.__dict__)
        state["_key_dropped"] = self._key_source == "explicit" and self._api_key is not None
        state["_api_key"] = None
        if self._url_auth is not None:
            state["_key_dropped"] = True
            state["_url_auth"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        source = str(state.get("_key_source", "none"))
        if source.startswith("env:"):
            key = os.environ.get(source[4:])
            self._api_key = Secret(key) if key else None

    def __copy__(self) -> OpenAICompatibleGenerator:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> OpenAICompatibleGenerator:
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _headers(self) -> dict[str, str]:
        if self._key_dropped:
            raise GeneratorError(
                f"{self.name}: this generator was unpickled and its API key was not (keys never "
                "travel in pickles); create it in this process, or pass api_key_env= so that "
                "each process reads the key from its own environment"
            )
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        elif self._url_auth is not None:
            headers["Authorization"] = f"Basic {self._basic_token(*self._url_auth)}"
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

    def _parse(self, status_code: int, raw: bytes, location: str | None = None) -> str:
        text = raw.decode("utf-8", errors="replace")
        secrets = self._secrets()
        excerpt = _excerpt(text, secrets)
        if 300 <= status_code < 400:
            target = self._redact(location or "(no Location header)")
            raise GeneratorError(
                f"{self.name}: HTTP {status_code} from {self.url} redirects to {target}; "
                "redirects are not followed (the key would go with them): set base_url to "
                "the final address",
                status_code=status_code,
                body=excerpt,
            )
        if status_code >= 400:
            error = GeneratorError(
                f"{self.name}: HTTP {status_code} from {self.url}: {excerpt}",
                status_code=status_code,
                body=excerpt,
            )
            raise _RetryableError(error) if status_code >= 500 else error
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise GeneratorError(
                f"{self.name}: malformed response from {self.url}: not JSON: {excerpt!r}",
                status_code=status_code,
                body=excerpt,
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
                f"{self.name}: malformed response from {self.url}: {problem}: {excerpt}",
                status_code=status_code,
                body=excerpt,
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
            GeneratorError(
                self._redact(f"{self.name}: cannot reach {self.url}: {type(exc).__name__}: {exc}")
            )
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
                            location = response.headers.get("Location")
                    except httpx.TimeoutException as exc:
                        raise self._timeout_error(exc) from exc
                    except httpx.TransportError as exc:
                        raise self._connect_error(exc) from exc
                    return self._parse(status_code, raw, location)
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
