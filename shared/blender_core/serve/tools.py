"""Tool calls through the gateway: each member proposes (OpenAI-compatible members with their
own tool calls, the others with text), and :func:`blender_core.tool_calls.aselect_tool_calls`
(the path the LangChain and LlamaIndex adapters use) ranks the proposals and selects one, never
fusing them.

:func:`openai_message` asks an OpenAI-compatible member for a whole assistant message (text and
``tool_calls``) through the member's own hardened client: its deadline, retries, redirect refusal,
response-size cap, key redaction and usage reporting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from blender_core.generators.errors import GeneratorError
from blender_core.generators.openai_compatible import OpenAICompatibleGenerator
from blender_core.tool_calls import ToolCall, ToolProposal

__all__ = ["openai_message", "proposal_from_message", "tool_prompt"]


def _body(
    member: OpenAICompatibleGenerator,
    messages: Sequence[Mapping[str, Any]],
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    chat = [dict(m) for m in messages]
    if member.system_prompt and not any(m.get("role") == "system" for m in chat):
        chat.insert(0, {"role": "system", "content": member.system_prompt})
    body: dict[str, Any] = {"model": member.model, "messages": chat}
    if member.temperature is not None:
        body["temperature"] = member.temperature
    if member.max_tokens is not None:
        body["max_tokens"] = member.max_tokens
    body.update(member.extra_body)
    extra = dict(fields)
    if "max_new_tokens" in extra:
        extra.setdefault("max_tokens", extra.pop("max_new_tokens"))
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def _message(member: OpenAICompatibleGenerator, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise GeneratorError(f"{member.name}: malformed response: not JSON") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise GeneratorError(f"{member.name}: malformed response: no 'choices' list")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise GeneratorError(f"{member.name}: malformed response: no 'message' in choices[0]")
    member._report_usage(data.get("usage"))
    return message


async def openai_message(
    member: OpenAICompatibleGenerator,
    messages: Sequence[Mapping[str, Any]],
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """The member's assistant message (``content`` and ``tool_calls``) for an OpenAI chat.

    Args:
        member: The OpenAI-compatible member.
        messages: The chat in OpenAI's shape (tool calls and tool results included); the
            member's ``system_prompt`` goes first when the chat has no system message.
        fields: Request fields: ``tools``, ``tool_choice``, ``max_new_tokens``...

    Raises:
        GeneratorError: The call failed or the answer is malformed (key redacted);
            ``GeneratorTimeoutError`` past the member's ``timeout``.
    """
    body = _body(member, messages, fields)
    loop = asyncio.get_running_loop()
    deadline = None if member.timeout is None else loop.time() + member.timeout
    try:
        async with asyncio.timeout_at(deadline) as scope:
            async with member._client() as client, contextlib.AsyncExitStack() as stack:
                response = await member._open(stack, client, body, deadline)
                raw = await member._read(response)
                if response.status_code >= 300:  # pragma: no cover - _open raises for these
                    raise GeneratorError(f"{member.name}: HTTP {response.status_code}")
                return _message(member, raw)
    except TimeoutError:
        if scope.expired():
            raise member._timeout_error("total deadline") from None
        raise


def proposal_from_message(message: Mapping[str, Any]) -> ToolProposal:
    """A member's OpenAI assistant message as a :class:`ToolProposal` (the message is kept as
    ``raw``). Raises ``ValueError`` for a tool call that is not valid."""
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    calls = tuple(ToolCall.from_openai(c) for c in (message.get("tool_calls") or []))
    return ToolProposal(text=text, tool_calls=calls, raw=dict(message))


def _render(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    text = str(content or "")
    calls = []
    for item in message.get("tool_calls") or []:
        function = item.get("function") or {}
        calls.append(f"{function.get('name')}({function.get('arguments') or '{}'})")
    return "\n".join(part for part in (text, *calls) if part)


def tool_prompt(messages: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """``(instruction, input)`` the ranker reads for a chat with tool calls: the last user
    message, and every other message (tool calls and results included) as context."""
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        raise ValueError("a chat needs at least one user message")
    last = users[-1]
    context = "\n\n".join(
        f"{m.get('role')}: {_render(m)}" for i, m in enumerate(messages) if i != last
    )
    return _render(messages[last]), context
