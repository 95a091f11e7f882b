"""What the gateway does for a request, apart from HTTP: blend, pass through, rerank.

:class:`Gateway` owns the members, the shared rankers and fusers and the metrics. For each chat
request it builds a light per-request :class:`~blender_core.blend.Blender` whose members are the
configured ones bound to the request's chat (:class:`~blender_core.serve.members.RequestMember`)
while the ranker and fuser objects are shared by every request (loaded once). Concurrent requests
call one shared PairRanker, which schedules their pairs itself
(:class:`~blender_core.pair_scheduler.PairScheduler`: shared rounds on accelerators, one request
per round on CPU unless ``share_batches``); the gateway adds no batching of its own.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar, cast

from blender_core.blend import Blender, BlendError, BlendResult, BlendStreamEvent, ModelFailure
from blender_core.fusion.base import Fuser
from blender_core.generators.base import BaseGenerator, Generator
from blender_core.generators.timing import note_retry_error
from blender_core.members import (
    MemberResults,
    Outcome,
    error_failure,
)
from blender_core.policies import MemberCost, Policy
from blender_core.priors import MemberPriors
from blender_core.ranking import Ranker, arank_with
from blender_core.serve.config import (
    EnsembleConfig,
    JudgeRankerSpec,
    LLMFuserSpec,
    ServeConfig,
)
from blender_core.serve.errors import ApiError
from blender_core.serve.members import (
    UsageMeter,
    build_fuser,
    build_members,
    build_ranker,
    build_reranker,
    load_member,
    metering,
    request_prompt,
    secret_values,
)
from blender_core.serve.metrics import Metrics
from blender_core.serve.security import Scrubber
from blender_core.serve.tools import proposal_from_result, tool_prompt
from blender_core.staging import CallReport, StageStep, StageTracer
from blender_core.tool_calls import ToolCall, ToolProposal, aselect_tool_calls
from blender_core.types import Prompt

__all__ = [
    "Answer",
    "Gateway",
    "ToolRequest",
    "blend_metadata",
    "preference_matrix",
    "public_message",
    "scrub_tree",
    "with_operator_prompt",
]

log = logging.getLogger("blender_core.serve")

M = TypeVar("M", bound=Mapping[str, Any])


@dataclass
class Answer:
    """A finished answer: its text, the usage summed over every member call, the blend, and
    the tool calls it makes (OpenAI ``tool_calls`` items; empty for a text answer)."""

    text: str
    usage: dict[str, int]
    blend: dict[str, Any] | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ToolRequest:
    """A chat with ``tools``: the chat in OpenAI's shape (``messages``: tool calls and results
    kept), the same chat as text for members that cannot call tools (``text_chat``), the
    request's tool fields (``tools``, ``tool_choice``...) and its sampling ``options``."""

    messages: list[dict[str, Any]]
    text_chat: list[dict[str, str]]
    fields: Mapping[str, Any]
    options: Mapping[str, Any]


@dataclass(frozen=True)
class _Reply:
    """A member's answer and the tokens its upstream reported for this call (``None``: it
    reported none; the policy's report then estimates them from the text)."""

    output: Any
    text: str
    usage: tuple[int, int] | None


async def _metered_reply(
    meter: UsageMeter,
    member: str,
    call: Callable[[], Awaitable[Any]],
    text_of: Callable[[Any], str],
) -> _Reply:
    """Call a member; its answer with the tokens the meter counted for it during the call.

    A stage calls each member once and the ranking between stages runs after the stage, so the
    meter's growth for ``member`` over the call is this call's usage; no growth means the
    member reported none (a ``static`` member, an upstream that sends no ``usage``).
    """
    before = meter.tokens_of(member) or (0, 0)
    output = await call()
    after = meter.tokens_of(member)
    grew = after is not None and after != before
    usage = (after[0] - before[0], after[1] - before[1]) if grew and after else None
    return _Reply(output, text_of(output), usage)


def _retried(call: Callable[[], Awaitable[Any]], retries: int) -> Callable[[], Awaitable[Any]]:
    """``call`` tried again ``retries`` times after an exception (the error about to be
    retried told to the runner, which reports it if the deadline passes meanwhile)."""

    async def retried() -> Any:
        for attempt in range(retries + 1):
            try:
                return await call()
            except Exception as exc:
                if attempt == retries:
                    raise
                note_retry_error(exc)
        raise AssertionError("unreachable")

    return retried


def _proposal_text(output: Any) -> str:
    """A proposal as the ranker reads it (its calls rendered, then its text)."""
    return str(output.render())


def _answer_text(output: Any) -> str:
    if not isinstance(output, str):
        raise TypeError(f"returned {type(output).__name__}, not str")
    return output


