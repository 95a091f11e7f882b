"""Call an ensemble's members under a policy, stage by stage, and report the calls.

The one loop that every front runs (the core :class:`~blender_core.blend.Blender`, the
LangChain ensembles, LlamaIndex ``BlenderLLM``, the gateway): a :mod:`policy
<blender_core.policies>` names the members of each stage; the members of a stage are called at
once (:func:`~blender_core.members.arun_members`: deadline, retries, failures); between stages
the answers so far are ranked together (``score``: the ensemble's ranker, with its priors) and
the policy decides whether to go on. :class:`CallReport` says who was called, in which stage,
who was skipped and why, each member's tokens and cost, and the calls saved.

Example:
    .. code-block:: python

        from blender_core.policies import CascadePolicy
        from blender_core.staging import arun_policy

        outcomes, report = await arun_policy(
            CascadePolicy(threshold=0.8), calls, prompt=prompt, score=score, timeout=30
        )
        report.to_dict()  # {"policy": "cascade", "called": [...], "calls_saved": 2, ...}
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blender_core.members import Outcome, arun_members, describe_error
from blender_core.policies import (
    MemberCost,
    Observation,
    Policy,
    PolicyRun,
    Stop,
    estimate_tokens,
)
from blender_core.ranking import Ranking

__all__ = [
    "CallReport",
    "MemberUsage",
    "StageStep",
    "StageTracer",
    "UsageOf",
    "arun_policy",
]


@dataclass(frozen=True)
class MemberUsage:
    """A member call's tokens (as the member reported them, or estimated from the texts).

    Attributes:
        input_tokens: Prompt tokens.
        output_tokens: Answer tokens.
        estimated: Whether they are estimates (4 characters a token), not the member's report.
    """

    input_tokens: int
    output_tokens: int
    estimated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "estimated": self.estimated,
        }


@dataclass(frozen=True)
class StageStep:
    """One stage of a blend's member calls, for traces (a LangChain run, a LlamaIndex span).

    Attributes:
        index: The stage's number, from 0.
        members: The members called in it.
        policy: The policy's name.
        hedged: Whether it was started early, while the stage before was still running.
    """

    index: int
    members: tuple[str, ...]
    policy: str
    hedged: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the traces' inputs)."""
        return {
            "stage": self.index,
            "members": list(self.members),
            "policy": self.policy,
            "hedged": self.hedged,
        }


StageTracer = Callable[
    [StageStep, Callable[[], Awaitable[list[Outcome[Any]]]]], Awaitable[list[Outcome[Any]]]
]
"""A hook around each stage: ``tracer(step, run)`` awaits ``run()`` inside the framework's run
or span and returns its outcomes."""

UsageOf = Callable[[Any], "tuple[int, int] | None"]
"""A member answer's reported ``(input_tokens, output_tokens)``, or ``None`` when it has none."""


