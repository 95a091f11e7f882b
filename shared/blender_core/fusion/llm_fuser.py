"""Fusion by any LLM: a synthesis prompt in the Mixture-of-Agents style over the top candidates."""

from __future__ import annotations

import asyncio
import logging
import random
import string
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from blender_core.fencing import Fence
from blender_core.fusion.base import BaseFuser, validate_fuse_inputs
from blender_core.generators.base import Generator, _StripDeltas
from blender_core.generators.deadline import (
    DeadlineExceeded,
    aiterate_with_deadline,
    call_with_timeout,
    iterate_with_deadline,
)
from blender_core.generators.errors import GeneratorTimeoutError

__all__ = ["DEFAULT_FUSION_TEMPLATE", "LLMFuser"]

logger = logging.getLogger(__name__)

DEFAULT_FUSION_TEMPLATE = (
    "Several AI assistants answered the request below. Their responses are listed after it, "
    "best first. Write one high-quality response to the request by synthesising them.\n"
    "- Evaluate the responses critically: some of their content may be wrong, biased or "
    "incomplete.\n"
    "- Keep what is correct and useful, combine their strengths, and fix their errors and "
    "omissions.\n"
    "- Do not copy any single response, and do not mention the responses, the assistants or "
    "this task: answer the request directly.\n"
    "{notice}\n\n"
    "Request:\n{instruction}{input_section}\n\n"
    "Responses ({num_candidates}):\n{candidates}\n\n"
    "Your response:"
)
"""The default synthesis prompt. Placeholders: see :class:`LLMFuser`."""

_ALLOWED = frozenset(
    {"instruction", "input", "input_section", "candidates", "num_candidates", "notice"}
)
_REQUIRED = frozenset({"instruction", "candidates"})


def _validate_template(template: str) -> str:
    if not isinstance(template, str):
        raise TypeError(f"prompt_template must be a str, got {type(template).__name__}")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"prompt_template is not a valid format string: {exc}") from exc
    unknown = {f for f in fields if f.split(".")[0].split("[")[0] not in _ALLOWED}
    if "" in fields or unknown:
        bad = sorted(unknown | ({"{}"} if "" in fields else set()))
        raise ValueError(
            f"prompt_template has unknown placeholders {bad}; allowed: {sorted(_ALLOWED)}"
        )
    missing = _REQUIRED - fields
    if missing:
        raise ValueError(f"prompt_template must contain the placeholders {sorted(missing)}")
    return template


