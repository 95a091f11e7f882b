"""Tool calls through the gateway: each member proposes (OpenAI-compatible members with their
own tool calls, the others with text), and :func:`blender_core.tool_calls.aselect_tool_calls`
(the path the LangChain and LlamaIndex adapters use) ranks the proposals and selects one, never
fusing them.

An OpenAI-compatible member's whole assistant message (text and ``tool_calls``) comes from its
public :meth:`~blender_core.generators.openai_compatible.OpenAICompatibleGenerator.achat_message`:
the member's own hardened client, deadline, retries, redirect refusal, response-size cap, key
redaction and usage reporting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from blender_core.generators.openai_compatible import ChatMessageResult
from blender_core.tool_calls import ToolProposal

__all__ = ["proposal_from_result", "tool_prompt"]


def proposal_from_result(result: ChatMessageResult) -> ToolProposal:
    """A member's assistant message as a :class:`ToolProposal` (the message kept as ``raw``)."""
    return ToolProposal(text=result.text, tool_calls=result.tool_calls, raw=dict(result.raw))


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