@dataclass(frozen=True)
class CallReport:
    """Which members a blend called, and what the calls cost.

    Attributes:
        policy: The policy's name (``all``, ``cascade``, ``router``, or a custom one's).
        members: The ensemble's members, in order.
        stages: The members called in each stage, in order.
        skipped: Member -> why it was not called (``confident``, ``budget``, ``max_members``,
            ``latency_budget``, ``not_routed``, ``rank_error``).
        stop_reason: Why the policy called no more (``all_called``, ``confident``, ...).
        confidences: The cascade's calibrated confidence after each stage it measured one.
        usage: Member -> its call's tokens (the members called that answered or failed late).
        cost: Member -> its call's price (from the ensemble's ``costs``; members without a
            declared cost are absent).
        hedged: How many stages were started early.
    """

    policy: str
    members: tuple[str, ...]
    stages: tuple[tuple[str, ...], ...]
    skipped: Mapping[str, str] = field(default_factory=dict)
    stop_reason: str = "all_called"
    confidences: tuple[float, ...] = ()
    usage: Mapping[str, MemberUsage] = field(default_factory=dict)
    cost: Mapping[str, float] = field(default_factory=dict)
    hedged: int = 0
    ranked: tuple[tuple[str, ...], Ranking] | None = field(default=None, repr=False, compare=False)
    """The last stage's ranking of the distinct texts so far (not reported): the blend's final
    ranking reuses it when it ranks the very same texts, so no pair is ranked twice."""

    @property
    def called(self) -> tuple[str, ...]:
        """Every member called, in the order of the stages."""
        return tuple(name for stage in self.stages for name in stage)

    @property
    def calls_made(self) -> int:
        """How many members were called."""
        return sum(len(stage) for stage in self.stages)

    @property
    def calls_saved(self) -> int:
        """How many members were not called (against calling every member)."""
        return len(self.members) - self.calls_made

    @property
    def total_cost(self) -> float:
        """The summed price of the calls."""
        return float(sum(self.cost.values()))

    @classmethod
    def everyone(cls, members: Sequence[str], policy: str = "all") -> CallReport:
        """The report of one stage that called every member (answers handed in from outside)."""
        return cls(policy=policy, members=tuple(members), stages=(tuple(members),))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the ``calls`` key of the blend metadata."""
        return {
            "policy": self.policy,
            "members": list(self.members),
            "called": list(self.called),
            "skipped": dict(self.skipped),
            "stop_reason": self.stop_reason,
            "stages": [list(stage) for stage in self.stages],
            "confidences": list(self.confidences),
            "calls_made": self.calls_made,
            "calls_saved": self.calls_saved,
            "hedged": self.hedged,
            "usage": {name: usage.to_dict() for name, usage in self.usage.items()},
            "cost": dict(self.cost),
            "total_cost": self.total_cost,
        }


Score = Callable[[Mapping[str, str]], Awaitable[Mapping[str, float]]]
"""Ranks the answers so far (member -> text) together: member -> score (higher is better)."""


def _usage(
    outcome: Outcome[Any],
    prompt_tokens: int,
    usage_of: UsageOf | None,
    text_of: Callable[[Any], str],
) -> MemberUsage:
    if outcome.failure is not None:
        return MemberUsage(prompt_tokens, 0, estimated=True)
    reported = usage_of(outcome.output) if usage_of is not None else None
    if reported is not None:
        return MemberUsage(int(reported[0]), int(reported[1]))
    text = text_of(outcome.output)
    return MemberUsage(prompt_tokens, estimate_tokens(text) if text else 0, estimated=True)


async def arun_policy(
    policy: Policy,
    calls: Mapping[str, Callable[[], Awaitable[Any]]],
    *,
    prompt: str,
    score: Score | None = None,
    timeout: float | None,
    retries: int = 0,
    check: Callable[[Any], Any] | None = None,
    costs: Mapping[str, MemberCost] | None = None,
    usage_of: UsageOf | None = None,
    text_of: Callable[[Any], str] = str,
    stage_tracer: StageTracer | None = None,
    ranked: Callable[[], tuple[tuple[str, ...], Ranking] | None] | None = None,
) -> tuple[list[Outcome[Any]], CallReport]:
    """Call the members ``policy`` chooses, stage by stage, each under ``timeout`` seconds.

    Args:
        policy: The policy (:func:`~blender_core.policies.build_policy`).
        calls: Member name -> a coroutine function calling it (in ensemble order).
        prompt: The prompt (the router's input; token estimates).
        score: Ranks the answers so far, for a policy that decides from them (a cascade);
            without it such a policy goes on as if every member failed.
        timeout: Seconds each member may take (retries included).
        retries: Retries of a member that raises.
        check: Turns a raw answer into the output, or raises (a failure).
        costs: Member -> price, for the report's ``cost`` and the policy's spend.
        usage_of: An answer's reported token counts (else estimated from ``text_of``).
        text_of: An answer's text.
        stage_tracer: A hook around each stage (:data:`StageTracer`).
        ranked: Gives ``score``'s last ranking, for :attr:`CallReport.ranked`.

    Returns:
        Every called member's outcome (in the order called) and the :class:`CallReport`.
    """
    members = list(calls)
    costs = costs or {}
    prompt_tokens = estimate_tokens(prompt)
    start = time.perf_counter()
    # off the event loop: a router embeds the prompt (and loads its encoder on first use)
    run: PolicyRun = await asyncio.to_thread(policy.start, prompt, members)
    needs_observation = getattr(run, "needs_observation", True)
    hedge_after = getattr(policy, "hedge_after", None)
    policy_name = str(getattr(policy, "name", type(policy).__name__))
    outcomes: list[Outcome[Any]] = []
    usage: dict[str, MemberUsage] = {}
    cost: dict[str, float] = {}
    stages: list[tuple[str, ...]] = []
    hedged = 0
    rank_error: str | None = None

    async def call_stage(stage: Sequence[str], step_hedged: bool) -> list[Outcome[Any]]:
        unknown = [name for name in stage if name not in calls]
        if unknown:
            raise ValueError(f"the policy chose members not in the ensemble: {unknown}")
        step = StageStep(len(stages), tuple(stage), policy_name, step_hedged)
        stages.append(tuple(stage))

        def go() -> Awaitable[list[Outcome[Any]]]:
            return arun_members(
                {name: calls[name] for name in stage}, timeout=timeout, check=check, retries=retries
            )

        return await (go() if stage_tracer is None else stage_tracer(step, go))

    async def run_stage(stage: Sequence[str]) -> list[Outcome[Any]]:
        nonlocal hedged
        first = asyncio.ensure_future(call_stage(stage, False))
        hedge_stage = getattr(run, "hedge_stage", None)
        if hedge_after is None or hedge_stage is None:
            return await first
        try:
            done, _ = await asyncio.wait({first}, timeout=hedge_after)
        except asyncio.CancelledError:
            first.cancel()
            raise
        if done:
            return first.result()
        early = hedge_stage()
        if not early:
            return await first
        hedged += 1
        second = asyncio.ensure_future(call_stage(early, True))
        try:
            results = await asyncio.gather(first, second)
        except BaseException:
            first.cancel()
            second.cancel()
            raise
        return results[0] + results[1]

    stage = run.first_stage()
    while True:
        stage_outcomes = await run_stage(stage)
        for outcome in stage_outcomes:
            outcomes.append(outcome)
            usage[outcome.name] = _usage(outcome, prompt_tokens, usage_of, text_of)
            member_cost = costs.get(outcome.name)
            if member_cost is not None:
                tokens = usage[outcome.name]
                cost[outcome.name] = member_cost.cost(tokens.input_tokens, tokens.output_tokens)
        answered = {o.name: text_of(o.output) for o in outcomes if o.failure is None}
        scores: Mapping[str, float] = {}
        if needs_observation and answered and score is not None and len(run.called) < len(members):
            try:
                scores = await score(answered)
            except Exception as exc:
                rank_error = describe_error(exc)
        if rank_error is not None:
            for name in members:
                if name not in run.called:
                    run.skipped[name] = "rank_error"
            decision = Stop("rank_error")
            break
        names = [name for name in answered if name in scores]
        observation = Observation(
            members=names,
            scores=[float(scores[name]) for name in names],
            spent=sum(cost.values()) if costs else None,
            elapsed_s=time.perf_counter() - start,
        )
        next_stage = run.next_stage(observation)
        if isinstance(next_stage, Stop):
            decision = next_stage
            break
        stage = next_stage
    report = CallReport(
        policy=policy_name,
        members=tuple(members),
        stages=tuple(stages),
        skipped=dict(run.skipped),
        stop_reason=decision.reason,
        confidences=tuple(getattr(run, "confidences", ())),
        usage=usage,
        cost=cost,
        hedged=hedged,
        ranked=ranked() if ranked is not None and rank_error is None else None,
    )
    return outcomes, report
