"""Members, rankers and fusers built from ``blend.toml``, and per-request token usage.

Usage: a request opens a :class:`UsageMeter` (:func:`metering`); every member call made for it,
in whatever task or worker thread, adds the tokens it spent (the upstream's own ``usage`` for
OpenAI-compatible members, the tokenizer's count for local models, nothing for ``static``
members). The meter travels in a :class:`contextvars.ContextVar`, which asyncio tasks and
``asyncio.to_thread`` copy, so concurrent requests never mix their counts.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from blender_core.fusion.base import Fuser
from blender_core.generators.base import BaseGenerator, Generator
from blender_core.generators.openai_compatible import OpenAICompatibleGenerator
from blender_core.ranking import Ranker
from blender_core.serve.config import (
    GenFuserSpec,
    HuggingFaceMember,
    LLMFuserSpec,
    OpenAIMember,
    SelectFuserSpec,
    ServeConfig,
    SmolLM2Member,
    StaticMember,
)
from blender_core.types import Prompt, chat_messages, prompt_to_text

__all__ = [
    "USAGE_METER",
    "MemberError",
    "StaticGenerator",
    "Usage",
    "UsageMeter",
    "build_fuser",
    "build_members",
    "build_ranker",
    "build_reranker",
    "current_meter",
    "load_member",
    "metering",
    "request_prompt",
    "secret_values",
]


class MemberError(ValueError):
    """A member cannot be built (e.g. its key's environment variable is unset)."""


@dataclass
class Usage:
    """Token counts of one member (or of a whole request)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass
class UsageMeter:
    """Token usage of one request, by member (thread-safe)."""

    by_member: dict[str, Usage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, member: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            usage = self.by_member.setdefault(member, Usage())
            usage.prompt_tokens += max(0, int(prompt_tokens))
            usage.completion_tokens += max(0, int(completion_tokens))

    def tokens_of(self, member: str) -> tuple[int, int] | None:
        """``(prompt, completion)`` tokens counted for ``member`` so far (``None``: none)."""
        with self._lock:
            usage = self.by_member.get(member)
            return None if usage is None else (usage.prompt_tokens, usage.completion_tokens)

    def total(self) -> Usage:
        with self._lock:
            return Usage(
                sum(u.prompt_tokens for u in self.by_member.values()),
                sum(u.completion_tokens for u in self.by_member.values()),
            )


USAGE_METER: contextvars.ContextVar[UsageMeter | None] = contextvars.ContextVar(
    "blender_serve_usage", default=None
)


def current_meter() -> UsageMeter | None:
    """The meter of the request being served in this context, if any."""
    return USAGE_METER.get()


@contextmanager
def metering(meter: UsageMeter | None = None) -> Iterator[UsageMeter]:
    """Count the calls made inside the block in ``meter`` (a fresh :class:`UsageMeter` when
    none is given)."""
    meter = UsageMeter() if meter is None else meter
    token = USAGE_METER.set(meter)
    try:
        yield meter
    finally:
        USAGE_METER.reset(token)


# -- member kinds -------------------------------------------------------------------------------


class StaticGenerator(BaseGenerator):
    """A deterministic member: always ``text`` (``{prompt}`` -> the last user message).

    Args:
        name: Member name.
        text: The answer template.
        delay: Seconds before answering (``asyncio.sleep`` on the async path).
        stream_words: :meth:`astream` yields word by word instead of once.
        word_delay: Seconds :meth:`astream` waits between words.
    """

    def __init__(
        self,
        name: str,
        text: str,
        *,
        delay: float = 0.0,
        stream_words: bool = True,
        word_delay: float = 0.0,
    ) -> None:
        super().__init__(name)
        if not text:
            raise ValueError("a static member needs a non-empty text")
        self.text = text
        self.delay = delay
        self.stream_words = stream_words
        self.word_delay = word_delay

    def _answer(self, prompt: Prompt) -> str:
        return self.text.replace("{prompt}", prompt_to_text(prompt))

    def generate(self, prompt: Prompt, **kwargs: Any) -> str:
        if self.delay:
            time.sleep(self.delay)
        return self._answer(prompt)

    async def agenerate(self, prompt: Prompt, **kwargs: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        return self._answer(prompt)

    async def astream(self, prompt: Prompt, **kwargs: Any) -> AsyncIterator[str]:
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = self._answer(prompt)
        if not self.stream_words:
            yield answer
            return
        words = answer.split(" ")
        for i, word in enumerate(words):
            if i:
                await asyncio.sleep(self.word_delay)
            yield word if i == 0 else " " + word


def _metered(member: str) -> Callable[[dict[str, int]], None]:
    """An ``on_usage`` hook that adds ``member``'s reported tokens to the request's meter."""

    def add(usage: dict[str, int]) -> None:
        meter = current_meter()
        if meter is not None:
            meter.add(member, usage["prompt_tokens"], usage["completion_tokens"])

    return add


class _LocalMember(BaseGenerator):
    """A local Hugging Face model with fixed extra options; token usage from its tokenizer."""

    def __init__(self, inner: Any, **options: Any) -> None:
        super().__init__(inner.name)
        self.inner = inner
        self.options = {k: v for k, v in options.items() if v is not None}

    def _meter(self, prompt: Prompt, answer: str) -> None:
        meter = current_meter()
        if meter is None:
            return
        tokenizer = self.inner.tokenizer
        rendered = self.inner.render_prompt(prompt)
        meter.add(
            self.name,
            len(tokenizer(rendered, add_special_tokens=False)["input_ids"]),
            len(tokenizer(answer, add_special_tokens=False)["input_ids"]),
        )

    def load(self) -> None:
        self.inner.load()

    def generate(self, prompt: Prompt, **kwargs: Any) -> str:
        answer = str(self.inner.generate(prompt, **{**self.options, **kwargs}))
        self._meter(prompt, answer)
        return answer

    async def agenerate(self, prompt: Prompt, **kwargs: Any) -> str:
        return await asyncio.to_thread(self.generate, prompt, **kwargs)

    async def astream(self, prompt: Prompt, **kwargs: Any) -> AsyncIterator[str]:
        parts: list[str] = []
        async for delta in self.inner.astream(prompt, **{**self.options, **kwargs}):
            parts.append(delta)
            yield delta
        await asyncio.to_thread(self._meter, prompt, "".join(parts))


def _env_key(name: str, member: str, variable: str | None) -> str | None:
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise MemberError(
            f"members.{name}.api_key_env: the environment variable {variable} is not set "
            f"(it should hold the key of member {member!r})"
        )
    return value


def build_members(config: ServeConfig) -> dict[str, Generator]:
    """One generator per ``[members.NAME]``; local models of the same checkpoint share weights.

    Models are not loaded here (see :func:`load_member`).

    Raises:
        MemberError: an ``api_key_env`` variable is unset.
    """
    members: dict[str, Generator] = {}
    shared: dict[tuple[Any, ...], Any] = {}
    for name, spec in config.members.items():
        if isinstance(spec, StaticMember):
            members[name] = StaticGenerator(
                name,
                spec.text,
                delay=spec.delay,
                stream_words=spec.stream_words,
                word_delay=spec.word_delay,
            )
        elif isinstance(spec, OpenAIMember):
            members[name] = OpenAICompatibleGenerator(
                spec.model,
                base_url=spec.base_url,
                api_key=_env_key(name, name, spec.api_key_env),
                name=name,
                system_prompt=spec.system_prompt,
                temperature=spec.temperature,
                max_tokens=spec.max_tokens,
                timeout=spec.timeout,
                max_retries=spec.max_retries,
                extra_body=spec.extra_body,
                on_usage=_metered(name),
            )
        else:
            members[name] = _local_member(name, spec, shared)
    return members


def _local_member(
    name: str, spec: HuggingFaceMember | SmolLM2Member, shared: dict[tuple[Any, ...], Any]
) -> Generator:
    from blender_core.generators.huggingface import HuggingFaceGenerator

    if isinstance(spec, SmolLM2Member):
        key: tuple[Any, ...] = ("smollm2", spec.device)
        if key not in shared:
            shared[key] = HuggingFaceGenerator.smollm2(device=spec.device)
    else:
        key = ("hf", spec.model, spec.gguf_file, spec.device, spec.dtype)
        if key not in shared:
            shared[key] = HuggingFaceGenerator(
                spec.model, gguf_file=spec.gguf_file, device=spec.device, dtype=spec.dtype
            )
    copy = shared[key].with_options(
        name=name,
        system_prompt=spec.system_prompt,
        max_new_tokens=spec.max_new_tokens,
        temperature=spec.temperature,
        top_p=spec.top_p,
        do_sample=spec.temperature > 0,
        seed=spec.seed,
    )
    return _LocalMember(copy, repetition_penalty=spec.repetition_penalty)


def load_member(member: Generator) -> None:
    """Load a local member's weights now (other members need nothing)."""
    load = getattr(member, "load", None)
    if callable(load):
        load()


def build_ranker(spec: Any, members: Mapping[str, Generator]) -> Ranker:
    """A ranker from an ensemble's ``ranker`` spec, through the one factory
    (:func:`blender_core.loading.load_ranker`; models load here)."""
    from blender_core.loading import load_ranker

    options = spec.model_dump()
    if "member" in options:  # the judging member's name -> the member itself
        options["judge"] = members[options.pop("member")]
    ranker = load_ranker(options)
    load = getattr(ranker, "load", None)
    if callable(load):
        load()
    return ranker


def build_reranker(spec: Any) -> Ranker:
    """A ranker for ``/v1/rerank`` from a ``[rerankers.NAME]`` spec."""
    return build_ranker(spec, {})


def build_fuser(spec: Any, members: Mapping[str, Generator], *, top_k: int) -> Fuser:
    """A fuser from an ensemble's ``fuser`` spec, through the one factory
    (:func:`blender_core.loading.load_fuser`; models load here)."""
    from blender_core.loading import load_fuser

    if isinstance(spec, SelectFuserSpec):
        return load_fuser("select")
    if isinstance(spec, GenFuserSpec):
        return load_fuser(spec.checkpoint, device=spec.device, dtype=spec.dtype)
    if isinstance(spec, LLMFuserSpec):
        from blender_core.fusion.llm_fuser import LLMFuser

        return LLMFuser(members[spec.member], max_candidates=spec.max_candidates or top_k)
    raise TypeError(f"unknown fuser spec {spec!r}")


def secret_values(config: ServeConfig) -> list[str]:
    """Strings that must never leave the server: member keys and credentials in member URLs."""
    from urllib.parse import urlsplit

    secrets: list[str] = []
    for spec in config.members.values():
        if isinstance(spec, OpenAIMember):
            if spec.api_key_env and os.environ.get(spec.api_key_env):
                secrets.append(os.environ[spec.api_key_env])
            parts = urlsplit(spec.base_url)
            if parts.password:
                secrets.append(parts.password)
            if parts.username:
                secrets.append(parts.username)
            # A base_url has no query string (the config refuses one), so no query values
            # here: blanking them would blank ordinary words such as an API version.
    return sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)


def request_prompt(messages: list[dict[str, str]]) -> tuple[str, str]:
    """``(instruction, input)`` the ranker and fuser see for a chat: the one chat policy,
    :func:`blender_core.chat.chat_prompt` (the latest user message; the rest of the
    conversation, one ``role: content`` paragraph each, as the input)."""
    from blender_core.chat import chat_prompt

    return chat_prompt(chat_messages(messages))
