"""Request bodies of the gateway (pydantic), checked against the server's limits.

Unknown fields are accepted and ignored (clients send many optional OpenAI fields); known fields
are type-checked, and a wrong type is a 422 naming the field (``messages[0].content``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from blender_core.serve.config import ServerSettings
from blender_core.serve.errors import ApiError

__all__ = [
    "ChatCompletionRequest",
    "ChatMessageIn",
    "CompletionRequest",
    "RerankRequest",
    "parse_body",
    "parse_json",
    "validate_body",
]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Open):
    """One ``{"type": "text", "text": ...}`` content part."""

    type: Literal["text"]
    text: str


class StreamOptions(_Open):
    include_usage: bool = False


class FunctionCallIn(_Open):
    name: str = Field(min_length=1)
    arguments: str = ""


class ToolCallIn(_Open):
    """One ``tool_calls`` item of an assistant message (OpenAI's shape)."""

    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(_Open):
    """One chat message: ``role`` and ``content`` (a string or text parts); an assistant
    message may carry ``tool_calls`` and a ``tool`` message answers one (``tool_call_id``)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _Sampling(_Open):
    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    n: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    user: str | None = None


class FunctionSpec(_Open):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolSpec(_Open):
    """One ``tools`` item: ``{"type": "function", "function": {"name", "description",
    "parameters"}}``."""

    type: Literal["function"]
    function: FunctionSpec


class NamedToolChoice(_Open):
    class _Name(_Open):
        name: str

    type: Literal["function"]
    function: _Name


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None

    def chat(self) -> list[dict[str, str]]:
        """The messages as ``{"role", "content"}`` dicts (``developer`` read as ``system``;
        tool calls and tool results written out as text, for members and rankers that read
        text)."""
        out = []
        for m in self.messages:
            if m.role == "tool":
                out.append({"role": "user", "content": f"[tool result] {m.text()}"})
                continue
            text = m.text()
            if m.tool_calls:
                calls = "\n".join(
                    f"{c.function.name}({c.function.arguments})" for c in m.tool_calls
                )
                text = f"{text}\n{calls}".strip()
            out.append({"role": "system" if m.role == "developer" else m.role, "content": text})
        return out

    def openai_messages(self) -> list[dict[str, Any]]:
        """The messages as sent, for members that speak OpenAI's API (``developer`` read as
        ``system``)."""
        out = []
        for m in self.messages:
            message = m.model_dump(exclude_none=True)
            if message["role"] == "developer":
                message["role"] = "system"
            out.append(message)
        return out

    def tool_fields(self) -> dict[str, Any] | None:
        """``tools``/``tool_choice``/``parallel_tool_calls`` for the members, or ``None``
        when the request asks for no tool calls (no tools, or ``tool_choice: "none"``)."""
        if not self.tools or self.tool_choice == "none":
            return None
        fields: dict[str, Any] = {"tools": [t.model_dump(exclude_none=True) for t in self.tools]}
        if self.tool_choice is not None:
            choice = self.tool_choice
            fields["tool_choice"] = choice if isinstance(choice, str) else choice.model_dump()
            if isinstance(choice, NamedToolChoice):
                names = {t.function.name for t in self.tools}
                if choice.function.name not in names:
                    raise ApiError(
                        422,
                        f"tool_choice: {choice.function.name!r} is not one of the tools",
                        param="tool_choice",
                    )
        if self.parallel_tool_calls is not None:
            fields["parallel_tool_calls"] = self.parallel_tool_calls
        return fields


class CompletionRequest(_Sampling):
    """``POST /v1/completions`` (one prompt per request)."""

    prompt: str | list[str]
    echo: bool = False

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise ApiError(
                422,
                f"prompt: one prompt per request (got a list of {len(self.prompt)}); send "
                "several requests instead",
                param="prompt",
            )
        return self.prompt[0]


class DocumentIn(_Open):
    text: str


class RerankRequest(_Open):
    """``POST /v1/rerank``: the request shape that Cohere, Jina, TEI and vLLM share."""

    model: str | None = None
    query: str
    documents: list[str | DocumentIn] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("str", "list[TextPart]", "DocumentIn", "list[str]", "function-after") or (
            "[" in item or item.startswith("tagged-union")
        ):
            continue
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts)


MAX_DEPTH = 64
"""Deepest nesting of arrays and objects a request body may have (400 past it)."""

_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_json(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object; 400 for anything else.

    Not JSON, not UTF-8, not an object, nested deeper than :data:`MAX_DEPTH`, or holding a
    lone surrogate (``"\\ud800"``: valid JSON, but no Unicode text) are all 400s.
    """
    try:
        data = json.loads(raw)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(
            400, f"the body must be a JSON object, got {type(data).__name__}", code="invalid_json"
        )
    _check_tree(data, surrogates=_ESCAPED_SURROGATE.search(raw) is not None)
    return data


def _too_deep() -> ApiError:
    return ApiError(
        400, f"the body is nested more than {MAX_DEPTH} levels deep", code="invalid_json"
    )


def _check_tree(data: Any, *, surrogates: bool) -> None:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list) and depth > MAX_DEPTH:
            raise _too_deep()
        if isinstance(node, dict):
            for key, value in node.items():
                if surrogates:
                    _check_text(key)
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif surrogates and isinstance(node, str):
            _check_text(node)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(
            400,
            f"the body holds a lone surrogate (\\u{ord(text[exc.start]):04x}), which is not text",
            code="invalid_json",
        ) from None


def validate_body(data: dict[str, Any], model: type[Any]) -> Any:
    """Check a parsed body against ``model``; a 422 naming the fields otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        seen: dict[str, str] = {}
        for error in errors:
            key = _location(error["loc"])
            seen.setdefault(key, error["msg"])
        lines = [f"{key}: {msg}" if key else msg for key, msg in seen.items()]
        first = next(iter(seen), None)
        raise ApiError(
            422, "; ".join(lines[:5]), param=first or None, code="invalid_value"
        ) from None


def parse_body(raw: bytes, model: type[Any]) -> Any:
    """Parse a JSON body into ``model``; a 400 (not JSON) or 422 (wrong fields) otherwise."""
    return validate_body(parse_json(raw), model)


def check_texts(
    texts: list[tuple[str, str]], settings: ServerSettings, *, max_items: int, what: str
) -> None:
    """413 when a text, or all of them, exceed the server's limits; 422 for too many items.

    Args:
        texts: ``(field, text)`` pairs.
        settings: The limits.
        max_items: Most items allowed.
        what: Their name in the message (``messages``, ``documents``).
    """
    if len(texts) > max_items:
        raise ApiError(
            422,
            f"{what}: at most {max_items} per request, got {len(texts)}",
            param=what,
            code="too_many_items",
        )
    total = 0
    for key, text in texts:
        if len(text) > settings.max_text_chars:
            raise ApiError(
                413,
                f"{key}: {len(text)} characters, more than max_text_chars="
                f"{settings.max_text_chars}",
                param=key,
                code="text_too_long",
            )
        total += len(text)
    if total > settings.max_total_chars:
        raise ApiError(
            413,
            f"{what}: {total} characters in all, more than max_total_chars="
            f"{settings.max_total_chars}",
            param=what,
            code="text_too_long",
        )
