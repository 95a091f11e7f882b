"""Small shared types: chat messages and prompts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

__all__ = ["ChatMessage", "Prompt", "prompt_to_text"]

ChatMessage: TypeAlias = Mapping[str, str]
"""A chat message as ``{"role": "system" | "user" | "assistant", "content": "..."}``."""

Prompt: TypeAlias = str | Sequence[ChatMessage]
"""What a generator answers: a plain prompt string or a chat (a list of messages)."""


def prompt_to_text(prompt: Prompt) -> str:
    """The text a ranker or fuser sees as the instruction for ``prompt``.

    A string is returned as is; for a chat, the last user message is the instruction.
    """
    if isinstance(prompt, str):
        return prompt
    for message in reversed(list(prompt)):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    raise ValueError("a chat prompt needs at least one user message")