class _Metered(BaseGenerator):
    """A member whose calls count their tokens in one request's meter.

    When ``messages`` is given, the member answers that chat whatever prompt it is handed (the
    per-request Blender hands it the flattened instruction). ``retries``: an ensemble's
    ``max_retries``, the calls made again after an exception (a stream only before its first
    piece), within the ensemble's ``timeout``; the error of an attempt about to be retried is
    told to the runner, so a deadline that passes during the retry is reported as that error.
    """

    def __init__(
        self,
        inner: Generator,
        meter: UsageMeter,
        *,
        messages: list[dict[str, str]] | None = None,
        options: Mapping[str, Any] | None = None,
        retries: int = 0,
    ) -> None:
        super().__init__(inner.name)
        self.inner = inner
        self.meter = meter
        self.messages = messages
        self.options = dict(options or {})
        self.retries = retries

    def _prompt(self, prompt: Prompt) -> Prompt:
        return self.messages if self.messages is not None else prompt

    def _retry(self, attempt: int, error: Exception) -> bool:
        if attempt >= self.retries:
            return False
        note_retry_error(error)
        return True

    @contextmanager
    def _attempt(self, attempt: int) -> Iterator[None]:
        """One attempt of a call, metered; its exception swallowed when the call is to be made
        again (the caller's loop makes the next attempt), raised otherwise."""
        with metering(self.meter):
            try:
                yield
            except Exception as exc:
                if not self._retry(attempt, exc):
                    raise

    def generate(self, prompt: Prompt, **kwargs: Any) -> str:
        attempt = 0
        while True:
            with self._attempt(attempt):
                return self.inner.generate(self._prompt(prompt), **{**self.options, **kwargs})
            attempt += 1

    async def agenerate(self, prompt: Prompt, **kwargs: Any) -> str:
        attempt = 0
        while True:
            with self._attempt(attempt):
                return await self.inner.agenerate(
                    self._prompt(prompt), **{**self.options, **kwargs}
                )
            attempt += 1

    async def astream(self, prompt: Prompt, **kwargs: Any) -> AsyncIterator[str]:
        astream = getattr(self.inner, "astream", None)
        if not callable(astream):
            yield await self.agenerate(prompt, **kwargs)
            return
        attempt = 0
        started = False
        while True:
            deltas = astream(self._prompt(prompt), **{**self.options, **kwargs})
            try:
                while True:
                    with metering(self.meter):
                        try:
                            delta = await anext(deltas)
                        except StopAsyncIteration:
                            return
                    started = True
                    yield delta
            except Exception as exc:
                if started or not self._retry(attempt, exc):
                    raise
            finally:
                await deltas.aclose()
            attempt += 1


_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s'\"<>()]+")
# A part that starts with a quote or holds braces or angle brackets is the upstream's text.
_UPSTREAM_WORDS = re.compile(r"^[\"'`]|[{}<>]")


def _upstream(match: re.Match[str]) -> str:
    url = match.group(0)
    trail = url[len(url.rstrip(":,.;")) :]  # punctuation after the URL is the sentence's
    return "the upstream" + trail


def public_message(message: str) -> str:
    """What a client is told of a failure: no URLs and none of the upstream's own words.

    ``gpt: HTTP 500 from https://host/v1/chat/completions: {"error": ...}`` becomes
    ``gpt: HTTP 500 from the upstream (details in the server log)``: the leading
    ``part: part`` clauses are kept while they are short and plain; the upstream's response
    excerpt (quoted, bracketed or long) and everything after it stay in the log.
    """
    text = _URL.sub(_upstream, message)
    kept: list[str] = []
    parts = text.split(": ")
    for part in parts:
        if kept and (len(part) > 80 or _UPSTREAM_WORDS.search(part)):
            break
        kept.append(part[:200])
    out = ": ".join(kept)
    if len(kept) < len(parts):
        out += " (details in the server log)"
    return out


def scrub_tree(value: Any, scrub: Scrubber) -> Any:
    """``value`` with every string in it (keys included) scrubbed."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_tree(k, scrub): scrub_tree(v, scrub) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_tree(v, scrub) for v in value]
    return value


def blend_metadata(
    ensemble: str, result: BlendResult, meter: UsageMeter, scrub: Scrubber
) -> dict[str, Any]:
    """The ``blend`` object of a response: :meth:`BlendResult.to_dict` (the schema every front
    reports) plus the ensemble's name and each member's token usage.

    The answer, the instruction and the input the ranker and fuser read, candidates by member,
    the distinct texts and who gave them, the ranking, the top-K handed to the fuser, failures
    (their details in the log only) and latencies; known secrets scrubbed from all of it (an
    upstream that echoes its key in an answer does not hand it to the client).
    """
    data = result.to_dict()
    data["failures"] = _failure_list(result.failures, scrub)
    return scrub_tree(
        {
            "ensemble": ensemble,
            **data,
            "usage_by_member": {name: u.to_dict() for name, u in meter.by_member.items()},
        },
        scrub,
    )


def _failure_list(failures: tuple[ModelFailure, ...], scrub: Scrubber) -> list[dict[str, str]]:
    out = []
    for failure in failures:
        detail = scrub(failure.message)
        log.warning("member %s failed (%s): %s", failure.model, failure.kind, detail)
        out.append({**failure.to_dict(), "message": public_message(detail)})
    return out


def preference_matrix(ranking: Any) -> dict[str, Any]:
    """``P[i][j]``, how much the ranker prefers distinct answer ``i`` over ``j`` (0..1), for
    the inspector's heat map.

    From the ranker's own pair logits (``sigmoid(M[i][j])``) where it computed them
    (PairRanker, LLM judge); otherwise from its scores (``sigmoid(s_i - s_j)``), and
    ``source`` says which. The diagonal is ``None``.
    """
    import math

    def sigmoid(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))

    scores = list(ranking.scores)
    n = len(scores)
    if ranking.matrix is not None:
        values = [[sigmoid(ranking.matrix[i][j]) for j in range(n)] for i in range(n)]
        source = "ranker"
    else:
        values = [[sigmoid(scores[i] - scores[j]) for j in range(n)] for i in range(n)]
        source = "scores"
    matrix: list[list[float | None]] = [
        [None if i == j else round(values[i][j], 4) for j in range(n)] for i in range(n)
    ]
    return {"matrix": matrix, "source": source}


def with_operator_prompt(messages: list[M], operator: str | None, policy: str) -> list[M]:
    """The chat a member is sent, given its configured ``system_prompt`` and the policy.

    Without client ``system`` messages, or without an operator prompt, the chat is unchanged
    (the member adds its own prompt). With both: ``"prepend"`` puts the operator's prompt
    first, merged into the client's leading system message if there is one; ``"replace"``
    keeps the client's; ``"refuse"`` is checked before any member is called
    (:meth:`Gateway.check_system_prompt`).
    """
    if not operator or policy != "prepend" or not any(m["role"] == "system" for m in messages):
        return messages
    if messages[0]["role"] == "system" and isinstance(messages[0].get("content"), str):
        first = {**messages[0], "content": f"{operator}\n\n{messages[0]['content']}"}
        return [cast(M, first), *messages[1:]]
    return [cast(M, {"role": "system", "content": operator}), *messages]


class Gateway:
    """The members, shared rankers/fusers and metrics of one ``blend.toml``.

    Args:
        config: The checked configuration.
        extra_secrets: More strings to scrub from outgoing text (the server's own key).

    :meth:`load` loads every model (blocking; the app runs it in a thread at start-up and
    ``/ready`` answers 200 once it is done).
    """

    def __init__(self, config: ServeConfig, *, extra_secrets: tuple[str, ...] = ()) -> None:
        self.config = config
        self.settings = config.server
        self.metrics = Metrics()
        self.members: dict[str, Generator] = build_members(config)
        self.scrub = Scrubber([*secret_values(config), *extra_secrets])
        self.rankers: dict[str, Ranker] = {}
        self.fusers: dict[str, Fuser] = {}
        self.rerankers: dict[str, Ranker] = {}
        self.priors: dict[str, MemberPriors] = {}  # ensemble -> its member priors, if any
        # ensemble -> its policy (built once; each request starts its own run) and costs
        self.policies: dict[str, Policy] = {}
        self.costs: dict[str, dict[str, MemberCost]] = {}
        self.ready = threading.Event()
        self.load_error: str | None = None

    # -- loading --------------------------------------------------------------------------------

    def load(self) -> None:
        """Load members, rankers, fusers, rerankers; then :attr:`ready` (or :attr:`load_error`)."""
        try:
            for member in self.members.values():
                load_member(member)
            shared: dict[str, Any] = {}  # spec -> loaded model, shared by every user of it

            # Concurrent requests call one shared ranker: a PairRanker schedules their pairs
            # itself (shared rounds where share_batches; its async methods run in its own pool);
            # the other rankers run each call in a worker thread.
            def loaded_ranker(spec: Any, *, rerank: bool = False) -> Ranker:
                key = spec.model_dump_json()
                if key not in shared:
                    shared[key] = (
                        build_reranker(spec) if rerank else build_ranker(spec, self.members)
                    )
                return cast(Ranker, shared[key])

            watched: dict[str, Any] = {}
            for name, ensemble in self.config.ensembles.items():
                spec = ensemble.ranker_spec()
                if not isinstance(spec, JudgeRankerSpec):  # a judge is built per request
                    ranker = loaded_ranker(spec)
                    self.rankers[name] = ranker
                    watched.setdefault(str(id(ranker)), (f"ensemble:{name}", ranker))
                fuser_spec = ensemble.fuser_spec()
                if not isinstance(fuser_spec, LLMFuserSpec):
                    key = fuser_spec.model_dump_json()
                    if key not in shared:
                        shared[key] = build_fuser(fuser_spec, self.members, top_k=1)
                    self.fusers[name] = shared[key]
                if ensemble.priors is not None:
                    self.priors[name] = MemberPriors.load(ensemble.priors)
                self.costs[name] = ensemble.member_costs()
                self.policies[name] = ensemble.build_policy(self.priors.get(name))
            for name, rspec in self.config.rerankers.items():
                ranker = loaded_ranker(rspec, rerank=True)
                self.rerankers[name] = ranker
                watched.setdefault(str(id(ranker)), (f"rerank:{name}", ranker))
            self.metrics.watch_rankers(dict(watched.values()))
        except Exception as exc:
            self.load_error = self.scrub(f"{type(exc).__name__}: {exc}")
            log.error("loading the models failed: %s", self.load_error)
            raise
        self.ready.set()

    def model_list(self) -> list[dict[str, Any]]:
        """``/v1/models`` entries: ensembles (blending) first, then members, then rerankers."""
        created = int(time.time())
        entries = []
        for name, ensemble in self.config.ensembles.items():
            entries.append(
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": "llm-blender-kit",
                    "kind": "ensemble",
                    "members": list(ensemble.members),
                    "description": ensemble.description,
                }
            )
        for name, spec in self.config.members.items():
            entries.append(
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": "llm-blender-kit",
                    "kind": "member",
                    "type": spec.type,
                }
            )
        for name in self.config.rerankers:
            entries.append(
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": "llm-blender-kit",
                    "kind": "reranker",
                }
            )
        return entries

    def check_model(self, model: str, *, endpoint: str) -> str:
        """``"ensemble"`` or ``"member"``; 404 naming the available models otherwise."""
        if model in self.config.ensembles:
            return "ensemble"
        if model in self.config.members:
            return "member"
        names = ", ".join(self.config.model_names()) or "none"
        raise ApiError(
            404,
            f"model {model!r} is neither an ensemble nor a member of this server (models: {names})",
            param="model",
            code="model_not_found",
        )

    # -- blending -------------------------------------------------------------------------------

    def _blender(
        self,
        name: str,
        messages: list[dict[str, str]],
        options: Mapping[str, Any],
        meter: UsageMeter,
    ) -> Blender:
        ensemble: EnsembleConfig = self.config.ensembles[name]
        members = {
            m: _Metered(
                self.members[m],
                meter,
                messages=self.member_chat(m, messages),
                options=options,
                retries=ensemble.max_retries,
            )
            for m in ensemble.members
        }
        ranker = self.rankers.get(name)
        if ranker is None:  # an LLM judge: its calls are metered per request
            assert isinstance(ensemble.ranker, JudgeRankerSpec)
            judge = _Metered(self.members[ensemble.ranker.member], meter)
            ranker = build_ranker(ensemble.ranker, {ensemble.ranker.member: judge})
        fuser = self.fusers.get(name)
        if fuser is None:
            assert isinstance(ensemble.fuser, LLMFuserSpec)
            writer = _Metered(self.members[ensemble.fuser.member], meter)
            fuser = build_fuser(
                ensemble.fuser, {ensemble.fuser.member: writer}, top_k=ensemble.top_k
            )
        return Blender(
            members,
            ranker=ranker,
            fuser=fuser,
            top_k=ensemble.top_k,
            timeout=ensemble.timeout,
            rank_timeout=ensemble.rank_timeout if ensemble.rank_timeout is not None else ...,
            fuse_timeout=ensemble.fuse_timeout if ensemble.fuse_timeout is not None else ...,
            min_candidates=ensemble.min_candidates,
            strategy=ensemble.strategy,
            priors=self.priors.get(name),
            policy=self.policies[name],
            costs=self.costs[name],
        )

    def member_chat(self, name: str, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The chat member ``name`` is sent (see :func:`with_operator_prompt`)."""
        operator = getattr(self.config.members[name], "system_prompt", None)
        return with_operator_prompt(messages, operator, self.settings.system_prompt_policy)

    def check_system_prompt(self, model: str, messages: list[dict[str, str]]) -> None:
        """422 when the policy is ``"refuse"``, the chat has system messages and a member it
        reaches has its own ``system_prompt``."""
        if self.settings.system_prompt_policy != "refuse":
            return
        if not any(m["role"] == "system" for m in messages):
            return
        ensemble = self.config.ensembles.get(model)
        names = list(ensemble.members) if ensemble is not None else [model]
        fixed = [n for n in names if getattr(self.config.members[n], "system_prompt", None)]
        if fixed:
            raise ApiError(
                422,
                "messages: system and developer messages are refused: member(s) "
                f"{', '.join(fixed)} have the operator's system prompt "
                "(server.system_prompt_policy = 'refuse')",
                param="messages",
                code="system_prompt_refused",
            )

    def _blend_failed(self, name: str, exc: BlendError) -> ApiError:
        self._count_failures(exc.failures)
        log.warning("ensemble %s failed: %s", name, self.scrub(str(exc)))
        failures = _failure_list(exc.failures, self.scrub)
        summary = ", ".join(f"{f['model']} ({f['kind']})" for f in failures) or "none"
        return ApiError(
            502,
            f"ensemble {name!r}: too few answers to blend; failed: {summary} "
            "(details in the server log)",
            code="members_failed",
            extra={"failures": failures},
        )

    def _count_failures(self, failures: tuple[ModelFailure, ...]) -> None:
        for failure in failures:
            self.metrics.member_failures.labels(failure.model, failure.kind).inc()

    def _count_outcome(self, failures: tuple[ModelFailure, ...], meter: UsageMeter) -> None:
        """Count a blend's member failures and the tokens its members used."""
        self._count_failures(failures)
        total = meter.total()
        self.metrics.tokens.labels("prompt").inc(total.prompt_tokens)
        self.metrics.tokens.labels("completion").inc(total.completion_tokens)

    def _record(self, result: BlendResult, meter: UsageMeter) -> None:
        """Record a blend's ranking and fusion times, failures and tokens (its member calls
        are counted as they are made, :meth:`_call_members`)."""
        m = self.metrics
        m.stage_seconds.labels("ranking").observe(result.rank_latency)
        m.stage_seconds.labels("fusion").observe(result.fuse_latency)
        self._count_outcome(result.failures, meter)

    async def _call_members(
        self,
        name: str,
        blender: Blender,
        instruction: str,
        context: str,
        calls: Mapping[str, Callable[[], Awaitable[Any]]],
        meter: UsageMeter,
        *,
        text_of: Callable[[Any], str] = _answer_text,
        stage_tracer: StageTracer | None = None,
    ) -> tuple[MemberResults[Any], CallReport]:
        """Call ensemble ``name``'s members as its policy decides.

        :meth:`Blender.acall_members <blender_core.blend.Blender.acall_members>`: stage by
        stage, the answers so far ranked between stages by the ensemble's ranker, each member
        within the ensemble's ``timeout`` (its ``max_retries`` are made by the member itself,
        so that a deadline passing during a retry is reported as the error retried). Each
        call's tokens are the ones its upstream reported; the members called are counted in
        the metrics, with the calls saved, the skips and the stop.

        Returns:
            The answers (``calls``' outputs, by member) and failures, and the policy's report.
        """
        ensemble = self.config.ensembles[name]
        outcomes, report = await blender.acall_members(
            instruction,
            {m: partial(_metered_reply, meter, m, call, text_of) for m, call in calls.items()},
            input=context,
            timeout=ensemble.timeout,
            text_of=lambda reply: reply.text,
            usage_of=lambda reply: reply.usage,
            stage_tracer=stage_tracer,
        )
        for outcome in outcomes:
            self.metrics.member_calls.labels(outcome.name).inc()
            self.metrics.stage_seconds.labels("generation").observe(outcome.latency)
        self.metrics.record_calls(name, report)
        results: MemberResults[Any] = MemberResults.from_outcomes(
            outcomes, convert=lambda reply: reply.output
        )
        return results, report

    def _member_calls(
        self, name: str, blender: Blender, chat_prompt: str
    ) -> dict[str, Callable[[], Awaitable[Any]]]:
        """Each member's call (its metered generator, bound to the request's chat)."""
        return {
            m: partial(blender.generators[m].agenerate, chat_prompt)
            for m in self.config.ensembles[name].members
        }

    async def _blend_inputs(
        self,
        name: str,
        messages: list[dict[str, str]],
        options: Mapping[str, Any],
        tools: ToolRequest | None = None,
    ) -> tuple[UsageMeter, Blender, str, str, MemberResults[Any], CallReport]:
        """Call ensemble ``name``'s members for a chat (:meth:`_call_members`): each its metered
        generator, or, for a chat with ``tools``, each its proposal (:meth:`_propose`)."""
        meter = UsageMeter()
        blender = self._blender(name, messages, options, meter)
        if tools is None:
            instruction, context = request_prompt(messages)
            prompt = blender.prompt_for(instruction, context)
            results, report = await self._call_members(
                name,
                blender,
                instruction,
                context,
                self._member_calls(name, blender, prompt),
                meter,
            )
        else:
            instruction, context = tool_prompt(tools.messages)
            ensemble = self.config.ensembles[name]
            proposals = {
                m: _retried(partial(self._propose, m, tools, meter), ensemble.max_retries)
                for m in ensemble.members
            }
            # The core's runner under the ensemble's policy: its deadline, retries and failure
            # kinds (the kind is the cause); a cascade ranks the proposals' texts between stages.
            results, report = await self._call_members(
                name, blender, instruction, context, proposals, meter, text_of=_proposal_text
            )
        return meter, blender, instruction, context, results, report

    async def blend(
        self, name: str, messages: list[dict[str, str]], options: Mapping[str, Any]
    ) -> Answer:
        """Blend ensemble ``name``'s answers to a chat; 502 when too few members answer.

        The members its policy chooses are called (:meth:`_call_members`); the ``blend``
        object's ``calls`` says which, and the usage counts only them.
        """
        meter, blender, instruction, context, results, report = await self._blend_inputs(
            name, messages, options
        )
        try:
            result = await blender.ablend_candidates(
                instruction,
                input=context,
                calls=report,
                **results.blend_keywords(),
            )
        except BlendError as exc:
            raise self._blend_failed(name, exc) from None
        self._record(result, meter)
        return Answer(
            self.scrub(result.text),
            meter.total().to_dict(),
            blend_metadata(name, result, meter, self.scrub),
        )

    async def blend_stream(
        self, name: str, messages: list[dict[str, str]], options: Mapping[str, Any]
    ) -> tuple[UsageMeter, BlendStreamEvent, AsyncIterator[BlendStreamEvent]]:
        """Start a streamed blend: the meter, the first event and the rest.

        Members and ranking run before this returns, so a blend that fails is a 502 before
        any byte of the stream is sent.
        """
        meter, blender, instruction, context, results, report = await self._blend_inputs(
            name, messages, options
        )
        events = blender.astream_candidates(
            instruction,
            input=context,
            calls=report,
            **results.blend_keywords(),
        )
        try:
            first = await anext(events)
        except BlendError as exc:
            await events.aclose()  # type: ignore[attr-defined]
            raise self._blend_failed(name, exc) from None
        except BaseException:
            await events.aclose()  # type: ignore[attr-defined]
            raise
        return meter, first, events

    def finish_stream(self, name: str, result: BlendResult, meter: UsageMeter) -> dict[str, Any]:
        """Record a streamed blend's metrics; its ``blend`` object."""
        self._record(result, meter)
        return blend_metadata(name, result, meter, self.scrub)

    # -- the inspector's event stream -----------------------------------------------------------

    async def inspect(
        self, name: str, messages: list[dict[str, str]], options: Mapping[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """A blend as events for the inspector page, each member's answer streamed on its own.

        Events (``type``): ``start`` (members), then for each stage of the ensemble's policy
        ``stage`` (its index, members, policy, hedged), ``member_delta`` (member, text),
        ``member_done`` (member, latency, usage) and ``member_error`` (member, kind, message);
        ``member_skipped`` (member, reason) for each member the policy did not call; then the
        core's own stream (:meth:`Blender.astream_candidates` over the answers): ``fused_delta``
        (text) and ``result`` (the ``blend`` object with its ``calls``, the fused text and the
        pairwise ``preferences``), or ``error`` when too few members answered.
        """
        ensemble = self.config.ensembles[name]
        meter = UsageMeter()
        blender = self._blender(name, messages, options, meter)
        instruction, context = request_prompt(messages)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        scrubbers = {m: self.scrub.stream() for m in ensemble.members}
        prompt = blender.prompt_for(instruction, context)

        async def stream_member(member: str) -> str:
            parts: list[str] = []
            start = time.perf_counter()
            async for delta in cast(_Metered, blender.generators[member]).astream(prompt):
                parts.append(delta)
                safe = scrubbers[member].feed(delta)
                if safe:
                    await queue.put({"type": "member_delta", "member": member, "text": safe})
            text = "".join(parts)
            if not text.strip():
                raise ValueError("empty answer")
            rest = scrubbers[member].flush()
            if rest:
                await queue.put({"type": "member_delta", "member": member, "text": rest})
            usage = meter.by_member.get(member)
            await queue.put(
                {
                    "type": "member_done",
                    "member": member,
                    "latency": time.perf_counter() - start,
                    "usage": usage.to_dict() if usage else None,
                }
            )
            return text

        async def traced(step: StageStep, run: Callable[[], Awaitable[list[Outcome[Any]]]]) -> Any:
            await queue.put({"type": "stage", **step.to_dict()})
            outcomes = await run()
            for outcome in outcomes:
                if outcome.failure is not None:
                    await queue.put(self._failure_event(outcome.failure))
            return outcomes

        async def call_members() -> tuple[MemberResults[Any], CallReport]:
            try:
                return await self._call_members(
                    name,
                    blender,
                    instruction,
                    context,
                    {m: partial(stream_member, m) for m in ensemble.members},
                    meter,
                    stage_tracer=traced,
                )
            finally:
                await queue.put(None)

        yield {"type": "start", "ensemble": name, "members": list(ensemble.members)}
        work = asyncio.ensure_future(call_members())
        try:
            while (item := await queue.get()) is not None:
                yield item
            results, report = await work
        finally:
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        for member, reason in report.skipped.items():
            yield {"type": "member_skipped", "member": member, "reason": reason}
        events = blender.astream_candidates(
            instruction,
            input=context,
            calls=report,
            **results.blend_keywords(),
        )
        fused = self.scrub.stream()
        try:
            async for piece in events:
                if piece.kind == "delta":
                    safe = fused.feed(piece.text)
                    if safe:
                        yield {"type": "fused_delta", "text": safe}
                    continue
                rest = fused.flush()
                if rest:
                    yield {"type": "fused_delta", "text": rest}
                result = piece.result
                assert result is not None
                self._record(result, meter)
                yield {
                    "type": "result",
                    "text": self.scrub(result.text),
                    "blend": blend_metadata(name, result, meter, self.scrub),
                    "preferences": preference_matrix(result.ranking),
                    "usage": meter.total().to_dict(),
                }
        except BlendError as exc:
            error = self._blend_failed(name, exc)
            yield {"type": "error", **error.body()["error"]}
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    def _failure_event(self, failure: ModelFailure) -> dict[str, Any]:
        detail = self.scrub(failure.message)
        log.warning("member %s failed (%s): %s", failure.model, failure.kind, detail)
        return {
            "type": "member_error",
            "member": failure.model,
            "kind": failure.kind,
            "message": public_message(detail),
        }

    # -- tool calls -----------------------------------------------------------------------------

    def _openai_chat(self, name: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """An OpenAI-shaped chat for member ``name``, the operator's prompt kept by policy."""
        operator = getattr(self.config.members[name], "system_prompt", None)
        return with_operator_prompt(messages, operator, self.settings.system_prompt_policy)

    async def _propose(self, name: str, request: ToolRequest, meter: UsageMeter) -> ToolProposal:
        """One member's proposal: its own tool calls where it can give a whole assistant
        message (``achat_message``: OpenAI-compatible members), else its text."""
        member = self.members[name]
        achat_message = getattr(member, "achat_message", None)
        if callable(achat_message):
            with metering(meter):
                result = await achat_message(
                    self._openai_chat(name, request.messages),
                    **{**request.options, **request.fields},
                )
            return proposal_from_result(result)
        chat = self.member_chat(name, request.text_chat)
        member = _Metered(member, meter, messages=chat, options=request.options)
        return ToolProposal(text=str(await member.agenerate(chat)))

    @staticmethod
    def _openai_calls(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
        out = []
        for call in calls:
            item = call.to_openai()
            item["id"] = item["id"] or f"call_{uuid.uuid4().hex[:24]}"
            out.append(item)
        return out

    async def blend_tools(self, name: str, request: ToolRequest) -> Answer:
        """Ensemble ``name``'s members propose tool calls (or text); the core selects one.

        Every member answers within the ensemble's ``timeout``; the proposals go to
        :func:`blender_core.tool_calls.aselect_tool_calls` with the ensemble's ranker,
        strategy, ``min_candidates`` and ``rank_timeout``. 502 when too few answer.
        """
        ensemble = self.config.ensembles[name]
        meter, blender, instruction, context, results, report = await self._blend_inputs(
            name, request.text_chat, request.options, tools=request
        )
        failures = list(results.failures)
        latencies = dict(results.latencies)
        ordered = {m: results.outputs[m] for m in ensemble.members if m in results.outputs}
        start = time.perf_counter()
        try:
            chosen = await aselect_tool_calls(
                blender.ranker,
                instruction,
                ordered,
                input=context,
                strategy=blender.strategy,
                min_candidates=ensemble.min_candidates,
                failures=failures,
                latencies=latencies,
                rank_timeout=blender.rank_timeout,
                calls=report,
            )
        except BlendError as exc:
            raise self._blend_failed(name, exc) from None
        finally:
            self.metrics.stage_seconds.labels("ranking").observe(time.perf_counter() - start)
        self._count_outcome(chosen.result.failures, meter)
        blend = blend_metadata(name, chosen.result, meter, self.scrub)
        blend["selected"] = chosen.model
        calls = scrub_tree(self._openai_calls(chosen.tool_calls), self.scrub)
        return Answer(self.scrub(chosen.text), meter.total().to_dict(), blend, calls)

    async def passthrough_tools(self, name: str, request: ToolRequest) -> Answer:
        """One member's answer to a chat with tools (its tool calls when it makes any)."""
        meter = UsageMeter()
        start = time.perf_counter()
        self.metrics.member_calls.labels(name).inc()
        try:
            proposal = await self._propose(name, request, meter)
        except (Exception, TimeoutError) as exc:
            raise self.member_failed(name, exc) from None
        finally:
            self.metrics.stage_seconds.labels("generation").observe(time.perf_counter() - start)
        calls = scrub_tree(self._openai_calls(proposal.tool_calls), self.scrub)
        return Answer(self.scrub(proposal.text), meter.total().to_dict(), None, calls)

    # -- pass-through ---------------------------------------------------------------------------

    def member_failed(self, name: str, exc: BaseException) -> ApiError:
        """The 502 of a pass-through member that failed: its failure (``kind`` the cause, the
        member named) counted, logged and told to the client without the upstream's words."""
        kind = error_failure(name, exc).kind
        self.metrics.member_failures.labels(name, kind).inc()
        detail = self.scrub(f"{type(exc).__name__}: {exc}")
        log.warning("member %s failed (%s): %s", name, kind, detail)
        public = public_message(detail)
        failure = {"model": name, "kind": kind, "message": public}
        return ApiError(
            502,
            f"member {name!r} failed ({kind}): {public}",
            code="member_failed",
            extra={"failures": [failure]},
        )

    def _member_timeout(self, name: str) -> float | None:
        spec = self.config.members[name]
        return getattr(spec, "timeout", None)

    async def passthrough(
        self, name: str, messages: list[dict[str, str]], options: Mapping[str, Any]
    ) -> Answer:
        """One member's answer to a chat; 502 naming it when it fails."""
        meter = UsageMeter()
        chat = self.member_chat(name, messages)
        member = _Metered(self.members[name], meter, messages=chat, options=options)
        start = time.perf_counter()
        self.metrics.member_calls.labels(name).inc()
        try:
            text = await member.agenerate(chat)
        except (Exception, TimeoutError) as exc:
            raise self.member_failed(name, exc) from None
        finally:
            self.metrics.stage_seconds.labels("generation").observe(time.perf_counter() - start)
        if not isinstance(text, str):
            raise self.member_failed(name, TypeError(f"returned {type(text).__name__}, not str"))
        return Answer(self.scrub(text), meter.total().to_dict(), None)

    async def passthrough_stream(
        self, name: str, messages: list[dict[str, str]], options: Mapping[str, Any]
    ) -> tuple[UsageMeter, str, AsyncIterator[str]]:
        """Start streaming one member's answer: the meter, the first delta and the rest."""
        meter = UsageMeter()
        chat = self.member_chat(name, messages)
        member = _Metered(self.members[name], meter, messages=chat, options=options)
        self.metrics.member_calls.labels(name).inc()
        deltas = member.astream(chat)
        try:
            first = await anext(deltas, "")
        except (Exception, TimeoutError) as exc:
            await deltas.aclose()  # type: ignore[attr-defined]
            raise self.member_failed(name, exc) from None
        return meter, first, deltas

    # -- rerank ---------------------------------------------------------------------------------

    def reranker_for(self, model: str | None) -> tuple[str, Ranker]:
        """The reranker a ``/v1/rerank`` request names (or the only one)."""
        if model and model in self.config.rerankers:
            return model, self.rerankers[model]
        if not model and len(self.rerankers) == 1:
            return next(iter(self.rerankers.items()))
        names = ", ".join(self.config.rerankers) or "none configured"
        if not model:
            raise ApiError(
                422,
                f"model: name one of the rerankers ({names})",
                param="model",
                code="model_required",
            )
        raise ApiError(
            404,
            f"reranker {model!r} is not configured (rerankers: {names})",
            param="model",
            code="model_not_found",
        )

    async def rerank(
        self, ranker: Ranker, query: str, documents: list[str], top_n: int | None
    ) -> list[tuple[int, float]]:
        """``(index, relevance score)`` of the ``top_n`` most relevant documents, best first.

        A ranker that declares it selects the best K (:func:`~blender_core.ranking.selects_top_k`,
        a PairRanker) and is asked for fewer than all documents selects them by knockout
        (``top_k``) instead of scoring every pair; the others rank every document.
        """
        start = time.perf_counter()
        try:
            knockout = top_n is not None and top_n < len(documents)
            ranking = await arank_with(ranker, query, documents, top_k=top_n if knockout else None)
        except ValueError as exc:  # e.g. too many documents for pairwise ranking
            raise ApiError(422, self.scrub(str(exc)), param="documents") from None
        finally:
            self.metrics.stage_seconds.labels("ranking").observe(time.perf_counter() - start)
        order = ranking.order if top_n is None else ranking.order[:top_n]
        return [(i, float(ranking.scores[i])) for i in order]