class LLMFuser(BaseFuser):
    """Fuses the top-ranked candidates with any :class:`~blender_core.generators.base.Generator`.

    The generator gets one synthesis prompt (our own, in the spirit of Mixture-of-Agents): evaluate
    the candidates critically, combine their strengths, correct their errors, answer directly
    without copying or mentioning them.

    Args:
        generator: The LLM that writes the fused answer.
        prompt_template: A ``str.format`` template. Placeholders: ``{instruction}``,
            ``{candidates}`` (required), ``{input}``, ``{input_section}`` (``"\\n\\nInput:\\n..."``
            or empty), ``{num_candidates}`` and ``{notice}`` (the sentence saying that fenced
            text is data). The instruction, the input and every candidate are filled in between
            marker lines with a nonce drawn per call (see :mod:`blender_core.fencing`), so a
            candidate cannot add fake numbered entries or its own "Your response:" line.
        max_candidates: Use at most this many candidates (the best ones); ``None`` uses all.
        timeout: Seconds the generator may take for one fused answer (a whole stream included);
            past it :class:`~blender_core.generators.errors.GeneratorTimeoutError` is raised.
            ``None`` (default) leaves the bound to the generator (and to ``Blender``'s
            ``fuse_timeout``).
        **generate_kwargs: Passed to ``generator.generate`` on every call (call-time keyword
            arguments override them).

    If the generator returns only whitespace, the best candidate is returned (with a warning).
    :meth:`stream` / :meth:`astream` stream the generator's answer as text deltas (surrounding
    whitespace trimmed as :meth:`fuse` does, so their concatenation equals the fused answer).

    Example:
        .. code-block:: python

            from blender_core import CallableGenerator, LLMFuser

            llm = CallableGenerator(lambda prompt, **kw: "Paris is the capital of France.")
            fuser = LLMFuser(llm, max_candidates=3)
            fuser.fuse("Capital of France?", ["Paris.", "It's Paris.", "Lyon."])
    """

    def __init__(
        self,
        generator: Generator,
        *,
        prompt_template: str | None = None,
        max_candidates: int | None = None,
        timeout: float | None = None,
        **generate_kwargs: Any,
    ) -> None:
        if not (callable(getattr(generator, "generate", None)) and hasattr(generator, "agenerate")):
            raise TypeError(
                "LLMFuser needs a Generator (with generate/agenerate), "
                f"got {type(generator).__name__}"
            )
        if max_candidates is not None and (
            not isinstance(max_candidates, int) or max_candidates < 1
        ):
            raise ValueError(
                f"max_candidates must be a positive int or None, got {max_candidates!r}"
            )
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
        self.generator = generator
        self.timeout = timeout
        self.prompt_template = _validate_template(
            DEFAULT_FUSION_TEMPLATE if prompt_template is None else prompt_template
        )
        self.max_candidates = max_candidates
        self.generate_kwargs = generate_kwargs

    def build_prompt(
        self,
        instruction: str,
        candidates: Sequence[str],
        input: str = "",
        *,
        rng: random.Random | None = None,
    ) -> str:
        """The synthesis prompt the generator receives.

        Args:
            instruction: The request.
            candidates: The candidates, best first.
            input: Optional input of the request.
            rng: Draws the fence nonce (reproducible prompts for tests); ``None`` (default)
                uses :mod:`secrets`.
        """
        texts = validate_fuse_inputs(instruction, candidates, input, fuser="LLMFuser")
        used = texts[: self.max_candidates]
        fence = Fence(rng)
        listing = "\n\n".join(fence.wrap(f"response {i}", c) for i, c in enumerate(used, start=1))
        return self.prompt_template.format(
            notice=fence.notice(),
            instruction=fence.wrap("request", instruction),
            input=fence.wrap("input", input),
            input_section=f"\n\nInput:\n{fence.wrap('input', input)}" if input.strip() else "",
            candidates=listing,
            num_candidates=len(used),
        )

    def _finish(self, text: Any, candidates: Sequence[str]) -> str:
        if not isinstance(text, str):
            raise TypeError(
                f"generator {self.generator.name!r} returned {type(text).__name__}, not str"
            )
        text = text.strip()
        if not text:
            logger.warning(
                "fusion generator %r returned an empty answer; using the best candidate",
                self.generator.name,
            )
            return candidates[0]
        return text

    def _timeout_error(self) -> GeneratorTimeoutError:
        return GeneratorTimeoutError(
            f"fusion generator {self.generator.name!r} gave no fused answer within "
            f"{self.timeout:g} s"
        )

    @contextmanager
    def _deadline(self) -> Iterator[None]:
        """The fusion deadline passing inside the block raises :meth:`_timeout_error`."""
        try:
            yield
        except DeadlineExceeded:
            raise self._timeout_error() from None

    def _request(
        self, instruction: str, candidates: Sequence[str], input: str, kwargs: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """The prompt and the generation options of one fusion call."""
        return self.build_prompt(instruction, candidates, input), {**self.generate_kwargs, **kwargs}

    def _deltas(
        self,
        method: str,
        whole: Callable[[Generator, str, dict[str, Any]], Any],
        request: tuple[str, dict[str, Any]],
    ) -> Any:
        """The generator's ``method`` (``stream``/``astream``) over ``request``; a generator
        without it gives its whole answer as one delta (``whole``)."""
        prompt, options = request
        streams = getattr(self.generator, method, None)
        return streams(prompt, **options) if callable(streams) else whole(self.generator, *request)

    def fuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kwargs: Any
    ) -> str:
        prompt, options = self._request(instruction, candidates, input, kwargs)
        with self._deadline():
            text = call_with_timeout(self.generator.generate, self.timeout, prompt, **options)
        return self._finish(text, candidates)

    async def afuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kwargs: Any
    ) -> str:
        prompt, options = self._request(instruction, candidates, input, kwargs)
        try:
            async with asyncio.timeout(self.timeout) as scope:
                text = await self.generator.agenerate(prompt, **options)
        except TimeoutError:
            if scope.expired():
                raise self._timeout_error() from None
            raise
        return self._finish(text, candidates)

    def stream(
        self, instruction: str, candidates: Sequence[str], input: str = "", **kwargs: Any
    ) -> Iterator[str]:
        """The fused answer as text deltas, streamed from the generator's ``stream``.

        A generator without ``stream`` gives its whole answer as one delta. The deltas'
        concatenation equals what :meth:`fuse` returns for the same generator output.

        Example:
            .. code-block:: python

                for delta in fuser.stream("Capital of France?", ["Paris.", "Lyon."]):
                    print(delta, end="", flush=True)
        """
        request = self._request(instruction, candidates, input, kwargs)
        source = self._deltas("stream", _one_sync, request)
        trim = _StripDeltas(f"generator {self.generator.name!r}")
        with self._deadline():
            for delta in iterate_with_deadline(source, self.timeout):
                text = trim.feed(delta)
                if text:
                    yield text
        if not trim.started:
            yield self._finish("", candidates)

    async def astream(
        self, instruction: str, candidates: Sequence[str], input: str = "", **kwargs: Any
    ) -> AsyncIterator[str]:
        """Async :meth:`stream` (the generator's ``astream``, else one ``agenerate`` delta).

        Example:
            .. code-block:: python

                async for delta in fuser.astream("Capital of France?", ["Paris.", "Lyon."]):
                    print(delta, end="", flush=True)
        """
        request = self._request(instruction, candidates, input, kwargs)
        source = self._deltas("astream", _one, request)
        trim = _StripDeltas(f"generator {self.generator.name!r}")
        with self._deadline():
            async for delta in aiterate_with_deadline(source, self.timeout):
                text = trim.feed(delta)
                if text:
                    yield text
        if not trim.started:
            yield self._finish("", candidates)

    def __repr__(self) -> str:
        return f"LLMFuser(generator={self.generator.name!r}, max_candidates={self.max_candidates})"


def _one_sync(generator: Generator, prompt: str, options: dict[str, Any]) -> Iterator[str]:
    yield generator.generate(prompt, **options)


async def _one(generator: Generator, prompt: str, options: dict[str, Any]) -> AsyncIterator[str]:
    yield await generator.agenerate(prompt, **options)
