"""OpenAI-compatible chat completion servers (vLLM, llama.cpp, Ollama, OpenAI...) over httpx."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import copy
import datetime
import email.utils
import functools
import json
import math
import os
import random
import ssl
import time
import warnings
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from blender_core.generators.base import BaseGenerator
from blender_core.generators.callable import _run_coroutine
from blender_core.generators.deadline import aiterate_until
from blender_core.generators.errors import GeneratorError, GeneratorTimeoutError
from blender_core.generators.timing import note_retry_error, runner_time_left
from blender_core.secrets import (
    InsecureTransportWarning,
    Secret,
    is_loopback_host,
    redact,
    secret_value,
)
from blender_core.types import Prompt, chat_messages

if TYPE_CHECKING:
    from blender_core.tool_calls import ToolCall

__all__ = ["ChatMessageResult", "OpenAICompatibleGenerator", "UsageCallback", "shared_tls_context"]

_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_DEFAULT_KEY_HOST = "api.openai.com"
_DEFAULT_KEY_ENV = "OPENAI_API_KEY"
_BODY_EXCERPT = 500
_REDACT_MARGIN = 256
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_MAX_RETRY_WAIT = 60.0
"""Longest wait before a retry (a longer ``Retry-After`` gives up at once)."""

T = TypeVar("T")

UsageCallback = Callable[[dict[str, int]], None]
"""``on_usage`` hook: receives ``{"prompt_tokens", "completion_tokens", "total_tokens"}``."""


@dataclass(frozen=True)
class ChatMessageResult:
    """One whole assistant message (:meth:`OpenAICompatibleGenerator.achat_message`).

    Attributes:
        text: The message's text (``""`` when it has none, e.g. only tool calls).
        tool_calls: Its tool calls, in the server's order.
        usage: The token counts the server reported (``None`` when it sent none).
        finish_reason: ``choices[0].finish_reason`` (``"stop"``, ``"tool_calls"``, ...).
        raw: The message as the server sent it (``role``, ``content``, ``tool_calls``...).
    """

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: dict[str, int] | None = None
    finish_reason: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """The verifying TLS context every :class:`OpenAICompatibleGenerator` call uses.

    Built once per process with httpx's own defaults (``httpx.create_ssl_context()``: certifi's
    CA bundle, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set, read at the first call) and
    then shared by every call's client: building it per call loads the CA bundle each time
    (about 75 ms of CPU per call measured in the gateway, which halved its throughput).
    """
    return httpx.create_ssl_context()


def _usage_counts(usage: Any) -> dict[str, int] | None:
    """``{"prompt_tokens", "completion_tokens", "total_tokens"}`` from an answer's ``usage``
    object, or ``None`` when it has no valid counts (absent, not ints, negative)."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    counts = []
    for value in (prompt, completion):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return None
        counts.append(value)
    return {
        "prompt_tokens": counts[0],
        "completion_tokens": counts[1],
        "total_tokens": counts[0] + counts[1],
    }


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - time.time()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


