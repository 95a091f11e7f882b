"""The one chat-to-instruction policy: what the ranker and the fuser read for a conversation.

Every front (the LangChain ``ChatBlender``, LlamaIndex ``BlenderLLM``, the gateway's
``/v1/chat/completions``) turns its messages into ``(role, content)`` turns and calls
:func:`chat_prompt`, so that the same conversation is ranked on the same text everywhere:

* the **instruction** is the latest user message (the question being answered);
* the **input** is the rest of the conversation, in order (system prompt, earlier turns, tool
  results after the latest user message), one ``role: content`` paragraph each, separated by a
  blank line; empty for a single-turn chat.

A ranker reads ``instruction + "\\n\\n" + input`` as its source (PairRM's MixInstruct
instruction/input layout) and a fuser gets both in their places. A conversation without a user
message takes its last message as the instruction. Roles are normalised to the OpenAI names
(``user``, ``assistant``, ``system``, ``tool``): LangChain's ``human``/``ai`` become
``user``/``assistant``.

Members are not given this rendering: each front calls its members with the conversation as is.

Example:
    .. code-block:: python

        from blender_core.chat import chat_prompt

        chat_prompt([("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"),
                     ("user", "Capital of France?")])
        # ("Capital of France?", "system: Be brief.\\n\\nuser: Hi\\n\\nassistant: Hello!")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ROLE_ALIASES", "ChatPrompt", "chat_prompt", "normalise_role"]

ROLE_ALIASES: Mapping[str, str] = {
    "human": "user",
    "ai": "assistant",
    "chatbot": "assistant",
    "model": "assistant",
    "function": "tool",
    "developer": "system",
}
"""Other frameworks' role names and the OpenAI name each is rendered as."""

ChatPrompt = tuple[str, str]
"""``(instruction, input)``."""


def normalise_role(role: Any) -> str:
    """A role as its OpenAI name (``"human"`` -> ``"user"``; enum values by their value)."""
    value = getattr(role, "value", role)
    text = str(value).strip().lower()
    return ROLE_ALIASES.get(text, text)


def _turn(position: int, message: Any) -> tuple[str, str]:
    if isinstance(message, Mapping):
        role, content = message.get("role"), message.get("content")
    elif isinstance(message, tuple | list) and len(message) == 2:
        role, content = message
    else:
        raise TypeError(
            f"message {position} must be a (role, content) pair or a {{'role', 'content'}} "
            f"mapping, got {type(message).__name__}"
        )
    if not isinstance(role, str) and getattr(role, "value", None) is None:
        raise TypeError(f"message {position} has no role (a string)")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise TypeError(
            f"message {position}: content must be a string, got {type(content).__name__}"
        )
    return normalise_role(role), content


def chat_prompt(messages: Sequence[Any]) -> ChatPrompt:
    """``(instruction, input)`` for a conversation (see the module docs).

    Args:
        messages: The conversation, oldest first: ``(role, content)`` pairs or
            ``{"role", "content"}`` mappings (content ``None`` reads as empty).

    Raises:
        ValueError: the conversation is empty.
        TypeError: a message is neither a pair nor a mapping, or its content is not text.
    """
    if isinstance(messages, str) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list, got {type(messages).__name__}")
    turns = [_turn(i, m) for i, m in enumerate(messages)]
    if not turns:
        raise ValueError("the conversation is empty: nothing to answer")
    users = [i for i, (role, _) in enumerate(turns) if role == "user"]
    latest = users[-1] if users else len(turns) - 1
    history = "\n\n".join(
        f"{role}: {content}" for i, (role, content) in enumerate(turns) if i != latest
    )
    return turns[latest][1], history
