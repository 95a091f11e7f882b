"""The FastAPI app of ``blender serve`` and the uvicorn runner.

Endpoints: ``POST /v1/chat/completions`` (tool calls included), ``POST /v1/completions``,
``GET /v1/models``, ``POST /v1/rerank``, ``GET /health``, ``GET /ready``, ``GET /metrics``, and
the blend inspector: ``GET /`` (the page) and ``POST /v1/blend/stream`` (its events). Every
``/v1`` request, ``/metrics`` and ``/`` need the key when one is set; without one, requests
must name one of ``server.allowed_hosts`` in ``Host``/``Origin`` and POST bodies must be JSON.
``/health`` and ``/ready`` never need either.

Slow clients: a POST's body is read before a concurrency slot is taken, within
``server.body_timeout`` (408); headers have ``server.header_timeout`` and
``server.max_header_bytes`` (see :mod:`blender_core.serve.protocol`).

Under load: at most ``server.max_concurrency`` requests are served at once and the next one is
answered 429 with ``Retry-After`` (no unbounded queue); each request has a total deadline
(``server.request_timeout``: 504 before a stream starts, an error event after); a client that
disconnects cancels its member calls; SIGTERM/SIGINT stop accepting and let in-flight requests
finish (``server.graceful_shutdown_timeout``).

Example:
    .. code-block:: python

        from blender_core.serve import create_app, load_config

        app = create_app(load_config("blend.toml"))  # any ASGI server can run it
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from blender_core.serve.config import ServeConfig
from blender_core.serve.errors import ApiError
from blender_core.serve.gateway import Answer, Gateway, ToolRequest
from blender_core.serve.metrics import CONTENT_TYPE
from blender_core.serve.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    RerankRequest,
    check_texts,
    parse_body,
    parse_json,
    validate_body,
)
from blender_core.serve.security import basic_matches, bearer_matches, host_allowed

__all__ = ["INSPECTOR_PAGE", "create_app", "run"]

log = logging.getLogger("blender_core.serve")

INSPECTOR_PAGE = (resources.files("blender_core.serve") / "static" / "inspector.html").read_text(
    encoding="utf-8"
)
"""The blend inspector (``GET /``): one self-contained page, no external resources."""

T = TypeVar("T")


class _ClientGone(Exception):
    """The client disconnected before the answer was ready."""


def check_json(request: Request) -> None:
    """415 unless the body is declared ``application/json``.

    Browsers send ``text/plain`` and form types across origins without asking first; a JSON
    body needs a CORS preflight, which this server never grants.
    """
    declared = request.headers.get("content-type", "")
    media = declared.split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise ApiError(
            415,
            f"Content-Type must be application/json, got {declared or 'none'!r}",
            code="unsupported_media_type",
        )


async def _read_body(request: Request, cap: int) -> bytes:
    """The body, never more than ``cap`` bytes read (413 past it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise ApiError(
            413,
            f"the body is {declared} bytes, more than max_body_bytes={cap}",
            code="body_too_large",
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise ApiError(
                    413,
                    f"the body is more than max_body_bytes={cap} bytes",
                    code="body_too_large",
                )
            chunks.append(chunk)
    except ClientDisconnect:
        raise _ClientGone from None
    return b"".join(chunks)


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the body must have been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class _Stream(StreamingResponse):
    """A streamed response whose clean-up always runs once it has been handed to the server,
    even when the client left before the first byte (the body then never starts)."""

    def __init__(self, content: AsyncIterator[bytes], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.cleanups: list[Callable[[], Awaitable[None]]] = []

    @classmethod
    def events(
        cls, content: AsyncIterator[bytes], *cleanups: Callable[[], Awaitable[None]]
    ) -> _Stream:
        """A server-sent event stream (neither cached nor buffered by a proxy), ``cleanups``
        run at its end."""
        response = cls(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        response.cleanups.extend(cleanups)
        return response

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            for cleanup in self.cleanups:
                try:
                    await cleanup()
                except Exception:  # clean-up must not hide what happened
                    log.exception("stream clean-up failed")


def _sse(data: Any) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class _HeadLimit:
    """ASGI middleware: 431 for a request whose head is larger than ``max_header_bytes``.

    uvicorn's ``h11_max_incomplete_event_size`` bounds a head that is still arriving (the
    memory guard); a complete head that came in one read passes it, and is refused here.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.limit:
                body = json.dumps(
                    ApiError(
                        431,
                        f"the request head is {size} bytes, more than "
                        f"max_header_bytes={self.limit}",
                        code="header_too_large",
                    ).body()
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 431,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _chat_payload(model: str, answer: Answer) -> dict[str, Any]:
    """A ``chat.completion`` body; with tool calls, ``finish_reason: "tool_calls"`` and
    ``content: null`` when the chosen proposal has no text."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.text}
    if answer.tool_calls:
        message = {
            "role": "assistant",
            "content": answer.text or None,
            "tool_calls": answer.tool_calls,
        }
    payload: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if answer.tool_calls else "stop",
            }
        ],
        "usage": answer.usage,
    }
    if answer.blend is not None:
        payload["blend"] = answer.blend
    return payload


def _tool_stream(model: str, answer: Answer, include_usage: bool) -> _Stream:
    """A finished answer with tool calls as OpenAI's chunks: the role, the text, one chunk per
    tool call (whole name and arguments, ``index`` set), the finish (with ``blend``), the usage
    and ``[DONE]``."""
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
                **extra,
            }
        )

    async def body() -> AsyncIterator[bytes]:
        yield chunk({"role": "assistant", "content": ""})
        if answer.text:
            yield chunk({"content": answer.text})
        for index, call in enumerate(answer.tool_calls):
            yield chunk({"tool_calls": [{"index": index, **call}]})
        extra = {"blend": answer.blend} if answer.blend is not None else {}
        yield chunk({}, "tool_calls" if answer.tool_calls else "stop", **extra)
        if include_usage:
            yield _sse(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": answer.usage,
                }
            )
        yield b"data: [DONE]\n\n"

    return _Stream.events(body())


