"""The one blend engine behind every front: a front collects the members' answers, it does the rest.

A front (the LangChain ensembles, LlamaIndex ``BlenderLLM``, the gateway) translates types:
it calls its members its own way (for its tracing) and hands their outcomes to an
:class:`Engine`, which

* builds the ranker and the fuser from specs on first use, through the one factory
  (:mod:`blender_core.loading`), once, thread-safely (:class:`~blender_core.lazy.Lazy`);
* ranks and fuses text answers (:meth:`Engine.ablend`, :meth:`Engine.astream`: the core
  :class:`~blender_core.blend.Blender` pipeline, with the front's rank tracer);
* selects among tool-call proposals (:meth:`Engine.aselect`: :mod:`blender_core.tool_calls`);
* offers every async method in sync form through the one bridge (:mod:`blender_core.bridge`);
* reports one metadata schema (:meth:`~blender_core.blend.BlendResult.to_dict`, ``blend_mode``
  included).

The chat policy (:func:`blender_core.chat.chat_prompt`) gives the ``instruction`` and ``input``
a front passes here.

Example:
    .. code-block:: python

        from blender_core.engine import Engine
        from blender_core.members import MemberResults

        engine = Engine(ranker="consensus", fuser="select", top_k=2)  # nothing loads yet
        results = MemberResults(outputs={"a": "Paris.", "b": "It is Paris."})
        result = engine.blend("Capital of France?", results)
        result.to_dict()["blend_mode"]  # "text"
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from types import EllipsisType
from typing import Any

from blender_core.blend import (
    Blender,
    BlendResult,
    BlendStreamEvent,
    RankStep,
    RankTracer,
    StageScorer,
)
from blender_core.bridge import iterate_sync, run_sync
from blender_core.fusion.base import Fuser
from blender_core.lazy import Lazy
from blender_core.loading import DEFAULT_RANKER, load_fuser, load_ranker
from blender_core.members import MemberResults, Outcome
from blender_core.policies import Policy, build_policy, member_costs
from blender_core.ranking import Ranker, Ranking, arank_with
from blender_core.staging import CallReport, StageTracer, UsageOf
from blender_core.tool_calls import ToolCallSelection, ToolProposal, aselect_tool_calls

__all__ = ["DEFAULT_OPTIONS", "Engine", "check_options", "engine_options"]

DEFAULT_OPTIONS: Mapping[str, Any] = {
    "ranker": DEFAULT_RANKER,
    "fuser": None,
    "top_k": 3,
    "strategy": None,
    "timeout": 60.0,
    "min_candidates": 1,
    "max_retries": 0,
    "device": None,
    "priors": None,
    "policy": "all",
    "policy_options": None,
    "costs": None,
}
"""The options every front takes, with the same names and defaults (the LangChain ensembles,
LlamaIndex ``BlenderLLM``; the gateway's TOML ``[ensembles.NAME]`` tables use the same names)."""


def engine_options(front: Any) -> dict[str, Any]:
    """A front's options for :class:`Engine`, read by their shared names from its attributes
    (the member options, ``max_retries``, stay with the front)."""
    return {name: getattr(front, name) for name in DEFAULT_OPTIONS if name != "max_retries"}


def check_options(
    *,
    top_k: Any = 3,
    timeout: Any = 60.0,
    min_candidates: Any = 1,
    max_retries: Any = 0,
) -> None:
    """Refuse bad option values at construction (before anything loads), naming the option."""
    for name, value, low in (("top_k", top_k, 1), ("min_candidates", min_candidates, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")


class Engine:
    """Ranker, fuser and pipeline of one ensemble, built from specs on first use.

    Args:
        ranker: A :class:`~blender_core.ranking.Ranker` or a spec for
            :func:`~blender_core.loading.load_ranker` (default: the PairRM checkpoint).
        fuser: A Fuser, a Generator (an LLM fuser over it) or a spec for
            :func:`~blender_core.loading.load_fuser` (``None``: select the best answer). A front
            converts its framework's model to a Generator first.
        top_k: How many of the best answers the fuser gets.
        timeout: Seconds each member may take; also the ranking's and the fusion's deadline
            unless ``rank_timeout``/``fuse_timeout`` say otherwise.
        min_candidates: Fewest distinct answers to go on with.
        strategy: The ranking strategy (``None``: the ranker's default).
        priors: Member priors (a ``MemberPriors`` or a file from ``blender calibrate``).
        device, dtype: Where (and in what dtype) ranker and fuser models load.
        rank_timeout, fuse_timeout: As for :class:`~blender_core.blend.Blender`.
        rank_tracer: The front's hook around each ranking call (a LangChain run, a span).
        policy, policy_options, costs: Which members a blend calls, and their prices (as for
            :class:`~blender_core.blend.Blender`; checked here, before anything loads).
        stage_tracer: The front's hook around each stage of member calls.
    """

    def __init__(
        self,
        *,
        ranker: Any = DEFAULT_RANKER,
        fuser: Any = None,
        top_k: int = 3,
        timeout: float | None = 60.0,
        min_candidates: int = 1,
        strategy: str | None = None,
        priors: Any = None,
        device: Any = None,
        dtype: Any = None,
        rank_timeout: float | EllipsisType | None = ...,
        fuse_timeout: float | EllipsisType | None = ...,
        rank_tracer: RankTracer | None = None,
        policy: Policy | str | None = "all",
        policy_options: Mapping[str, Any] | None = None,
        costs: Mapping[str, Any] | None = None,
        stage_tracer: StageTracer | None = None,
    ) -> None:
        check_options(top_k=top_k, timeout=timeout, min_candidates=min_candidates)
        self.costs = member_costs(costs)
        self.policy: Policy = build_policy(policy, policy_options, priors=priors, costs=self.costs)
        self.stage_tracer = stage_tracer
        self.ranker_spec = ranker
        self.fuser_spec = fuser
        self.top_k = top_k
        self.timeout = timeout
        self.min_candidates = min_candidates
        self.strategy = strategy
        self.priors = priors
        self.device = device
        self.dtype = dtype
        self.rank_timeout = rank_timeout
        self.fuse_timeout = fuse_timeout
        self.rank_tracer = rank_tracer
        self._ranker: Lazy[Ranker] = Lazy(self._load_ranker)
        self._fuser: Lazy[Fuser] = Lazy(
            lambda: load_fuser(self.fuser_spec, device=self.device, dtype=self.dtype)
        )
        self._core: Lazy[Blender] = Lazy(self._build)

    def __repr__(self) -> str:
        return (
            f"Engine(ranker={self.ranker_spec!r}, fuser={self.fuser_spec!r}, top_k={self.top_k}, "
            f"strategy={self.strategy!r}, timeout={self.timeout}, loaded={self.loaded})"
        )

    # -- lazy build ---------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether the ranker has been built."""
        return self._ranker.loaded

    def _load_ranker(self) -> Ranker:
        ranker = load_ranker(self.ranker_spec, device=self.device, dtype=self.dtype)
        if self.priors is not None:
            from blender_core.priors import PriorRanker

            ranker = PriorRanker(ranker, self.priors)
        return ranker

    def _build(self) -> Blender:
        return Blender(
            (),
            self._ranker.get(),
            self._fuser.get(),
            top_k=self.top_k,
            timeout=self.timeout,
            rank_timeout=self.rank_timeout,
            fuse_timeout=self.fuse_timeout,
            min_candidates=self.min_candidates,
            strategy=self.strategy,
            rank_tracer=self.rank_tracer,
            policy=self.policy,
            costs=self.costs,
            stage_tracer=self.stage_tracer,
        )

    @property
    def ranker(self) -> Ranker:
        """The ranker (built on first access; the fuser is not loaded by this)."""
        return self._ranker.get()

    @property
    def fuser(self) -> Fuser:
        """The fuser (built on first access; the ranker is not loaded by this)."""
        return self._fuser.get()

    @property
    def core(self) -> Blender:
        """The core pipeline (loads the ranker and the fuser on first access)."""
        return self._core.get()

    async def acore(self) -> Blender:
        """:attr:`core`, a first load (model weights) run off the event loop."""
        return await self._core.aget()

    # -- the stages alone: rank, fuse ----------------------------------------------------------

    async def arank(
        self, instruction: str, candidates: Sequence[str], *, input: str = ""
    ) -> Ranking:
        """Rank ``candidates`` fully with this engine's ranker and strategy (traced by the
        front's tracer); a single candidate is not ranked (score 0). Loads no fuser."""
        _check_candidates(candidates)
        if len(candidates) == 1:
            return Ranking.from_scores([0.0])
        ranker = await self._ranker.aget()
        texts = list(candidates)

        def call() -> Awaitable[Ranking]:
            return arank_with(ranker, instruction, texts, input=input, strategy=self.strategy)

        if self.rank_tracer is None:
            return await call()
        step = RankStep.of(ranker, len(texts), strategy=self.strategy, top_k=len(texts))
        return await self.rank_tracer(step, call)

    def rank(self, instruction: str, candidates: Sequence[str], *, input: str = "") -> Ranking:
        """Sync :meth:`arank` (through the bridge)."""
        return run_sync(lambda: self.arank(instruction, candidates, input=input))

    async def afuse(self, instruction: str, candidates: Sequence[str], *, input: str = "") -> str:
        """Fuse ``candidates`` (best first) with this engine's fuser; loads no ranker."""
        _check_candidates(candidates)
        fuser = await self._fuser.aget()
        return await fuser.afuse(instruction, list(candidates), input=input)

    def fuse(self, instruction: str, candidates: Sequence[str], *, input: str = "") -> str:
        """Sync :meth:`afuse` (through the bridge)."""
        return run_sync(lambda: self.afuse(instruction, candidates, input=input))

    # -- text answers: rank and fuse -----------------------------------------------------------

    # -- the members: called as the policy decides --------------------------------------------

    async def acall_members(
        self,
        instruction: str,
        calls: Mapping[str, Callable[[], Awaitable[Any]]],
        *,
        input: str = "",
        retries: int = 0,
        check: Callable[[Any], Any] | None = None,
        text_of: Callable[[Any], str] = str,
        usage_of: UsageOf | None = None,
    ) -> tuple[list[Outcome[Any]], CallReport]:
        """Call a front's members as the policy decides, each within ``timeout``
        (:meth:`Blender.acall_members <blender_core.blend.Blender.acall_members>`). A policy
        that ranks nothing between stages (``"all"``, ``"router"``) loads nothing here; a
        cascade loads the ranker (and the fuser) on its first ranking between stages.

        Returns:
            The called members' outcomes and the :class:`~blender_core.staging.CallReport` to
            hand to :meth:`ablend`, :meth:`astream` or :meth:`aselect` as ``calls=``.
        """
        return await StageScorer(self.acore, instruction, input).arun_policy(
            self.policy,
            calls,
            costs=self.costs,
            timeout=self.timeout,
            stage_tracer=self.stage_tracer,
            retries=retries,
            check=check,
            text_of=text_of,
            usage_of=usage_of,
        )

    @staticmethod
    def _run(
        results: MemberResults[str] | Mapping[str, str], calls: CallReport | None
    ) -> dict[str, Any]:
        if isinstance(results, MemberResults):
            return {**results.blend_keywords(), "calls": calls}
        return {"candidates": results, "calls": calls}

    async def ablend(
        self,
        instruction: str,
        results: MemberResults[str] | Mapping[str, str],
        *,
        input: str = "",
        calls: CallReport | None = None,
    ) -> BlendResult:
        """Rank and fuse the members' answers (``results``: their run, or answers by member;
        ``calls``: :meth:`acall_members`' report).

        Raises:
            BlendError: fewer than ``min_candidates`` distinct answers, or a ranking timeout.
        """
        core = await self.acore()
        return await core.ablend_candidates(instruction, input=input, **self._run(results, calls))

    def blend(
        self,
        instruction: str,
        results: MemberResults[str] | Mapping[str, str],
        *,
        input: str = "",
        calls: CallReport | None = None,
    ) -> BlendResult:
        """Sync :meth:`ablend` (through the bridge: works inside a running event loop too)."""
        return run_sync(lambda: self.ablend(instruction, results, input=input, calls=calls))

    async def astream(
        self,
        instruction: str,
        results: MemberResults[str] | Mapping[str, str],
        *,
        input: str = "",
        calls: CallReport | None = None,
    ) -> AsyncIterator[BlendStreamEvent]:
        """:meth:`ablend` as events: the fused answer's deltas (an LLM fuser's tokens as
        generated, another fuser's answer as one delta), then the ``"result"`` event."""
        core = await self.acore()
        events = core.astream_candidates(instruction, input=input, **self._run(results, calls))
        async for event in events:
            yield event

    def stream(
        self,
        instruction: str,
        results: MemberResults[str] | Mapping[str, str],
        *,
        input: str = "",
        calls: CallReport | None = None,
    ) -> Iterator[BlendStreamEvent]:
        """Sync :meth:`astream` (through the bridge)."""
        return iterate_sync(lambda: self.astream(instruction, results, input=input, calls=calls))

    # -- tool calls: select, never fuse --------------------------------------------------------

    async def aselect(
        self,
        instruction: str,
        proposals: Mapping[str, ToolProposal | str],
        *,
        results: MemberResults[Any] | None = None,
        input: str = "",
        calls: CallReport | None = None,
    ) -> ToolCallSelection:
        """Select the best tool-call proposal (:func:`~blender_core.tool_calls.aselect_tool_calls`
        with this engine's ranker, strategy, deadline, tracer and ``min_candidates``);
        ``results`` adds the members' failures, latencies and queueing; ``calls`` the policy's
        report (:meth:`acall_members`)."""
        ranker = await self._ranker.aget()
        rank_timeout = self.timeout if self.rank_timeout is ... else self.rank_timeout
        return await aselect_tool_calls(
            ranker,
            instruction,
            proposals,
            input=input,
            strategy=self.strategy,
            min_candidates=self.min_candidates,
            failures=results.failures if results is not None else (),
            latencies=results.latencies if results is not None else None,
            queueing=results.queueing if results is not None else None,
            rank_timeout=rank_timeout,
            rank_tracer=self.rank_tracer,
            calls=calls,
        )

    def select(
        self, instruction: str, proposals: Mapping[str, ToolProposal | str], **options: Any
    ) -> ToolCallSelection:
        """Sync :meth:`aselect` (through the bridge; the same keywords)."""
        return run_sync(lambda: self.aselect(instruction, proposals, **options))


def _check_candidates(candidates: Sequence[str]) -> None:
    if isinstance(candidates, str) or not isinstance(candidates, Sequence):
        raise TypeError(f"candidates must be a list of strings, got {type(candidates).__name__}")
    if not candidates:
        raise ValueError("candidates is empty: nothing to rank or fuse")
