"""Small shared types: chat messages and prompts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

__all__ = ["ChatMessage", "Prompt", "chat_messages", "prompt_to_text"]

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


def chat_messages(prompt: Prompt, system_prompt: str | None = None) -> list[dict[str, str]]:
    """``prompt`` as a new list of ``{"role", "content"}`` dicts (a string is one user message).

    ``system_prompt``, when given, is put first unless the chat already starts with a system
    message. Raises ``TypeError`` for a message without a role or a prompt of another type, and
    ``ValueError`` for an empty chat.
    """
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, Sequence):
        messages = []
        for i, message in enumerate(prompt):
            if not isinstance(message, Mapping) or "role" not in message:
                raise TypeError(
                    f"chat message {i} must be a mapping with 'role' and 'content', got {message!r}"
                )
            messages.append(
                {"role": str(message["role"]), "content": str(message.get("content", ""))}
            )
        if not messages:
            raise ValueError("a chat prompt needs at least one message")
    else:
        raise TypeError(
            f"prompt must be a str or a list of chat messages, got {type(prompt).__name__}"
        )
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages
