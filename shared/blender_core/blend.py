"""The Blender pipeline: base models -> candidates -> rank -> top-K -> fuse.

Example:
    .. code-block:: python

        from blender_core import Blender, CallableGenerator

        blender = Blender(
            [CallableGenerator(lambda p: "Paris.", name="m1"),
             CallableGenerator(lambda p: "It is Paris.", name="m2"),
             CallableGenerator(lambda p: "Lyon.", name="m3")],
            ranker="consensus",
            fuser="select",
        )
        result = blender.blend("What is the capital of France?")
        result.text, result.ranking.order, result.failures

        for event in blender.stream("What is the capital of France?"):
            if event.kind == "delta":
                print(event.text, end="", flush=True)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import EllipsisType, MappingProxyType
from typing import Any, Literal, TypeVar

from blender_core import ranking as ranking_abilities
from blender_core.bridge import iterate_sync, run_sync
from blender_core.fusion.base import Fuser
from blender_core.generators.base import Generator
from blender_core.generators.deadline import DeadlineExceeded, aiterate_with_deadline
from blender_core.loading import load_fuser, load_ranker
from blender_core.members import (
    MemberResults,
    ModelFailure,
    Outcome,
    describe_error,
    member_items,
)
from blender_core.policies import (
    MemberCost,
    Policy,
    build_policy,
    check_policy_members,
    member_costs,
)
from blender_core.ranking import Ranker, Ranking
from blender_core.staging import CallReport, StageTracer, UsageOf, arun_policy

__all__ = [
    "BlendError",
    "BlendResult",
    "BlendStreamEvent",
    "Blender",
    "ModelFailure",
    "RankStep",
    "RankTracer",
    "StageScorer",
    "planned_passes",
]

T = TypeVar("T")


@dataclass(frozen=True)
class RankStep:
    """What one ranking call of a blend does, for traces (a LangChain run, a LlamaIndex span).

    Attributes:
        ranker: The ranker's name (its class, and the LLM it wraps if any).
        n: The number of distinct candidates ranked.
        strategy: The strategy asked for (``None``: the ranker's default).
        top_k: How many of the best go to the fuser.
        passes: Pair comparisons (forward passes, before the pair cache) the call makes, where
            the ranker's cost is known (a PairRanker); ``None`` otherwise.
    """

    ranker: str
    n: int
    strategy: str | None
    top_k: int
    passes: int | None

    @classmethod
    def of(
        cls,
        ranker: Any,
        n: int,
        *,
        strategy: str | None,
        top_k: int,
        selects_top_k: bool = False,
    ) -> RankStep:
        """The step of ranking ``n`` candidates with ``ranker`` (``selects_top_k``: a PairRanker
        asked only for the best ``top_k``)."""
        return cls(
            ranker=_component_name(ranker),
            n=n,
            strategy=strategy,
            top_k=top_k,
            passes=planned_passes(ranker, n, strategy, top_k if selects_top_k else None),
        )

    def to_dict(self) -> dict[str, Any]:
        """The step as a JSON-serialisable dict (the traces' inputs and metadata)."""
        return {
            "ranker": self.ranker,
            "n": self.n,
            "strategy": self.strategy,
            "top_k": self.top_k,
            "passes": self.passes,
        }


RankTracer = Callable[[RankStep, Callable[[], Awaitable[Ranking]]], Awaitable[Ranking]]
"""A hook around the ranking call: ``tracer(step, rank)`` awaits ``rank()`` inside the
framework's run or span and returns its ranking (see ``langchain_blender`` and
``llamaindex_blender``)."""


def planned_passes(ranker: Any, n: int, strategy: str | None, top_k: int | None) -> int | None:
    """The comparisons a ranking of ``n`` candidates makes, as the ranker declares them
    (:meth:`~blender_core.ranking.RankerAbilities.planned_passes`; ``None`` where it does not).
    A PairRanker: :func:`~blender_core.ranking.pair_passes`."""
    return ranking_abilities.planned_passes(ranker, n, strategy, top_k)


class _StageTimeout(Exception):
    """Internal: a stage ran past the Blender's own deadline."""


class BlendError(RuntimeError):
    """Too few base models answered; :attr:`failures` lists every failed model and its cause."""

    def __init__(self, message: str, failures: Sequence[ModelFailure] = ()) -> None:
        super().__init__(message)
        self.failures: tuple[ModelFailure, ...] = tuple(failures)


@dataclass(frozen=True)
class BlendResult:
    """The outcome of one blend.

    Attributes:
        text: The fused answer (with a select fuser: the top-ranked candidate).
        instruction: The instruction blended.
        input: Its optional input.
        candidates: Model name -> answer, for every model that answered, in generator order.
        texts: The distinct candidate texts that were ranked (identical answers merged, in the
            order of first occurrence).
        models_by_text: For each of :attr:`texts`, the models that gave it.
        ranking: The ranking over :attr:`texts`.
        top_k: The texts handed to the fuser, best first.
        latencies: Seconds each model spent generating, failed models included (a wait for a
            shared local model is not in it: see :attr:`queueing`).
        rank_latency: Seconds spent ranking.
        fuse_latency: Seconds spent fusing.
        failures: The models that gave no usable answer, and a fusion that ran out of time
            (``stage="fusion"``: :attr:`text` is then the best candidate, or the fused answer
            as far as it was streamed).
        queueing: Seconds a model waited for a shared resource (a local model that generates
            one call at a time) before generating; models that did not wait are left out.
        blend_mode: ``"text"`` (answers ranked and fused) or ``"tool_calls"`` (tool-call
            proposals ranked and the best selected, never fused: :mod:`blender_core.tool_calls`).
        calls: Which members the policy called (in which stages), which it skipped and why,
            each call's tokens and cost, and the calls saved (:class:`CallReport`); ``None``
            for answers handed in without a report.
    """

    text: str
    instruction: str
    input: str
    candidates: Mapping[str, str]
    texts: tuple[str, ...]
    models_by_text: tuple[tuple[str, ...], ...]
    ranking: Ranking
    top_k: tuple[str, ...]
    latencies: Mapping[str, float]
    rank_latency: float
    fuse_latency: float
    failures: tuple[ModelFailure, ...] = ()
    queueing: Mapping[str, float] = field(default_factory=dict)
    blend_mode: Literal["text", "tool_calls"] = "text"
    calls: CallReport | None = None

    @property
    def best(self) -> str:
        """The top-ranked candidate text."""
        return self.texts[self.ranking.best]

    @property
    def best_models(self) -> tuple[str, ...]:
        """The models that gave the top-ranked candidate."""
        return self.models_by_text[self.ranking.best]

    def to_dict(self) -> dict[str, Any]:
        """The blend metadata schema: a JSON-serialisable view (exceptions reduced to messages).

        The same keys wherever a blend is reported (the LangChain ensembles'
        ``response_metadata``, the LlamaIndex responses' ``additional_kwargs`` and
        ``metadata["blend"]``, the gateway's ``blend`` object): ``text``, ``instruction``,
        ``input``, ``candidates`` (model -> answer), ``texts`` (the distinct texts ranked),
        ``models_by_text``, ``blend_mode`` (``"text"`` or ``"tool_calls"``), ``ranking``
        (:meth:`~blender_core.ranking.Ranking.to_dict`, over ``texts``), ``best``,
        ``best_models``, ``top_k``, ``latencies`` (generation seconds), ``queueing`` (seconds
        waited for a shared model), ``rank_latency``, ``fuse_latency``, ``failures``
        (:meth:`ModelFailure.to_dict` each) and ``calls`` (:meth:`CallReport.to_dict`: the
        policy's calls, skips, tokens, cost and calls saved; ``None`` when answers were handed
        in without a report). See ``docs/architecture.md``.
        """
        return {
            "text": self.text,
            "instruction": self.instruction,
            "input": self.input,
            "candidates": dict(self.candidates),
            "texts": list(self.texts),
            "models_by_text": [list(models) for models in self.models_by_text],
            "blend_mode": self.blend_mode,
            "ranking": self.ranking.to_dict(),
            "best": self.best,
            "best_models": list(self.best_models),
            "top_k": list(self.top_k),
            "latencies": dict(self.latencies),
            "queueing": dict(self.queueing),
            "rank_latency": self.rank_latency,
            "fuse_latency": self.fuse_latency,
            "failures": [failure.to_dict() for failure in self.failures],
            "calls": self.calls.to_dict() if self.calls is not None else None,
        }


@dataclass(frozen=True)
class BlendStreamEvent:
    """One event of :meth:`Blender.stream` / :meth:`Blender.astream`.

    Attributes:
        kind: ``"delta"`` (a piece of the fused answer) or ``"result"`` (the last event).
        text: The piece of the answer (``"delta"`` events).
        result: The complete :class:`BlendResult` (the ``"result"`` event); its ``text`` is the
            concatenation of every delta.
    """

    kind: Literal["delta", "result"]
    text: str = ""
    result: BlendResult | None = None


@dataclass
class _Ranked:
    """Internal: the pipeline's state between ranking and fusion."""

    instruction: str
    input: str
    candidates: dict[str, str]
    texts: list[str]
    models_by_text: list[list[str]]
    ranking: Ranking
    top: tuple[str, ...]
    failures: list[ModelFailure]
    latencies: dict[str, float]
    rank_latency: float
    queueing: dict[str, float] = field(default_factory=dict)
    calls: CallReport | None = None

    def result(self, text: str, fuse_latency: float) -> BlendResult:
        return BlendResult(
            text=text,
            instruction=self.instruction,
            input=self.input,
            candidates=self.candidates,
            texts=tuple(self.texts),
            models_by_text=tuple(tuple(models) for models in self.models_by_text),
            ranking=self.ranking,
            top_k=self.top,
            latencies=self.latencies,
            rank_latency=self.rank_latency,
            fuse_latency=fuse_latency,
            failures=tuple(self.failures),
            queueing=self.queueing,
            calls=self.calls,
        )


def _component_name(component: Any) -> str:
    """A ranker's or fuser's name for failures and traces (:func:`ranking.ranker_name`)."""
    return ranking_abilities.ranker_name(component)


def _check_timeout(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{name} must be a number of seconds > 0 or None, got {value!r}")
    return float(value)


async def _within(coro: Awaitable[T], timeout: float | None) -> T:
    """Await ``coro``; raise :class:`_StageTimeout` when it outlasts ``timeout``.

    ``asyncio.wait`` (not ``wait_for``) so that a ``TimeoutError`` raised by the work itself is
    told apart from running out of our own time.
    """
    task = asyncio.ensure_future(coro)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)  # let it clean up, but never hang on it
        raise _StageTimeout
    return task.result()


class Blender:
    """Runs several base models concurrently, ranks their answers and fuses the best ``top_k``.

    Pipeline of :meth:`ablend`:

    1. Every generator answers the prompt (the instruction, plus ``"\\n\\n" + input`` when there
       is an input) at the same time, each under ``timeout`` seconds; the wall time is that of the
       slowest model, not the sum.
    2. A model that raises, times out, or returns an empty (or whitespace-only) answer or a
       non-string is recorded as a :class:`ModelFailure`; it is never swallowed and never fatal
       by itself.
    3. Identical answers (equal after stripping surrounding whitespace) are merged: each distinct
       text is ranked once and :attr:`BlendResult.models_by_text` says who gave it.
    4. If fewer than ``min_candidates`` **distinct** texts remain, :class:`BlendError` is raised,
       naming every failed model and its cause (two models agreeing verbatim give one
       candidate: nothing to rank or fuse between them).
    5. The ranker ranks the distinct texts (instruction and input as the source); the best
       ``top_k`` go to the fuser, best first.

    Args:
        generators: The base models, a list (names from each ``generator.name``) or a mapping
            name -> generator (the keys name them). Names must be unique. May be empty for a
            Blender that only ranks and fuses answers it is given (:meth:`blend_candidates`).
        ranker: A Ranker or a spec for :func:`~blender_core.loading.load_ranker` (``None``: the
            consensus ranker; ``"random"``; a PairRanker checkpoint such as
            ``"llm-blender/PairRM"``).
        fuser: A Fuser, a Generator (wrapped in an LLM fuser) or a spec for
            :func:`~blender_core.loading.load_fuser` (``None``/``"select"``: no fusion; a GenFuser
            checkpoint such as ``"llm-blender/gen_fuser_3b"``).
        top_k: How many of the best candidates the fuser gets.
        timeout: Seconds each base model may take (``None``: no limit). A sync model running in
            a worker thread cannot be stopped: its late answer is dropped.
        rank_timeout: Seconds the ranking stage may take (defaults to ``timeout``). Past it,
            :class:`BlendError` is raised with a ``stage="ranking"`` failure naming the ranker.
        fuse_timeout: Seconds the fusion stage may take (defaults to ``timeout``; a streamed
            answer included). Past it, the best-ranked candidate is the answer (or, when
            streaming, the part already streamed) and a ``stage="fusion"`` timeout is recorded in
            :attr:`BlendResult.failures`.
        min_candidates: Fewest distinct answers to go on with.
        strategy: Ranking strategy passed to ``ranker.rank(..., strategy=...)`` (PairRanker:
            ``"max_logits"``, ``"max_wins"``, ``"bubble"``); ``None`` uses the ranker's default.
        priors: Member priors (a :class:`~blender_core.priors.MemberPriors` or a file from
            ``blender calibrate``): the ranker is wrapped in a
            :class:`~blender_core.priors.PriorRanker`. A ranker that declares
            ``accepts_members`` (such as a PriorRanker) is told which member(s) gave each answer.
        rank_tracer: A hook around each ranking call (:data:`RankTracer`): the adapters pass one
            that runs the ranking as a LangChain child run or a LlamaIndex span, with the
            :class:`RankStep` (ranker, N, strategy, top-K, passes).
        policy: Which members a blend calls (:mod:`blender_core.policies`): ``"all"`` (the
            default: everyone, in one stage), ``"cascade"`` (in stages, stopping once a
            calibrated confidence that the best answer so far beats the members not called
            reaches a threshold), ``"router"`` (the members a learned router picks for the
            prompt), or a policy object. :attr:`BlendResult.calls` reports the calls.
        policy_options: The named policy's options (:func:`~blender_core.policies.build_policy`;
            a cascade: ``threshold``, ``calibration``, ``stage_sizes``, ``max_members``,
            ``budget``, ``latency_budget``, ``hedge_after``, ``order``; a router: ``model``,
            ``top_m``, ``mass``). A cascade made here takes ``priors`` and ``costs``.
        costs: Member name -> its price and expected latency (a
            :class:`~blender_core.policies.MemberCost`, its fields as a dict, or a price per
            call): each call's cost in :attr:`BlendResult.calls`, and a cascade's budget.
        stage_tracer: A hook around each stage of member calls
            (:data:`~blender_core.staging.StageTracer`).

    Example:
        .. code-block:: python

            from blender_core import Blender, OpenAICompatibleGenerator

            blender = Blender(
                {"llama": OpenAICompatibleGenerator("llama-3.1-8b", base_url="http://localhost:8000/v1"),
                 "qwen": OpenAICompatibleGenerator("qwen2.5-7b", base_url="http://localhost:8001/v1")},
                ranker="llm-blender/PairRM",
                fuser="llm-blender/gen_fuser_3b",
                top_k=2,
                timeout=30,
            )
            result = blender.blend("Explain MBR decoding in two sentences.")
            print(result.text, result.failures)
    """

    def __init__(
        self,
        generators: Sequence[Generator] | Mapping[str, Generator] = (),
        ranker: Ranker | str | None = None,
        fuser: Fuser | Generator | str | None = None,
        *,
        top_k: int = 3,
        timeout: float | None = 60.0,
        min_candidates: int = 1,
        strategy: str | None = None,
        rank_timeout: float | EllipsisType | None = ...,
        fuse_timeout: float | EllipsisType | None = ...,
        priors: Any = None,
        rank_tracer: RankTracer | None = None,
        policy: Policy | str | None = None,
        policy_options: Mapping[str, Any] | None = None,
        costs: Mapping[str, Any] | None = None,
        stage_tracer: StageTracer | None = None,
    ) -> None:
        self.rank_tracer = rank_tracer
        self.stage_tracer = stage_tracer
        self.generators: Mapping[str, Generator] = MappingProxyType(
            self._named_generators(generators)
        )
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        if isinstance(min_candidates, bool) or not isinstance(min_candidates, int):
            raise ValueError(f"min_candidates must be an int >= 1, got {min_candidates!r}")
        if min_candidates < 1:
            raise ValueError(f"min_candidates must be >= 1, got {min_candidates}")
        if self.generators and min_candidates > len(self.generators):
            raise ValueError(
                f"min_candidates={min_candidates} can never be met with "
                f"{len(self.generators)} generator(s)"
            )
        self.timeout = _check_timeout("timeout", timeout)
        self.rank_timeout = (
            self.timeout if rank_timeout is ... else _check_timeout("rank_timeout", rank_timeout)
        )
        self.fuse_timeout = (
            self.timeout if fuse_timeout is ... else _check_timeout("fuse_timeout", fuse_timeout)
        )
        self.ranker: Ranker = load_ranker(ranker)
        if priors is not None:
            from blender_core.priors import PriorRanker

            self.ranker = PriorRanker(self.ranker, priors)
        self.fuser: Fuser = load_fuser(fuser)
        if strategy is not None and not ranking_abilities.takes_strategy(self.ranker):
            raise ValueError(
                f"strategy={strategy!r} was given but {type(self.ranker).__name__}.rank takes "
                "no strategy"
            )
        self.top_k = top_k
        self.min_candidates = min_candidates
        self.strategy = strategy
        self.costs = member_costs(costs)
        self.policy: Policy = build_policy(policy, policy_options, priors=priors, costs=self.costs)
        if self.generators:
            check_policy_members(self.policy, list(self.generators), self.costs)

    @staticmethod
    def _named_generators(
        generators: Sequence[Generator] | Mapping[str, Generator],
    ) -> dict[str, Generator]:
        items = member_items(
            generators,
            lambda g: getattr(g, "name", None),
            field="generators",
            kind="Generator",
            number_repeats=False,
        )
        named: dict[str, Generator] = {}
        for position, (name, generator) in enumerate(items):
            if not (
                callable(getattr(generator, "generate", None))
                and callable(getattr(generator, "agenerate", None))
            ):
                raise TypeError(
                    f"generator {position} ({name!r}) is a {type(generator).__name__}, not a "
                    "Generator (with generate and agenerate); wrap a function in "
                    "CallableGenerator"
                )
            if not isinstance(name, str) or not name:
                raise ValueError(f"generator {position} has no name (a non-empty string)")
            if name in named:
                raise ValueError(
                    f"duplicate generator name {name!r}: give each generator a unique name "
                    "(or pass a mapping name -> generator)"
                )
            named[name] = generator
        return named

    def __repr__(self) -> str:
        return (
            f"Blender(generators={list(self.generators)!r}, ranker={type(self.ranker).__name__}, "
            f"fuser={type(self.fuser).__name__}, top_k={self.top_k}, timeout={self.timeout}, "
            f"rank_timeout={self.rank_timeout}, fuse_timeout={self.fuse_timeout}, "
            f"min_candidates={self.min_candidates})"
        )

    # -- sync entry points --------------------------------------------------------------------

    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine from sync code (the one bridge, :func:`~blender_core.bridge.run_sync`),
        with enough threads for every sync model at once, plus ranking and fusion."""
        return run_sync(make, workers=len(self.generators) + 4)

    def _iterate(self, make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        return iterate_sync(make, workers=len(self.generators) + 4)

    def blend(self, instruction: str, *, input: str = "") -> BlendResult:
        """Blend the answers of every generator to ``instruction`` (see the class docs).

        Runs the async pipeline through the sync bridge (:mod:`blender_core.bridge`): a private
        event loop, in a worker thread when called inside a running loop (prefer :meth:`ablend`
        there).

        Raises:
            BlendError: fewer than ``min_candidates`` distinct answers.
        """
        return self._run(lambda: self.ablend(instruction, input=input))

    def stream(self, instruction: str, *, input: str = "") -> Iterator[BlendStreamEvent]:
        """:meth:`blend`, with the fused answer streamed as it is written.

        Runs the base models and the ranking as :meth:`blend` does, then yields the fused answer
        as ``"delta"`` events (several when the fuser streams, as :class:`~blender_core.LLMFuser`
        does; one otherwise) and ends with one ``"result"`` event whose ``result.text`` is the
        concatenation of the deltas. The stage deadlines apply. Closing the iterator early stops
        the pipeline.

        Raises:
            BlendError: fewer than ``min_candidates`` distinct answers, or a ranking timeout
                (raised by the iteration, before any delta).

        Example:
            .. code-block:: python

                for event in blender.stream("Explain MBR decoding in two sentences."):
                    if event.kind == "delta":
                        print(event.text, end="", flush=True)
                    else:
                        print("\n", event.result.failures)
        """
        return self._iterate(lambda: self.astream(instruction, input=input))

    def blend_batch(self, instructions: Sequence[str], **options: Any) -> list[BlendResult]:
        """Blend several instructions (``max_concurrency`` blends at a time), in input order;
        the keywords of :meth:`ablend_batch` (``inputs``, ``show_progress``,
        ``max_concurrency``, ``return_exceptions``).

        With ``return_exceptions=True`` a failed blend gives its :class:`BlendError` (or other
        exception) in its place instead of raising.
        """
        return self._run(lambda: self.ablend_batch(instructions, **options))

    def blend_candidates(
        self, instruction: str, candidates: Sequence[str] | Mapping[str, str], **options: Any
    ) -> BlendResult:
        """Rank and fuse precomputed answers (a list, or a mapping model name -> answer).

        A list's answers are named ``candidate_0``, ``candidate_1``, ... Empty answers become
        failures, as in :meth:`blend`; the keywords of :meth:`ablend_candidates` (``input``,
        and ``failures``, ``latencies`` and ``queueing`` from the caller's own calls:
        :func:`~blender_core.members.run_members` outcomes) are carried into the result.
        """
        return self._run(lambda: self.ablend_candidates(instruction, candidates, **options))

    # -- async entry points -------------------------------------------------------------------

    @staticmethod
    def prompt_for(instruction: str, input: str = "") -> str:
        """The prompt every generator gets: the instruction, plus ``"\\n\\n" + input``."""
        return f"{instruction}\n\n{input}" if input else instruction

    async def ablend(self, instruction: str, *, input: str = "") -> BlendResult:
        """Async :meth:`blend`: base models run concurrently on this event loop."""
        results, calls = await self._generate_all(instruction, input)
        ranked = await self._rank(instruction, input, results, calls=calls)
        return await self._fuse_ranked(ranked)

    async def astream(
        self, instruction: str, *, input: str = ""
    ) -> AsyncIterator[BlendStreamEvent]:
        """Async :meth:`stream`: ``"delta"`` events of the fused answer, then one ``"result"``.

        Example:
            .. code-block:: python

                async for event in blender.astream("Explain MBR decoding in two sentences."):
                    if event.kind == "delta":
                        print(event.text, end="", flush=True)
        """
        results, calls = await self._generate_all(instruction, input)
        ranked = await self._rank(instruction, input, results, calls=calls)
        async for event in self._stream_ranked(ranked):
            yield event

    async def _stream_ranked(self, ranked: _Ranked) -> AsyncIterator[BlendStreamEvent]:
        start = time.perf_counter()
        parts: list[str] = []
        async for delta in self._fuse_stream(ranked):
            parts.append(delta)
            yield BlendStreamEvent("delta", text=delta)
        result = ranked.result("".join(parts), time.perf_counter() - start)
        yield BlendStreamEvent("result", result=result)

    async def _generate_all(
        self, instruction: str, input: str
    ) -> tuple[MemberResults[Any], CallReport]:
        """The generators' answers, called as the policy decides (:meth:`acall_members`)."""
        _check_text("instruction", instruction)
        _check_text("input", input)
        if not self.generators:
            raise ValueError(
                "this Blender has no generators: pass some, or hand it answers with "
                "blend_candidates()"
            )
        prompt = self.prompt_for(instruction, input)
        outcomes, calls = await self.acall_members(
            instruction,
            {
                name: partial(generator.agenerate, prompt)
                for name, generator in self.generators.items()
            },
            input=input,
            timeout=self.timeout,
        )
        return MemberResults.from_outcomes(outcomes), calls

    async def acall_members(
        self,
        instruction: str,
        calls: Mapping[str, Callable[[], Awaitable[Any]]],
        *,
        input: str = "",
        timeout: float | EllipsisType | None = ...,
        retries: int = 0,
        check: Callable[[Any], Any] | None = None,
        text_of: Callable[[Any], str] = str,
        usage_of: UsageOf | None = None,
        stage_tracer: StageTracer | None = None,
    ) -> tuple[list[Outcome[Any]], CallReport]:
        """Call members as this Blender's policy decides (:func:`.staging.arun_policy`):
        stage by stage, the answers so far ranked together between stages with this Blender's
        ranker (and priors). A front calls its own members (``calls``: name -> coroutine
        function) with it and hands the outcomes and the report to :meth:`ablend_candidates`.

        Args:
            instruction, input: The prompt, as ranked.
            calls: Member name -> a coroutine function calling it, in ensemble order.
            timeout: Seconds each member may take (default: this Blender's ``timeout``).
            retries: Retries of a member that raises.
            check: Turns an answer into the output, or raises (a failure).
            text_of: An answer's text (for ranking between stages and token estimates).
            usage_of: An answer's reported ``(input_tokens, output_tokens)``, or ``None``.
            stage_tracer: A hook around each stage (default: this Blender's).

        Returns:
            The called members' outcomes and the :class:`~blender_core.staging.CallReport`.
        """
        _check_text("instruction", instruction)
        _check_text("input", input)
        return await StageScorer(self._itself, instruction, input).arun_policy(
            self.policy,
            calls,
            costs=self.costs,
            timeout=self.timeout if timeout is ... else timeout,
            stage_tracer=stage_tracer or self.stage_tracer,
            retries=retries,
            check=check,
            text_of=text_of,
            usage_of=usage_of,
        )

    async def _itself(self) -> Blender:
        return self

    async def ablend_batch(
        self,
        instructions: Sequence[str],
        *,
        inputs: Sequence[str] | None = None,
        show_progress: bool = False,
        max_concurrency: int = 4,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Async :meth:`blend_batch`."""
        if isinstance(instructions, str) or not isinstance(instructions, Sequence):
            raise TypeError("instructions must be a list of strings")
        if inputs is None:
            inputs = [""] * len(instructions)
        if isinstance(inputs, str) or len(inputs) != len(instructions):
            raise ValueError(
                f"inputs must be a list with one input per instruction ({len(instructions)})"
            )
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        from tqdm.auto import tqdm

        semaphore = asyncio.Semaphore(max_concurrency)
        progress = tqdm(total=len(instructions), desc="blend", disable=not show_progress)

        async def one(instruction: str, input: str) -> BlendResult:
            async with semaphore:
                try:
                    return await self.ablend(instruction, input=input)
                finally:
                    progress.update(1)

        try:
            return await asyncio.gather(
                *(one(i, x) for i, x in zip(instructions, inputs, strict=True)),
                return_exceptions=return_exceptions,
            )
        finally:
            progress.close()

    async def ablend_candidates(
        self,
        instruction: str,
        candidates: Sequence[str] | Mapping[str, str],
        *,
        input: str = "",
        failures: Sequence[ModelFailure] = (),
        latencies: Mapping[str, float] | None = None,
        queueing: Mapping[str, float] | None = None,
        calls: CallReport | None = None,
    ) -> BlendResult:
        """Async :meth:`blend_candidates` (``calls``: the report of :meth:`acall_members`)."""
        results = self._candidate_results(
            instruction, candidates, input, failures, latencies, queueing
        )
        ranked = await self._rank(instruction, input, results, calls=calls)
        return await self._fuse_ranked(ranked)

    def stream_candidates(
        self, instruction: str, candidates: Sequence[str] | Mapping[str, str], **options: Any
    ) -> Iterator[BlendStreamEvent]:
        """:meth:`blend_candidates` with the fused answer streamed (the events of :meth:`stream`;
        the keywords of :meth:`astream_candidates`).

        The adapters call their members themselves (for tracing) and stream the fusion of their
        answers with this.
        """
        return self._iterate(lambda: self.astream_candidates(instruction, candidates, **options))

    async def astream_candidates(
        self,
        instruction: str,
        candidates: Sequence[str] | Mapping[str, str],
        *,
        input: str = "",
        failures: Sequence[ModelFailure] = (),
        latencies: Mapping[str, float] | None = None,
        queueing: Mapping[str, float] | None = None,
        calls: CallReport | None = None,
    ) -> AsyncIterator[BlendStreamEvent]:
        """Async :meth:`stream_candidates`."""
        results = self._candidate_results(
            instruction, candidates, input, failures, latencies, queueing
        )
        ranked = await self._rank(instruction, input, results, calls=calls)
        async for event in self._stream_ranked(ranked):
            yield event

    @staticmethod
    def _candidate_results(
        instruction: str,
        candidates: Sequence[str] | Mapping[str, str],
        input: str,
        failures: Sequence[ModelFailure],
        latencies: Mapping[str, float] | None,
        queueing: Mapping[str, float] | None,
    ) -> MemberResults[Any]:
        _check_text("instruction", instruction)
        _check_text("input", input)
        if isinstance(candidates, Mapping):
            answers = dict(candidates)
        elif isinstance(candidates, str) or not isinstance(candidates, Sequence):
            raise TypeError(
                "candidates must be a list of strings or a mapping model name -> answer, "
                f"got {type(candidates).__name__}"
            )
        else:
            answers = {f"candidate_{i}": text for i, text in enumerate(candidates)}
        for failure in failures:
            if not isinstance(failure, ModelFailure):
                raise TypeError(f"failures must be ModelFailure objects, got {failure!r}")
            if failure.model in answers:
                raise ValueError(f"model {failure.model!r} is both a candidate and a failure")
        return MemberResults(
            outputs=answers,
            failures=list(failures),
            latencies=dict(latencies or {}),
            queueing=dict(queueing or {}),
        )

    # -- the shared second half ---------------------------------------------------------------

    async def _fuse_ranked(self, ranked: _Ranked) -> BlendResult:
        """Fuse the ranked top-K within ``fuse_timeout`` (the best one past it)."""
        start = time.perf_counter()
        try:
            text = await _within(
                self.fuser.afuse(ranked.instruction, list(ranked.top), input=ranked.input),
                self.fuse_timeout,
            )
        except (_StageTimeout, TimeoutError) as exc:
            text = ranked.top[0]
            ranked.failures.append(self._fusion_timeout(exc, streamed=0))
        else:
            if not isinstance(text, str):
                raise TypeError(
                    f"{type(self.fuser).__name__} returned {type(text).__name__}, not str"
                )
        return ranked.result(text, time.perf_counter() - start)

    async def _fuse_stream(self, ranked: _Ranked) -> AsyncIterator[str]:
        """The fused answer as deltas, within ``fuse_timeout`` (see :meth:`stream`)."""
        astream = getattr(self.fuser, "astream", None)
        if callable(astream):
            deltas = astream(ranked.instruction, list(ranked.top), input=ranked.input)
        else:
            deltas = _one_fused(self.fuser, ranked)
        streamed = 0
        try:
            async for delta in aiterate_with_deadline(deltas, self.fuse_timeout):
                if not isinstance(delta, str):
                    raise TypeError(
                        f"{type(self.fuser).__name__} streamed {type(delta).__name__}, not str"
                    )
                if delta:
                    streamed += len(delta)
                    yield delta
        except TimeoutError as exc:
            ranked.failures.append(self._fusion_timeout(exc, streamed=streamed))
            if not streamed:
                yield ranked.top[0]

    def _fusion_timeout(self, exc: BaseException, *, streamed: int) -> ModelFailure:
        if isinstance(exc, _StageTimeout | DeadlineExceeded):
            message = f"no fused answer within {self.fuse_timeout:g} s"
        else:
            message = describe_error(exc)
        if streamed:
            message += f"; the answer stops after the {streamed} characters streamed"
        else:
            message += "; the best-ranked candidate is the answer"
        error = exc if not isinstance(exc, _StageTimeout) else TimeoutError(message)
        return ModelFailure(_component_name(self.fuser), "timeout", message, error, "fusion")

    async def _rank(
        self,
        instruction: str,
        input: str,
        results: MemberResults[Any],
        *,
        calls: CallReport | None = None,
    ) -> _Ranked:
        """Merge identical answers, check ``min_candidates`` and rank, within ``rank_timeout``
        (a cascade's last stage ranking of the same texts is reused: :attr:`CallReport.ranked`)."""
        failures = list(results.failures)
        candidates: dict[str, str] = {}
        for name, answer in results.outputs.items():
            if not isinstance(answer, str):
                failures.append(
                    ModelFailure(
                        name, "error", f"TypeError: returned {type(answer).__name__}, not str"
                    )
                )
            elif not answer.strip():
                failures.append(ModelFailure(name, "error", "empty answer"))
            else:
                candidates[name] = answer
        texts, models_by_text = _merge_texts(candidates)
        if len(texts) < self.min_candidates:
            raise BlendError(self._shortfall_message(len(texts), candidates, failures), failures)

        start = time.perf_counter()
        reused = calls.ranked if calls is not None else None
        if reused is not None and list(reused[0]) == texts:
            ranking = reused[1]
        else:
            try:
                ranking = await self._rank_call(
                    instruction, input, texts, models_by_text, top_k=self.top_k
                )
            except BlendError as exc:
                failures.extend(exc.failures)
                raise BlendError(
                    f"{exc}"
                    + (
                        f"; {len(failures) - 1} model(s) failed before" if len(failures) > 1 else ""
                    ),
                    failures,
                ) from None
        rank_latency = time.perf_counter() - start

        top = tuple(texts[i] for i in ranking.top_k(min(self.top_k, len(texts))))
        return _Ranked(
            instruction=instruction,
            input=input,
            candidates=candidates,
            texts=texts,
            models_by_text=models_by_text,
            ranking=ranking,
            top=top,
            failures=failures,
            latencies=dict(results.latencies),
            rank_latency=rank_latency,
            queueing={k: v for k, v in results.queueing.items() if v},
            calls=calls,
        )

    async def _rank_call(
        self,
        instruction: str,
        input: str,
        texts: list[str],
        models_by_text: list[list[str]],
        *,
        top_k: int | None,
    ) -> Ranking:
        """One traced ranking of ``texts`` within ``rank_timeout``; a timeout raises
        :class:`BlendError` with a ``stage="ranking"`` failure. ``top_k``: only the best are
        needed (a ranker that declares it selects them without a full order)."""
        top_k_aware = top_k is not None and ranking_abilities.selects_top_k(
            self.ranker, self.strategy
        )

        def ranking_call() -> Awaitable[Ranking]:
            # a ranker that accepts members (a PriorRanker) is told who said what
            return ranking_abilities.arank_with(
                self.ranker,
                instruction,
                texts,
                input=input,
                strategy=self.strategy,
                top_k=top_k,
                members=models_by_text,
            )

        traced: Awaitable[Ranking]
        if self.rank_tracer is None:
            traced = ranking_call()
        else:
            step = RankStep.of(
                self.ranker,
                len(texts),
                strategy=self.strategy,
                top_k=top_k if top_k is not None else len(texts),
                selects_top_k=top_k_aware,
            )
            traced = self.rank_tracer(step, ranking_call)
        try:
            ranking = await _within(traced, self.rank_timeout)
        except (_StageTimeout, TimeoutError) as exc:
            if isinstance(exc, _StageTimeout):
                message = f"no ranking within {self.rank_timeout:g} s"
                exc = TimeoutError(message)
            else:
                message = describe_error(exc)
            failure = ModelFailure(_component_name(self.ranker), "timeout", message, exc, "ranking")
            raise BlendError(f"the ranking stage failed: {failure}", [failure]) from None
        if len(ranking) != len(texts):
            raise RuntimeError(
                f"{type(self.ranker).__name__} returned a ranking of {len(ranking)} candidates "
                f"for {len(texts)}"
            )
        return ranking

    def _shortfall_message(
        self, distinct: int, candidates: Mapping[str, str], failures: Sequence[ModelFailure]
    ) -> str:
        total = len(candidates) + len(failures)
        parts = [
            f"only {distinct} distinct answer(s) from {total} model(s), "
            f"min_candidates={self.min_candidates}"
        ]
        if failures:
            parts.append(f"{len(failures)} model(s) failed: " + "; ".join(str(f) for f in failures))
        if len(candidates) > distinct:
            parts.append("answered (identical answers merged): " + ", ".join(candidates))
        return "; ".join(parts)


class StageScorer:
    """Ranks a policy's answers so far between stages (:func:`~blender_core.staging.arun_policy`'s
    ``score``) with a Blender's ranker and priors, and keeps the last ranking for the final one.

    Args:
        blender: Gives the Blender whose ranker ranks (awaited on the first stage that needs a
            ranking, so a policy that never ranks between stages loads nothing).
        instruction, input: The prompt, as ranked.
    """

    def __init__(
        self, blender: Callable[[], Awaitable[Blender]], instruction: str, input: str
    ) -> None:
        self._blender = blender
        self.instruction = instruction
        self.input = input
        self.last: tuple[tuple[str, ...], Ranking] | None = None

    async def __call__(self, answers: Mapping[str, str]) -> Mapping[str, float]:
        """Member -> the score of its answer, the distinct answers ranked together."""
        blender = await self._blender()
        texts, models_by_text = _merge_texts(answers)
        ranking = await blender._rank_call(
            self.instruction, self.input, texts, models_by_text, top_k=None
        )
        self.last = (tuple(texts), ranking)
        return {
            name: float(ranking.scores[i])
            for i, models in enumerate(models_by_text)
            for name in models
        }

    def ranked(self) -> tuple[tuple[str, ...], Ranking] | None:
        """The last ranking of the distinct texts (:attr:`CallReport.ranked`)."""
        return self.last

    async def arun_policy(
        self,
        policy: Policy,
        calls: Mapping[str, Callable[[], Awaitable[Any]]],
        *,
        costs: Mapping[str, MemberCost],
        timeout: float | None,
        stage_tracer: StageTracer | None,
        **options: Any,
    ) -> tuple[list[Outcome[Any]], CallReport]:
        """Check that ``policy`` and ``costs`` fit the members of ``calls``, then call them
        (:func:`~blender_core.staging.arun_policy`) with this scorer ranking between stages and
        its last ranking handed to the report. ``options``: ``retries``, ``check``,
        ``text_of``, ``usage_of``."""
        check_policy_members(policy, list(calls), costs)
        return await arun_policy(
            policy,
            calls,
            prompt=Blender.prompt_for(self.instruction, self.input),
            score=self,
            timeout=timeout,
            costs=costs,
            stage_tracer=stage_tracer,
            ranked=self.ranked,
            **options,
        )


def _merge_texts(answers: Mapping[str, str]) -> tuple[list[str], list[list[str]]]:
    """The distinct texts (equal after stripping surrounding whitespace), in the order of first
    occurrence, and the members that gave each."""
    texts: list[str] = []
    models_by_text: list[list[str]] = []
    position: dict[str, int] = {}
    for name, answer in answers.items():
        key = answer.strip()
        if key in position:
            models_by_text[position[key]].append(name)
        else:
            position[key] = len(texts)
            texts.append(answer)
            models_by_text.append([name])
    return texts, models_by_text


async def _one_fused(fuser: Fuser, ranked: _Ranked) -> AsyncIterator[str]:
    yield await fuser.afuse(ranked.instruction, list(ranked.top), input=ranked.input)


def _check_text(field_name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{field_name} must be a string, got {type(value).__name__}")