class _App:
    """Request handling around a :class:`Gateway`: auth, limits, deadlines, disconnects."""

    def __init__(self, gateway: Gateway, api_key: str | None) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.metrics = gateway.metrics
        self.api_key = api_key
        self.hosts = self.settings.host_names()
        self.in_flight = 0

    # -- admission ------------------------------------------------------------------------------

    def check_key(self, request: Request, *, realm: bool = False) -> None:
        """401 without the right key; without a key, 403 for a foreign ``Host``/``Origin``.

        The key comes as ``Authorization: Bearer <key>``, or as the password of HTTP Basic
        auth (any user name): what a browser sends for the inspector page once asked
        (``realm``: the 401 asks for Basic auth, so the browser shows its login dialog).
        """
        if self.api_key is None:
            if not host_allowed(
                request.headers.get("host"), request.headers.get("origin"), self.hosts
            ):
                self.metrics.rejected.labels("host").inc()
                raise ApiError(
                    403,
                    "without an API key this server answers only requests whose Host and "
                    "Origin name one of its own host names (server.allowed_hosts); add the "
                    "name there, or set a key",
                    code="host_not_allowed",
                )
            return
        header = request.headers.get("authorization")
        if not (bearer_matches(header, self.api_key) or basic_matches(header, self.api_key)):
            self.metrics.rejected.labels("auth").inc()
            challenge = 'Basic realm="blender serve", charset="UTF-8"' if realm else "Bearer"
            raise ApiError(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                code="invalid_api_key",
                headers={"WWW-Authenticate": challenge},
            )

    def check_ready(self) -> None:
        if not self.gateway.ready.is_set():
            self.metrics.rejected.labels("loading").inc()
            detail = self.gateway.load_error
            message = f"models failed to load: {detail}" if detail else "models are loading"
            raise ApiError(
                503,
                message,
                code="not_ready",
                headers={"Retry-After": str(self.settings.retry_after)},
            )

    async def serve(
        self,
        request: Request,
        endpoint: str,
        handler: Callable[[bytes, float], Awaitable[tuple[Response, str]]],
    ) -> Response:
        """Admit a POST (host or key, JSON, whole body, readiness, concurrency), run
        ``handler(body, deadline)`` and count it.

        The body is read before a concurrency slot is taken and within ``body_timeout``
        (408 past it): clients that send their bodies slowly, or never finish them, hold a
        connection but never a slot.
        """
        start = time.perf_counter()
        model = "-"
        status = 500
        try:
            self.check_key(request)
            check_json(request)
            try:
                async with asyncio.timeout(self.settings.body_timeout):
                    raw = await _read_body(request, self.settings.max_body_bytes)
            except TimeoutError:
                self.metrics.rejected.labels("slow_body").inc()
                raise ApiError(
                    408,
                    f"the request body did not arrive within body_timeout="
                    f"{self.settings.body_timeout:g} s",
                    code="request_timeout",
                    headers={"Connection": "close"},
                ) from None
            self.check_ready()
            if self.in_flight >= self.settings.max_concurrency:
                self.metrics.rejected.labels("busy").inc()
                raise ApiError(
                    429,
                    f"the server is busy ({self.settings.max_concurrency} requests in flight); "
                    "retry later",
                    code="too_many_requests",
                    headers={"Retry-After": str(self.settings.retry_after)},
                )
            self.in_flight += 1
            self.metrics.in_flight.inc()
            try:
                deadline = time.monotonic() + self.settings.request_timeout
                response, model = await handler(raw, deadline)
            finally:
                self.in_flight -= 1
                self.metrics.in_flight.dec()
            status = response.status_code
            if isinstance(response, _Stream):  # in flight until the stream ends
                self.in_flight += 1
                self.metrics.in_flight.inc()
                response.cleanups.append(self._stream_done)
            return response
        except ApiError as exc:
            status = exc.status
            if status == 413:
                self.metrics.rejected.labels("too_large").inc()
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
        except _ClientGone:
            status = 499
            self.metrics.cancelled.labels(endpoint).inc()
            return Response(status_code=499)
        finally:
            self.metrics.requests.labels(endpoint, model, str(status)).inc()
            self.metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - start)

    async def _stream_done(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.dec()

    async def within(self, request: Request, work: Awaitable[T], deadline: float) -> T:
        """``work``'s result; cancelled when the client goes (:class:`_ClientGone`) or at the
        deadline (504)."""
        task = asyncio.ensure_future(work)
        watch = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait(
                {task, watch},
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            watch.cancel()
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        if watch in done:
            raise _ClientGone
        raise ApiError(
            504,
            f"no answer within request_timeout={self.settings.request_timeout:g} s",
            code="timeout",
        )

    # -- chat and completions -------------------------------------------------------------------

    def _options(self, body: Any, kind: str) -> dict[str, Any]:
        """What a request passes on to its members (a blend: only the length)."""
        max_tokens = getattr(body, "max_completion_tokens", None) or body.max_tokens
        if max_tokens is not None and max_tokens > self.settings.max_tokens:
            raise ApiError(
                422,
                f"max_tokens: {max_tokens} is more than this server allows "
                f"({self.settings.max_tokens})",
                param="max_tokens",
            )
        options: dict[str, Any] = {}
        if max_tokens is not None:
            options["max_new_tokens"] = max_tokens
        if kind == "member":
            for name in ("temperature", "top_p", "seed"):
                value = getattr(body, name)
                if value is not None:
                    options[name] = value
        return options

    def _check_common(self, body: Any) -> None:
        if body.n not in (None, 1):
            raise ApiError(422, "n: only n=1 is supported", param="n")
        if getattr(body, "functions", None):
            raise ApiError(
                422,
                "functions: the legacy 'functions' field is not supported; send 'tools'",
                param="functions",
            )

    def _chat_request(self, raw: bytes) -> tuple[ChatCompletionRequest, str, list[dict[str, str]]]:
        """A checked chat request: the body, ``ensemble``/``member`` and its text messages."""
        data = parse_json(raw)
        messages_in = data.get("messages")
        if isinstance(messages_in, list) and len(messages_in) > self.settings.max_messages:
            # before the full validation, whose cost grows with the number of messages
            raise ApiError(
                422,
                f"messages: at most {self.settings.max_messages} per request, "
                f"got {len(messages_in)}",
                param="messages",
                code="too_many_items",
            )
        body: ChatCompletionRequest = validate_body(data, ChatCompletionRequest)
        kind = self.gateway.check_model(body.model, endpoint="chat")
        self._check_common(body)
        messages = body.chat()
        check_texts(
            [(f"messages[{i}].content", m["content"]) for i, m in enumerate(messages)],
            self.settings,
            max_items=self.settings.max_messages,
            what="messages",
        )
        if not any(m["role"] == "user" for m in messages):
            raise ApiError(422, "messages: needs at least one user message", param="messages")
        self.gateway.check_system_prompt(body.model, messages)
        return body, kind, messages

    async def inspect(self, request: Request, raw: bytes, deadline: float) -> tuple[Response, str]:
        """``POST /v1/blend/stream``: a blend as the inspector's events (Server-Sent Events)."""
        body, kind, messages = self._chat_request(raw)
        if kind != "ensemble":
            raise ApiError(
                422, f"model: {body.model!r} is a member; name an ensemble", param="model"
            )
        options = self._options(body, kind)
        events = self.gateway.inspect(body.model, messages, options)
        settings = self.settings

        async def stream() -> AsyncIterator[bytes]:
            try:
                while True:
                    try:
                        async with asyncio.timeout(max(0.0, deadline - time.monotonic())) as scope:
                            event = await anext(events)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        if not scope.expired():  # not the request's deadline: another cause
                            raise
                        yield _sse(
                            {
                                "type": "error",
                                "message": f"no complete blend within request_timeout="
                                f"{settings.request_timeout:g} s",
                                "code": "timeout",
                            }
                        )
                        break
                    yield _sse(event)
                yield b"data: [DONE]\n\n"
            finally:
                await events.aclose()  # type: ignore[attr-defined]

        return _Stream.events(stream(), events.aclose), body.model  # type: ignore[attr-defined]

    async def chat(self, request: Request, raw: bytes, deadline: float) -> tuple[Response, str]:
        body, kind, messages = self._chat_request(raw)
        options = self._options(body, kind)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        fields = body.tool_fields()
        if fields is not None:
            tools = ToolRequest(body.openai_messages(), messages, fields, options)
            if kind == "ensemble":
                work = self.gateway.blend_tools(body.model, tools)
            else:
                work = self.gateway.passthrough_tools(body.model, tools)
            answer = await self.within(request, work, deadline)
            if body.stream:
                return _tool_stream(body.model, answer, include_usage), body.model
            return JSONResponse(_chat_payload(body.model, answer)), body.model
        if body.stream:
            response = await self._stream(
                request, "chat", body.model, kind, messages, options, deadline, include_usage
            )
            return response, body.model
        if kind == "ensemble":
            answer = await self.within(
                request, self.gateway.blend(body.model, messages, options), deadline
            )
        else:
            answer = await self.within(
                request, self.gateway.passthrough(body.model, messages, options), deadline
            )
        return JSONResponse(_chat_payload(body.model, answer)), body.model

    async def completions(
        self, request: Request, raw: bytes, deadline: float
    ) -> tuple[Response, str]:
        body: CompletionRequest = parse_body(raw, CompletionRequest)
        kind = self.gateway.check_model(body.model, endpoint="completions")
        self._check_common(body)
        prompt = body.prompt_text()
        check_texts([("prompt", prompt)], self.settings, max_items=1, what="prompt")
        if not prompt.strip():
            raise ApiError(422, "prompt: must not be empty", param="prompt")
        messages = [{"role": "user", "content": prompt}]
        options = self._options(body, kind)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        if body.stream:
            response = await self._stream(
                request,
                "completions",
                body.model,
                kind,
                messages,
                options,
                deadline,
                include_usage,
            )
            return response, body.model
        if kind == "ensemble":
            work = self.gateway.blend(body.model, messages, options)
        else:
            work = self.gateway.passthrough(body.model, messages, options)
        answer = await self.within(request, work, deadline)
        text = prompt + answer.text if body.echo else answer.text
        payload: dict[str, Any] = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
            "usage": answer.usage,
        }
        if answer.blend is not None:
            payload["blend"] = answer.blend
        return JSONResponse(payload), body.model

    async def _stream(
        self,
        request: Request,
        endpoint: str,
        model: str,
        kind: str,
        messages: list[dict[str, str]],
        options: dict[str, Any],
        deadline: float,
        include_usage: bool,
    ) -> _Stream:
        """An SSE response in OpenAI's chunk format; members (and ranking) run before it starts."""
        gateway = self.gateway
        completion_id = f"{'chatcmpl' if endpoint == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        if kind == "ensemble":
            meter, first, events = await self.within(
                request, gateway.blend_stream(model, messages, options), deadline
            )
        else:
            meter, first_text, deltas = await self.within(
                request, gateway.passthrough_stream(model, messages, options), deadline
            )

        def chunk(delta: dict[str, Any] | None, finish: str | None, **extra: Any) -> bytes:
            if endpoint == "chat":
                choice: dict[str, Any] = {
                    "index": 0,
                    "delta": delta or {},
                    "logprobs": None,
                    "finish_reason": finish,
                }
                kind_name = "chat.completion.chunk"
            else:
                choice = {
                    "index": 0,
                    "text": (delta or {}).get("content", ""),
                    "logprobs": None,
                    "finish_reason": finish,
                }
                kind_name = "text_completion"
            return _sse(
                {
                    "id": completion_id,
                    "object": kind_name,
                    "created": created,
                    "model": model,
                    "choices": [choice],
                    **extra,
                }
            )

        async def pieces() -> AsyncIterator[tuple[str, Any]]:
            if kind == "ensemble":
                event = first
                while True:
                    if event.kind == "delta":
                        yield "delta", event.text
                    else:
                        yield "result", event.result
                        return
                    event = await anext(events)
            else:
                if first_text:
                    yield "delta", first_text
                async for text in deltas:
                    yield "delta", text
                yield "result", None

        finished = False
        source = pieces()
        scrubber = gateway.scrub.stream()  # member keys never reach the client

        async def close() -> None:
            await source.aclose()  # type: ignore[attr-defined]
            if kind == "ensemble":
                await events.aclose()  # type: ignore[attr-defined]
            else:
                await deltas.aclose()  # type: ignore[attr-defined]
            if not finished:
                self.metrics.cancelled.labels(endpoint).inc()

        async def body() -> AsyncIterator[bytes]:
            nonlocal finished
            try:
                if endpoint == "chat":
                    yield chunk({"role": "assistant", "content": ""}, None)
                while True:
                    remaining = deadline - time.monotonic()
                    try:
                        async with asyncio.timeout(max(0.0, remaining)) as scope:
                            kind_, value = await anext(source)
                    except ApiError as exc:
                        yield _sse(exc.body())
                        break
                    except Exception as exc:
                        # The kind is the cause: the request's own deadline, or the member's
                        # failure (its own timeout included), named.
                        if isinstance(exc, TimeoutError) and scope.expired():
                            message = (
                                f"no complete answer within request_timeout="
                                f"{self.settings.request_timeout:g} s"
                            )
                            error = {"message": message, "type": "timeout_error", "code": "timeout"}
                            yield _sse({"error": error})
                        elif kind != "ensemble":
                            yield _sse(gateway.member_failed(model, exc).body())
                        else:
                            detail = gateway.scrub(f"{type(exc).__name__}: {exc}")
                            log.error("stream failed: %s", detail)
                            message = "the answer failed mid-stream (details in the server log)"
                            yield _sse({"error": {"message": message, "type": "server_error"}})
                        break
                    if kind_ == "delta":
                        safe = scrubber.feed(value)
                        if safe:
                            yield chunk({"content": safe}, None)
                        continue
                    rest = scrubber.flush()
                    if rest:
                        yield chunk({"content": rest}, None)
                    extra: dict[str, Any] = {}
                    if value is not None:
                        extra["blend"] = gateway.finish_stream(model, value, meter)
                    yield chunk({}, "stop", **extra)
                    if include_usage:
                        yield _sse(
                            {
                                "id": completion_id,
                                "object": "chat.completion.chunk"
                                if endpoint == "chat"
                                else "text_completion",
                                "created": created,
                                "model": model,
                                "choices": [],
                                "usage": meter.total().to_dict(),
                            }
                        )
                    break
                yield b"data: [DONE]\n\n"
                finished = True
            finally:
                await source.aclose()  # type: ignore[attr-defined]

        return _Stream.events(body(), close)

    # -- rerank ---------------------------------------------------------------------------------

    async def rerank(self, request: Request, raw: bytes, deadline: float) -> tuple[Response, str]:
        body: RerankRequest = parse_body(raw, RerankRequest)
        name, ranker = self.gateway.reranker_for(body.model)
        documents = body.texts()
        check_texts(
            [("query", body.query)] + [(f"documents[{i}]", d) for i, d in enumerate(documents)],
            self.settings,
            max_items=self.settings.max_documents + 1,
            what="documents",
        )
        if not body.query.strip():
            raise ApiError(422, "query: must not be empty", param="query")
        results = await self.within(
            request, self.gateway.rerank(ranker, body.query, documents, body.top_n), deadline
        )
        out = []
        for index, score in results:
            item: dict[str, Any] = {"index": index, "relevance_score": score}
            if body.return_documents:
                item["document"] = {"text": documents[index]}
            out.append(item)
        payload = {"id": f"rerank-{uuid.uuid4().hex}", "model": name, "results": out}
        return JSONResponse(payload), name


def create_app(
    config: ServeConfig,
    *,
    api_key: str | None = None,
    gateway: Gateway | None = None,
) -> FastAPI:
    """The gateway as a FastAPI app; models load in a thread when the app starts.

    Args:
        config: The checked ``blend.toml``.
        api_key: Bearer key clients must send (``None``: none).
        gateway: A prepared :class:`Gateway` (default: one built from ``config``).
    """
    gateway = gateway or Gateway(config, extra_secrets=(api_key,) if api_key else ())
    state = _App(gateway, api_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.ensure_future(asyncio.to_thread(gateway.load))
        loader.add_done_callback(lambda t: t.cancelled() or t.exception())
        yield

    app = FastAPI(
        title="blender serve",
        description="LLM-Blender as an OpenAI-compatible gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.gateway = gateway
    app.add_middleware(_HeadLimit, limit=config.server.max_header_bytes)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        message = gateway.scrub(f"{type(exc).__name__}: {exc}")
        log.error("internal error on %s: %s", request.url.path, message)
        return JSONResponse(
            {
                "error": {
                    "message": "internal error (details in the server log)",
                    "type": "server_error",
                }
            },
            status_code=500,
        )

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await state.serve(request, "chat", lambda b, d: state.chat(request, b, d))

    @app.post("/v1/blend/stream")
    async def blend_stream(request: Request) -> Response:
        return await state.serve(request, "inspect", lambda b, d: state.inspect(request, b, d))

    @app.get("/")
    async def inspector(request: Request) -> Response:
        state.check_key(request, realm=True)
        return HTMLResponse(
            INSPECTOR_PAGE,
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
                "X-Frame-Options": "DENY",
            },
        )

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await state.serve(
            request, "completions", lambda b, d: state.completions(request, b, d)
        )

    @app.post("/v1/rerank")
    async def rerank(request: Request) -> Response:
        return await state.serve(request, "rerank", lambda b, d: state.rerank(request, b, d))

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        state.check_key(request)
        return JSONResponse({"object": "list", "data": gateway.model_list()})

    @app.get("/health")
    async def health() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/ready")
    async def ready() -> Response:
        if gateway.ready.is_set():
            return JSONResponse({"status": "ready"})
        if gateway.load_error:
            return JSONResponse({"status": "failed", "error": gateway.load_error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        state.check_key(request)
        return Response(gateway.metrics.render(), media_type=CONTENT_TYPE)

    return app


def run(
    config: ServeConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    api_key: str | None = None,
    log_level: str = "info",
) -> None:
    """Serve ``config`` with uvicorn until SIGINT/SIGTERM, then finish in-flight requests.

    Connection limits: ``server.max_header_bytes`` is uvicorn's
    ``h11_max_incomplete_event_size``, ``server.keep_alive_timeout`` its
    ``timeout_keep_alive``, and ``server.header_timeout`` the deadline
    :class:`~blender_core.serve.protocol.GuardedH11Protocol` adds. The access log's query
    strings are blanked (:class:`~blender_core.serve.security.AccessLogFilter`).
    """
    import uvicorn

    from blender_core.serve.protocol import guarded_protocol
    from blender_core.serve.security import AccessLogFilter

    app = create_app(config, api_key=api_key)
    settings = config.server
    access_filter = AccessLogFilter(app.state.gateway.scrub)
    uvicorn_config = uvicorn.Config(
        app,
        host=host or settings.host,
        port=settings.port if port is None else port,
        log_level=log_level,
        http=guarded_protocol(settings.header_timeout),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=settings.keep_alive_timeout,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_timeout),
        server_header=False,
        lifespan="on",
    )
    # uvicorn.Config configures logging when it is built: the filter goes on after that.
    logging.getLogger("uvicorn.access").addFilter(access_filter)
    uvicorn.Server(uvicorn_config).run()