class _SSELines:
    """Splits a byte stream into text lines (``\\n``, ``\\r\\n`` or ``\\r``), at most ``cap``
    bytes in all (``OverflowError`` past it), so one endless line cannot fill memory."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.size = 0
        self.parts: list[bytes] = []  # the line begun and not yet ended
        self.held_cr = False

    def feed(self, chunk: bytes) -> list[str]:
        self.size += len(chunk)
        if self.size > self.cap:
            raise OverflowError
        if self.held_cr:  # a "\\r" that ended the last chunk: "\\r\\n" or a lone "\\r"
            chunk = b"\r" + chunk
            self.held_cr = False
        if chunk.endswith(b"\r"):
            chunk, self.held_cr = chunk[:-1], True
        chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in chunk:
            self.parts.append(chunk)
            return []
        pieces = chunk.split(b"\n")
        pieces[0] = b"".join([*self.parts, pieces[0]])
        self.parts = [pieces.pop()]
        return [piece.decode("utf-8", errors="replace") for piece in pieces]

    def flush(self) -> list[str]:
        """At the end of the stream: the last line, if ended only by ``\\r`` or not at all."""
        rest = b"".join(self.parts)
        held, self.parts, self.held_cr = self.held_cr, [], False
        return [rest.decode("utf-8", errors="replace")] if rest or held else []


def _iterate_sync(source: AsyncIterator[str]) -> Iterator[str]:
    """The items of an async iterator, from sync code, on a private event loop (in a worker
    thread when this thread already runs a loop); closing this iterator closes ``source``."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pool = None
    else:
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="blender-stream")

    def step(awaitable: Awaitable[T]) -> T:
        async def run() -> T:
            return await awaitable

        if pool is None:
            return loop.run_until_complete(run())
        return pool.submit(loop.run_until_complete, run()).result()

    try:
        while True:
            try:
                item = step(anext(source))
            except StopAsyncIteration:
                return
            yield item
    finally:
        try:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                step(aclose())
            step(loop.shutdown_asyncgens())
        finally:
            loop.close()
            if pool is not None:
                pool.shutdown(wait=False)


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
        max_retries: Retries (2 by default) of a request that certainly was not carried out:
            an answer 408, 429, 500, 502, 503 or 504, or a connection that could not be opened.
            The wait is ``Retry-After`` when the answer has one (seconds or an HTTP-date), else
            exponential backoff with jitter (``backoff * 2**n`` times 0.5 to 1); a wait that
            would pass the deadline ``timeout`` (or exceed 60 s) is not taken: the error is
            raised at once. A request is never re-sent once it went out without a complete
            answer (a connection dropped mid-answer, a server that hung up): that fails with a
            :class:`GeneratorError` saying it was not re-sent. Timeouts are not retried.
        backoff: First backoff wait in seconds (doubled at each retry).
        extra_body: Extra JSON fields merged into every request body (e.g. ``{"seed": 0}``).
        max_response_bytes: Most bytes of a response body read (decoded; 8 MiB by default): a
            longer body, or a ``Content-Length`` above it, raises :class:`GeneratorError` naming
            the cap, so memory stays bounded whatever the server sends.
        on_usage: Called with the token counts of each answer the server reports
            (``{"prompt_tokens": ..., "completion_tokens": ..., "total_tokens": ...}``), from
            the task or thread that made the call (so a :mod:`contextvars` context is the
            caller's). Plain answers report the response's ``usage``; streamed answers ask for
            it with ``"stream_options": {"include_usage": true}`` (unless ``extra_body`` or the
            call sets ``stream_options``) and report the final usage event. A server that sends
            no usage (or invalid counts) gives no call. An exception it raises fails the call.

    Every call's httpx client uses one process-wide TLS context (:func:`shared_tls_context`).

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
        max_retries: int = 2,
        backoff: float = 0.5,
        max_response_bytes: int = 8 * 2**20,
        extra_body: Mapping[str, Any] | None = None,
        on_usage: UsageCallback | None = None,
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
        if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff < 0:
            raise ValueError(f"backoff must be a number >= 0, got {backoff!r}")
        self.backoff = float(backoff)
        self._random = random.Random()
        if isinstance(max_response_bytes, bool) or not isinstance(max_response_bytes, int):
            raise ValueError(f"max_response_bytes must be an int, got {max_response_bytes!r}")
        if max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be >= 1, got {max_response_bytes}")
        self.max_response_bytes = max_response_bytes
        self.extra_body = dict(extra_body or {})
        if on_usage is not None and not callable(on_usage):
            raise ValueError(f"on_usage must be callable, got {type(on_usage).__name__}")
        self.on_usage = on_usage
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

    def _openai_messages(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """An OpenAI-shaped chat as sent (tool calls, tool results and content parts kept), the
        ``system_prompt`` first unless the chat starts with a system message."""
        if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
            raise TypeError(
                f"messages must be a list of chat messages, got {type(messages).__name__}"
            )
        chat = []
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping) or "role" not in message:
                raise TypeError(
                    f"chat message {i} must be a mapping with a 'role', got {message!r}"
                )
            chat.append(dict(message))
        if not chat:
            raise ValueError("a chat needs at least one message")
        if self.system_prompt and chat[0]["role"] != "system":
            chat.insert(0, {"role": "system", "content": self.system_prompt})
        return chat

    def build_body(self, prompt: Prompt, **kwargs: Any) -> dict[str, Any]:
        """The JSON body sent for ``prompt``; keyword arguments override body fields."""
        return self._body(self._messages(prompt), kwargs)

    def _body(self, messages: list[dict[str, Any]], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        body.update(self.extra_body)
        fields = dict(kwargs)
        if "max_new_tokens" in fields:  # the generator-wide name for the answer length
            fields.setdefault("max_tokens", fields.pop("max_new_tokens"))
        body.update({k: v for k, v in fields.items() if v is not None})
        return body

    def _parse(self, status_code: int, raw: bytes, location: str | None = None) -> str:
        """The answer's text (``choices[0].message.content``), its usage reported."""
        data, message, excerpt = self._decode(status_code, raw, location)
        content = message.get("content")
        if not isinstance(content, str):
            self._malformed(
                status_code, "choices[0].message.content is missing or not a string", excerpt
            )
        self._report_usage(data.get("usage"))
        return str(content)

    def _parse_message(self, status_code: int, raw: bytes) -> ChatMessageResult:
        """The whole assistant message: text (``None`` content is ``""``), tool calls, usage."""
        from blender_core.tool_calls import ToolCall

        data, message, excerpt = self._decode(status_code, raw)
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            self._malformed(status_code, "choices[0].message.content is not a string", excerpt)
        items = message.get("tool_calls") or []
        if not isinstance(items, list):
            self._malformed(status_code, "choices[0].message.tool_calls is not a list", excerpt)
        try:
            calls = tuple(ToolCall.from_openai(item) for item in items)
        except (TypeError, ValueError) as exc:
            self._malformed(status_code, f"a tool call is not valid: {exc}", excerpt)
        self._report_usage(data.get("usage"))
        finish = data["choices"][0].get("finish_reason")
        return ChatMessageResult(
            text=content or "",
            tool_calls=calls,
            usage=_usage_counts(data.get("usage")),
            finish_reason=finish if isinstance(finish, str) else None,
            raw=message,
        )

    def _malformed(self, status_code: int, problem: str, excerpt: str) -> NoReturn:
        raise GeneratorError(
            f"{self.name}: malformed response from {self.url}: {problem}: {excerpt}",
            status_code=status_code,
            body=excerpt,
        )

    def _decode(
        self, status_code: int, raw: bytes, location: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any], str]:
        """``(response, choices[0].message, excerpt)`` of a 2xx answer; a
        :class:`GeneratorError` for an error status, a redirect or a malformed body."""
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
            raise _RetryableError(error) if status_code in _RETRY_STATUSES else error
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise GeneratorError(
                f"{self.name}: malformed response from {self.url}: not JSON: {excerpt!r}",
                status_code=status_code,
                body=excerpt,
            ) from exc
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            self._malformed(status_code, "no 'choices' list", excerpt)
        if not data["choices"]:
            self._malformed(status_code, "empty 'choices'", excerpt)
        first = data["choices"][0]
        message = first.get("message") if isinstance(first, dict) else None
        if not isinstance(message, dict):
            self._malformed(status_code, "no 'message' in choices[0]", excerpt)
        return data, message, excerpt

    def _report_usage(self, usage: Any) -> None:
        """Pass valid ``usage`` counts to ``on_usage`` (if set)."""
        if self.on_usage is None:
            return
        counts = _usage_counts(usage)
        if counts is not None:
            self.on_usage(counts)

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

    def _timeout_error(self, what: str) -> GeneratorTimeoutError:
        return GeneratorTimeoutError(
            f"{self.name}: no answer from {self.url} within the timeout of {self.timeout} s "
            f"({what})"
        )

    def _dropped(self, exc: Exception, after: str) -> GeneratorError:
        return GeneratorError(
            self._redact(
                f"{self.name}: the connection to {self.url} broke {after} "
                f"({type(exc).__name__}: {exc}); not re-sent: the server may have accepted "
                "the request, and a completion is not idempotent"
            )
        )

    def generate(self, prompt: Prompt, **kwargs: Any) -> str:
        # httpx's sync timeouts bound each read, not the request: the async path under one
        # asyncio deadline (in a private event loop) is what bounds the whole call.
        body = self.build_body(prompt, **kwargs)
        return str(_run_coroutine(self._bounded(body, self._parse)))

    async def agenerate(self, prompt: Prompt, **kwargs: Any) -> str:
        return await self._bounded(self.build_body(prompt, **kwargs), self._parse)

    def chat_message(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> ChatMessageResult:
        """Sync :meth:`achat_message`."""
        body = self._chat_body(messages, tools, tool_choice, kwargs)
        return _run_coroutine(self._bounded(body, self._parse_message))

    async def achat_message(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> ChatMessageResult:
        """The whole assistant message for an OpenAI-shaped chat: its text and tool calls.

        The request goes through the same path as :meth:`agenerate`: the total deadline
        ``timeout``, the retries, the refused redirects, ``max_response_bytes``, the key
        redaction and ``on_usage``.

        Args:
            messages: The chat in OpenAI's shape, sent as given (assistant ``tool_calls`` and
                ``tool`` results of earlier turns included); ``system_prompt`` goes first unless
                the chat starts with a system message.
            tools: OpenAI ``tools`` (``{"type": "function", "function": {...}}``).
            tool_choice: ``"auto"``, ``"required"``, ``"none"`` or a named function.
            **kwargs: Other body fields (``max_tokens`` / ``max_new_tokens``, ``seed``...).

        Returns:
            The text, the :class:`~blender_core.tool_calls.ToolCall` s, the usage, the finish
            reason and the raw message.

        Raises:
            GeneratorError: as :meth:`agenerate`, and for a tool call that is not valid
                (no function name, arguments that are not a JSON object).
            GeneratorTimeoutError: the call ran past ``timeout``.
        """
        body = self._chat_body(messages, tools, tool_choice, kwargs)
        return await self._bounded(body, self._parse_message)

    def _chat_body(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
        tool_choice: str | Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> dict[str, Any]:
        fields = dict(kwargs)
        if tools is not None:
            fields["tools"] = [dict(t) for t in tools]
        if tool_choice is not None:
            fields["tool_choice"] = (
                tool_choice if isinstance(tool_choice, str) else dict(tool_choice)
            )
        return self._body(self._openai_messages(messages), fields)

    async def _bounded(self, body: dict[str, Any], parse: Callable[[int, bytes], T]) -> T:
        """:meth:`_post` under the total deadline ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        try:
            async with asyncio.timeout_at(deadline) as scope:
                return await self._post(body, deadline, parse)
        except TimeoutError:
            if scope.expired():
                raise self._timeout_error("total deadline") from None
            raise

    def _client(self) -> httpx.AsyncClient:
        # Per-operation httpx timeouts at the total: the asyncio deadline is the real bound.
        return httpx.AsyncClient(
            timeout=self.timeout, follow_redirects=False, verify=shared_tls_context()
        )

    async def _post(
        self, body: dict[str, Any], deadline: float | None, parse: Callable[[int, bytes], T]
    ) -> T:
        async with self._client() as client, contextlib.AsyncExitStack() as stack:
            response = await self._open(stack, client, body, deadline)
            error: GeneratorError | None = None
            try:
                raw = await self._read(response)
            except httpx.TimeoutException:
                error = self._timeout_error("reading the answer")
            except httpx.TransportError as exc:
                error = self._dropped(exc, "while the answer was being received")
            if error is not None:
                raise error  # raised outside the handler: no httpx request (and key) in its context
            return parse(response.status_code, raw)

    async def _open(
        self,
        stack: contextlib.AsyncExitStack,
        client: httpx.AsyncClient,
        body: dict[str, Any],
        deadline: float | None,
    ) -> httpx.Response:
        """Send ``body`` and return a 2xx response whose body is still unread (its closing is
        on ``stack``); retry what may be retried (see the class docstring)."""
        loop = asyncio.get_running_loop()
        for attempt in range(self.max_retries + 1):
            error: GeneratorError | None = None
            retry = False
            wait: float | None = None
            request = client.stream("POST", self.url, json=body, headers=self._headers())
            try:
                response = await request.__aenter__()
            except httpx.TimeoutException:
                error = self._timeout_error("waiting for the answer")
            except httpx.ConnectError as exc:  # the request never left: safe to send again
                error = GeneratorError(
                    self._redact(
                        f"{self.name}: cannot reach {self.url}: {type(exc).__name__}: {exc}"
                    )
                )
                retry = True
            except httpx.TransportError as exc:
                error = self._dropped(exc, "after the request was sent, before an answer")
            else:
                if response.status_code < 300:
                    stack.push_async_exit(request)
                    return response
                try:
                    raw = await self._read(response)
                    self._decode(response.status_code, raw, response.headers.get("Location"))
                except _RetryableError as failure:
                    error, retry = failure.error, True
                    wait = _retry_after(response.headers.get("Retry-After"))
                except GeneratorError as failure:
                    error = failure
                except httpx.TimeoutException:
                    error = self._timeout_error("reading an error answer")
                except httpx.TransportError as exc:
                    error = self._dropped(exc, "while an error answer was being received")
                finally:
                    await request.__aexit__(None, None, None)
            if error is None:  # pragma: no cover - _parse raises for every status >= 300
                error = GeneratorError(f"{self.name}: unexpected answer from {self.url}")
            if not retry or attempt == self.max_retries:
                raise error
            delay = self._backoff(attempt) if wait is None else wait
            left = None if deadline is None else deadline - loop.time()
            runner_left = runner_time_left()  # the blend's deadline for this member, if any
            if runner_left is not None and (left is None or runner_left < left):
                left = runner_left
            if delay > _MAX_RETRY_WAIT or (left is not None and delay >= left):
                budget = "" if left is None else f", {max(left, 0.0):.1f} s left of the timeout"
                raise GeneratorError(
                    f"{error} (not retried: the wait of {delay:.1f} s it needs is past the "
                    f"deadline{budget}; at most {_MAX_RETRY_WAIT:g} s)",
                    status_code=error.status_code,
                    body=error.body,
                )
            note_retry_error(error)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: ``backoff * 2**attempt``, times 0.5 to 1."""
        base = min(self.backoff * 2.0**attempt, _MAX_RETRY_WAIT)
        return base * (0.5 + 0.5 * self._random.random())

    def stream(self, prompt: Prompt, **kwargs: Any) -> Iterator[str]:
        """Answer ``prompt`` as it is generated (``"stream": true``, server-sent events).

        The total deadline ``timeout`` covers the whole stream, the time the caller spends
        between pieces included; ``max_response_bytes`` caps the streamed bytes. Closing the
        iterator early closes the connection. Retries happen only before the first piece.

        Raises:
            GeneratorError: as :meth:`generate`, and for a malformed event, an ``error`` event
                or a stream that ends before ``[DONE]`` (or a ``finish_reason``).
            GeneratorTimeoutError: the stream outlasted ``timeout``.
        """
        return _iterate_sync(self.astream(prompt, **kwargs))

    async def astream(self, prompt: Prompt, **kwargs: Any) -> AsyncIterator[str]:
        """Async :meth:`stream`: the answer's text deltas as the server sends them."""
        body = self.build_body(prompt, **kwargs)
        body["stream"] = True
        if self.on_usage is not None:
            body.setdefault("stream_options", {"include_usage": True})
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        events = self._events(body, deadline)
        expired = functools.partial(self._timeout_error, "total deadline, while streaming")
        async with contextlib.aclosing(aiterate_until(events, deadline, expired)) as deltas:
            async for delta in deltas:
                yield delta

    async def _events(
        self, body: dict[str, Any], deadline: float | None
    ) -> AsyncGenerator[str, None]:
        """The content deltas of a streamed answer (no deadline of its own: see astream)."""
        async with self._client() as client, contextlib.AsyncExitStack() as stack:
            response = await self._open(stack, client, body, deadline)
            content_type = response.headers.get("Content-Type", "")
            if "text/event-stream" not in content_type:  # a server that ignored "stream"
                text = await self._guarded(self._read(response), 0)
                yield self._parse(response.status_code, text)
                return
            sent = 0
            lines = _SSELines(self.max_response_bytes)
            reader = response.aiter_bytes()
            data: list[str] = []
            finished = False
            usage: dict[str, int] | None = None  # the last counts seen (some servers repeat them)
            while True:
                chunk = await self._guarded(anext(reader, None), sent)
                try:
                    new_lines = [*lines.flush(), ""] if chunk is None else lines.feed(chunk)
                except OverflowError:
                    raise self._too_big(
                        f"more than {self.max_response_bytes} bytes streamed"
                    ) from None
                for line in new_lines:
                    if line:
                        if line.startswith("data:"):
                            value = line[5:]
                            data.append(value[1:] if value.startswith(" ") else value)
                        continue  # comments (":..."), event:, id:, retry: lines
                    if not data:
                        continue
                    payload, data = "\n".join(data), []
                    if payload.strip() == "[DONE]":
                        if usage is not None:
                            self._report_usage(usage)
                        return
                    delta, done, counts = self._event(payload)
                    usage = counts or usage
                    finished = finished or done
                    if delta:
                        sent += len(delta)
                        yield delta
                if chunk is None:
                    break
            if not finished:
                raise GeneratorError(
                    f"{self.name}: the stream from {self.url} ended before [DONE] "
                    f"(after {sent} characters); the answer may be cut"
                )
            if usage is not None:
                self._report_usage(usage)

    async def _guarded(self, step: Awaitable[T], sent: int) -> T:
        """``await step``, with httpx's errors mapped to :class:`GeneratorError` (never re-sent)."""
        error: GeneratorError | None = None
        try:
            return await step
        except httpx.TimeoutException:
            error = self._timeout_error("reading the stream")
        except httpx.TransportError as exc:
            error = self._dropped(exc, f"mid-stream, after {sent} characters")
        raise error

    def _event(self, payload: str) -> tuple[str, bool, dict[str, int] | None]:
        """The content delta of one ``data:`` event, whether it carries a finish_reason, and
        its valid ``usage`` counts (``None`` when it has none)."""
        try:
            event = json.loads(payload)
        except ValueError:
            event = None
        if isinstance(event, dict) and "error" in event:
            raise GeneratorError(
                f"{self.name}: error event in the stream from {self.url}: "
                f"{_excerpt(json.dumps(event['error']), self._secrets())}"
            )
        choices = event.get("choices") if isinstance(event, dict) else None
        if not isinstance(choices, list):
            raise GeneratorError(
                f"{self.name}: malformed stream event from {self.url}: "
                f"{_excerpt(payload, self._secrets())!r}"
            )
        counts = _usage_counts(event.get("usage"))
        if not choices:  # e.g. a final usage-only event
            return "", False, counts
        first = choices[0] if isinstance(choices[0], dict) else {}
        delta = first.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        if content is not None and not isinstance(content, str):
            raise GeneratorError(
                f"{self.name}: malformed stream event from {self.url}: delta.content is not a "
                f"string: {_excerpt(payload, self._secrets())!r}"
            )
        return content or "", first.get("finish_reason") is not None, counts

    def __repr__(self) -> str:
        return (
            f"OpenAICompatibleGenerator(model={self.model!r}, name={self.name!r}, "
            f"base_url={self.base_url!r})"
        )
