"""Blend for a fraction of the calls: which members to call, stage by stage.

A *policy* decides which members of an ensemble a blend calls. It is a pure decision object: it
never calls a model, never ranks, and imports no framework, so the Blender, the LangChain and
LlamaIndex fronts, the gateway and the offline evaluator
(:mod:`blender_core.evaluation.policies`) all drive the same code:

.. code-block:: python

    run = policy.start(prompt, members)          # one run per request
    stage = run.first_stage()                    # members to call now
    while True:
        answers = call(stage)                    # the engine calls them (and ranks, with priors)
        decision = run.next_stage(Observation(members=called, scores=combined_scores))
        if isinstance(decision, Stop):
            break
        stage = decision
    run.called, run.skipped                      # for the BlendResult's metadata

Three policies:

- :class:`AllPolicy` (``"all"``, the default): every member, in one stage.
- :class:`CascadePolicy` (``"cascade"``): members in stages, in an order given or derived from
  the member priors and costs; after each stage it stops when its *confidence* (a logistic model
  calibrated on labelled data, :class:`StopCalibration`) that the current best answer beats every
  member not called yet reaches ``threshold``, or when a member count or cost budget is reached.
  ``hedge_after`` describes the hedged variant: the engine starts the next planned stage early when
  a stage is still running after that many seconds (:meth:`CascadeRun.hedge_stage`).
- :class:`RouterPolicy` (``"router"``): a learned :class:`~blender_core.routing.RouterModel`
  predicts each member's chance to give the best answer for the prompt; the top ``m`` members
  (or the fewest whose probabilities sum to ``mass``) are called in one stage.

:class:`MemberCost` declares a member's price and expected latency.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from blender_core.priors import MemberPriors
    from blender_core.routing import RouterModel

__all__ = [
    "STOP_FEATURES",
    "AllPolicy",
    "AllRun",
    "CascadePolicy",
    "CascadeRun",
    "MemberCost",
    "Observation",
    "Policy",
    "PolicyRun",
    "RouterPolicy",
    "RouterRun",
    "Stop",
    "StopCalibration",
    "build_policy",
    "check_policy_members",
    "estimate_tokens",
    "make_policy",
    "member_costs",
]

STOP_FEATURES = ("margin_vs_remaining", "margin_vs_runner_up", "log_called", "bias")
"""The cascade's stop features, in the order of :attr:`StopCalibration.weights`."""


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token) for cost estimates when none is reported."""
    return max(1, math.ceil(len(text) / 4))


@dataclass(frozen=True)
class MemberCost:
    """A member's price and expected latency (all optional; zero means free or unknown).

    Attributes:
        input_per_1k: Price per 1,000 prompt tokens.
        output_per_1k: Price per 1,000 answer tokens.
        per_call: Fixed price per call (added to the token prices).
        latency_s: Expected seconds per call (for latency budgets and hedging).
        expected_output_tokens: Answer length assumed before the call (cost budgets).
    """

    input_per_1k: float = 0.0
    output_per_1k: float = 0.0
    per_call: float = 0.0
    latency_s: float = 0.0
    expected_output_tokens: int = 500

    def __post_init__(self) -> None:
        for name in ("input_per_1k", "output_per_1k", "per_call", "latency_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"MemberCost.{name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"MemberCost.{name} must be a finite number >= 0, got {value!r}")
        if isinstance(self.expected_output_tokens, bool) or self.expected_output_tokens < 0:
            raise ValueError(
                "MemberCost.expected_output_tokens must be >= 0, "
                f"got {self.expected_output_tokens!r}"
            )

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """The price of one call with these token counts."""
        if input_tokens < 0 or output_tokens < 0:
            raise ValueError(f"token counts must be >= 0, got {input_tokens}, {output_tokens}")
        return (
            self.per_call
            + self.input_per_1k * input_tokens / 1000.0
            + self.output_per_1k * output_tokens / 1000.0
        )

    def expected_cost(self, input_tokens: int) -> float:
        """The price of a call before it is made (``expected_output_tokens`` answer tokens)."""
        return self.cost(input_tokens, self.expected_output_tokens)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the keyword arguments)."""
        return asdict(self)

    @classmethod
    def from_value(cls, value: MemberCost | Mapping[str, Any] | float) -> MemberCost:
        """A cost from itself, a mapping of the fields, or a bare number (a price per call)."""
        if isinstance(value, MemberCost):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(
                    f"unknown MemberCost field(s) {sorted(unknown)}; "
                    f"known: {sorted(cls.__dataclass_fields__)}"
                )
            return cls(**value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return cls(per_call=float(value))
        raise TypeError(f"a member cost must be a MemberCost, mapping or number, got {value!r}")


def member_costs(costs: Mapping[str, Any] | None) -> dict[str, MemberCost]:
    """A price table: member name -> :class:`MemberCost` (from costs, mappings or per-call
    numbers, :meth:`MemberCost.from_value`); ``None`` gives an empty table."""
    if costs is None:
        return {}
    if not isinstance(costs, Mapping):
        raise TypeError(f"costs must map member names to costs, got {type(costs).__name__}")
    table: dict[str, MemberCost] = {}
    for name, value in costs.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"costs: member names must be non-empty strings, got {name!r}")
        try:
            table[name] = MemberCost.from_value(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"costs[{name!r}]: {exc}") from exc
    return table


@dataclass(frozen=True)
class Observation:
    """What the engine saw after a stage: the members called so far and their scores.

    Attributes:
        members: Every member called so far that answered (in any order), one per candidate;
            empty when none has answered yet (every call so far failed).
        scores: The ranking score of each member's candidate, ranked together (the ranker's
            score plus the member prior where priors are used; higher is better).
        spent: The cost spent so far, when the engine knows it (else the policy estimates it).
        elapsed_s: Seconds since the blend started, when known.
    """

    members: Sequence[str]
    scores: Sequence[float]
    spent: float | None = None
    elapsed_s: float | None = None

    def __post_init__(self) -> None:
        if len(self.members) != len(self.scores):
            raise ValueError(
                f"an Observation needs one score per member: {len(self.members)} members, "
                f"{len(self.scores)} scores"
            )
        if any(not math.isfinite(float(s)) for s in self.scores):
            raise ValueError(f"observation scores must be finite, got {list(self.scores)}")


@dataclass(frozen=True)
class Stop:
    """The policy's decision to call no more members.

    Attributes:
        reason: ``"all_called"``, ``"confident"``, ``"max_members"``, ``"budget"``,
            ``"latency_budget"`` or ``"routed"``.
        confidence: The calibrated confidence when the cascade stopped on it.
    """

    reason: str
    confidence: float | None = None


class PolicyRun(Protocol):
    """One request's decisions (see the module docstring for the loop).

    A run may declare ``needs_observation = False`` (its :meth:`next_stage` ignores the
    observation, as :class:`AllRun` and :class:`RouterRun` do): the engine then ranks nothing
    between stages.
    """

    called: list[str]
    skipped: dict[str, str]

    def first_stage(self) -> list[str]: ...

    def next_stage(self, observation: Observation) -> list[str] | Stop: ...


class Policy(Protocol):
    """A member-selection policy: ``start`` gives one request's :class:`PolicyRun`."""

    @property
    def name(self) -> str:
        """The policy's name (``all``, ``cascade``, ``router``)."""
        ...

    def start(
        self, prompt: str, members: Sequence[str], *, embedding: np.ndarray | None = None
    ) -> PolicyRun: ...


def _check_members(members: Sequence[str]) -> list[str]:
    if isinstance(members, str):
        raise TypeError("members must be a list of member names, not a single string")
    names = list(members)
    if not names:
        raise ValueError("a policy needs at least one member")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"member names must be non-empty strings, got {name!r}")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"member names must be unique, repeated: {dupes}")
    return names


def _skip_rest(run: Any, members: Sequence[str], reason: str) -> None:
    for name in members:
        if name not in run.called:
            run.skipped[name] = reason


# -- all ----------------------------------------------------------------------------------------


@dataclass
class AllRun:
    """The run of :class:`AllPolicy`: everyone in one stage."""

    members: list[str]
    called: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    needs_observation: ClassVar[bool] = False

    def first_stage(self) -> list[str]:
        """Every member."""
        self.called = list(self.members)
        return list(self.members)

    def next_stage(self, observation: Observation) -> list[str] | Stop:
        """Always :class:`Stop` (``all_called``)."""
        return Stop("all_called")


@dataclass(frozen=True)
class AllPolicy:
    """Call every member (today's behaviour; the default)."""

    name: ClassVar[str] = "all"

    def start(
        self, prompt: str, members: Sequence[str], *, embedding: np.ndarray | None = None
    ) -> AllRun:
        """A run that calls every member at once."""
        return AllRun(_check_members(members))


# -- cascade ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StopCalibration:
    """A logistic model of "the current best beats every member not called yet".

    ``P(stop is safe) = sigmoid(weights . features)`` over :data:`STOP_FEATURES`:

    - ``margin_vs_remaining``: the best called candidate's score minus the highest *expected*
      score of a member not called yet (its prior plus ``scale * mean_score``);
    - ``margin_vs_runner_up``: the best score minus the second best (0 with one call);
    - ``log_called``: ``log`` of the number of members called;
    - ``bias``: 1.

    Fitted by :func:`blender_core.evaluation.policies.fit_stop_calibration` on labelled records.

    Attributes:
        weights: One weight per feature of :data:`STOP_FEATURES`.
        mean_score: The ranker's mean score of a candidate (the expected score before a call).
        fitted_on: What the fit saw (data, rows, log-loss).
    """

    weights: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)
    mean_score: float = 0.0
    fitted_on: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.weights) != len(STOP_FEATURES):
            raise ValueError(
                f"StopCalibration needs {len(STOP_FEATURES)} weights ({', '.join(STOP_FEATURES)})"
                f", got {len(self.weights)}"
            )
        if not all(math.isfinite(w) for w in self.weights) or not math.isfinite(self.mean_score):
            raise ValueError("StopCalibration weights and mean_score must be finite numbers")

    def probability(self, features: Sequence[float]) -> float:
        """The calibrated probability that stopping loses nothing."""
        z = float(np.dot(self.weights, features))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "features": list(STOP_FEATURES),
            "weights": list(self.weights),
            "mean_score": self.mean_score,
            "fitted_on": dict(self.fitted_on),
        }

    @classmethod
    def load(cls, path: str | Path, *, stage_sizes: Sequence[int] = (1,)) -> StopCalibration:
        """Read a calibration file: one :meth:`to_dict`, or the ``calibration.json`` of
        ``blender eval-policies`` (one calibration per stage sizes, keyed ``"1"``, ``"1+2"``):
        the one fitted for ``stage_sizes``."""
        from blender_core.io import read_json_file

        data = read_json_file(path, "stop calibration file")
        if isinstance(data, Mapping) and "weights" not in data:
            key = "+".join(str(int(s)) for s in stage_sizes)
            if key not in data:
                raise ValueError(
                    f"{path} has no stop calibration for stage sizes {key!r}; it has "
                    f"{sorted(data)}: pass the stage_sizes it was fitted for"
                )
            data = data[key]
        if not isinstance(data, Mapping):
            raise ValueError(f"{path} is not a stop calibration (a JSON object)")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StopCalibration:
        """Read :meth:`to_dict`'s form."""
        if list(data.get("features", [])) != list(STOP_FEATURES):
            raise ValueError(
                f"stop calibration features {data.get('features')!r} are not {list(STOP_FEATURES)}"
            )
        return cls(
            weights=tuple(float(w) for w in data["weights"]),
            mean_score=float(data.get("mean_score", 0.0)),
            fitted_on=dict(data.get("fitted_on") or {}),
        )


OrderSource = Sequence[str] | Callable[[str, Sequence[str]], Sequence[str]]


@dataclass
class CascadeRun:
    """One request's cascade: the planned order and the decisions so far."""

    policy: CascadePolicy
    prompt: str
    order: list[str]
    called: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    confidences: list[float] = field(default_factory=list)
    stages: list[list[str]] = field(default_factory=list)

    needs_observation: ClassVar[bool] = True

    def _stage_size(self) -> int:
        sizes = self.policy.stage_sizes
        return sizes[min(len(self.stages), len(sizes) - 1)]

    def _planned_next(self) -> list[str]:
        remaining = [m for m in self.order if m not in self.called]
        size = self._stage_size()
        limit = self.policy.max_members
        if limit is not None:
            size = min(size, limit - len(self.called))
        return remaining[: max(0, size)]

    def _take(self, stage: list[str]) -> list[str]:
        self.called.extend(stage)
        self.stages.append(list(stage))
        return list(stage)

    def first_stage(self) -> list[str]:
        """The first stage's members (the first ``stage_sizes[0]`` of the order)."""
        if self.stages:
            raise RuntimeError("first_stage() was already called for this run")
        return self._take(self._planned_next())

    def hedge_stage(self) -> list[str]:
        """The stage to start early when the current one runs past ``hedge_after`` seconds.

        The engine calls it at most once per stage; the members it returns count as called.
        """
        stage = self._planned_next()
        return self._take(stage) if stage else []

    def features(self, observation: Observation) -> list[float]:
        """The stop features of :data:`STOP_FEATURES` after ``observation``."""
        scores = sorted((float(s) for s in observation.scores), reverse=True)
        best = scores[0]
        runner_up = best - scores[1] if len(scores) > 1 else 0.0
        remaining = [m for m in self.order if m not in self.called]
        if remaining:
            expected = max(self.policy.expected_score(m) for m in remaining)
            margin = best - expected
        else:
            margin = 0.0
        return [margin, runner_up, math.log(len(scores)), 1.0]

    def confidence(self, observation: Observation) -> float:
        """The calibrated probability that the current best beats every member not called."""
        return self.policy.calibration.probability(self.features(observation))

    def _spent(self, observation: Observation) -> float:
        if observation.spent is not None:
            return float(observation.spent)
        return sum(self.policy.expected_cost(m, self.prompt) for m in self.called)

    def next_stage(self, observation: Observation) -> list[str] | Stop:
        """The next stage's members, or :class:`Stop` with the reason."""
        if not self.stages:
            raise RuntimeError("call first_stage() before next_stage()")
        policy = self.policy
        planned = self._planned_next()
        remaining = [m for m in self.order if m not in self.called]
        if not remaining:
            return Stop("all_called")
        if policy.max_members is not None and len(self.called) >= policy.max_members:
            _skip_rest(self, self.order, "max_members")
            return Stop("max_members")
        if observation.members:
            # over the members that answered: one that failed is neither a candidate nor
            # expected any more (with no answer at all, go on without a confidence)
            confidence = self.confidence(observation)
            self.confidences.append(confidence)
            if confidence >= policy.threshold:
                _skip_rest(self, self.order, "confident")
                return Stop("confident", confidence)
        if policy.budget is not None:
            extra = sum(policy.expected_cost(m, self.prompt) for m in planned)
            if self._spent(observation) + extra > policy.budget:
                _skip_rest(self, self.order, "budget")
                return Stop("budget")
        if policy.latency_budget is not None and observation.elapsed_s is not None:
            slowest = max((policy.latency(m) for m in planned), default=0.0)
            if observation.elapsed_s + slowest > policy.latency_budget:
                _skip_rest(self, self.order, "latency_budget")
                return Stop("latency_budget")
        return self._take(planned)


@dataclass(frozen=True)
class CascadePolicy:
    """Call members in stages; stop once the calibrated confidence reaches ``threshold``.

    Args:
        threshold: Stop when the confidence that the current best beats every member not called
            yet is at least this (in [0, 1]; 1 disables the confident stop). Lower: fewer calls.
        calibration: The fitted :class:`StopCalibration` (default: uncalibrated, the sigmoid of
            the margin over the best expected score).
        order: The order members are called in: a list of names, a callable
            ``(prompt, members) -> names`` (e.g. a router's per-prompt order), or ``None`` to
            derive it from ``priors`` (strongest first) and ``costs`` (cheaper first on ties);
            members missing from a given list are called last, in the ensemble's order.
        priors: Member priors: the expected score of a member not called yet, and the default
            order.
        costs: Member name -> :class:`MemberCost` (or a mapping / per-call number).
        stage_sizes: Members per stage; the last size repeats (``(1,)``: one at a time;
            ``(2, 1)``: two, then one by one).
        max_members: Call at most this many members.
        budget: Stop before a stage whose expected cost would take the spend above this.
        latency_budget: Stop before a stage whose expected latency would end past this many
            seconds since the blend started (needs the engine's ``elapsed_s``).
        hedge_after: The hedged variant: start the next planned stage when the current one has
            run this many seconds (``None``: never).
    """

    threshold: float = 0.9
    calibration: StopCalibration = field(default_factory=StopCalibration)
    order: OrderSource | None = None
    priors: MemberPriors | None = None
    costs: Mapping[str, MemberCost] = field(default_factory=dict)
    stage_sizes: tuple[int, ...] = (1,)
    max_members: int | None = None
    budget: float | None = None
    latency_budget: float | None = None
    hedge_after: float | None = None

    name: ClassVar[str] = "cascade"

    def __post_init__(self) -> None:
        if not (isinstance(self.threshold, int | float) and 0.0 <= self.threshold <= 1.0):
            raise ValueError(f"cascade threshold must be in [0, 1], got {self.threshold!r}")
        sizes = tuple(self.stage_sizes)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"stage_sizes must be integers >= 1, got {self.stage_sizes!r}")
        object.__setattr__(self, "stage_sizes", sizes)
        if self.max_members is not None and (
            isinstance(self.max_members, bool) or self.max_members < 1
        ):
            raise ValueError(f"max_members must be >= 1, got {self.max_members!r}")
        for label in ("budget", "latency_budget", "hedge_after"):
            value = getattr(self, label)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
        object.__setattr__(
            self, "costs", {str(k): MemberCost.from_value(v) for k, v in dict(self.costs).items()}
        )
        if isinstance(self.order, str):
            raise TypeError("order must be a list of member names or a callable, not a string")

    def expected_score(self, member: str) -> float:
        """The score a member's answer is expected to get before it is called."""
        prior = self.priors.prior(member) if self.priors is not None else 0.0
        scale = self.priors.scale if self.priors is not None and self.priors.scale else 1.0
        return prior + scale * self.calibration.mean_score

    def expected_cost(self, member: str, prompt: str) -> float:
        """The expected price of calling ``member`` on ``prompt`` (0 when no cost is declared)."""
        cost = self.costs.get(member)
        return cost.expected_cost(estimate_tokens(prompt)) if cost is not None else 0.0

    def latency(self, member: str) -> float:
        """The declared expected latency of ``member`` (0 when not declared)."""
        cost = self.costs.get(member)
        return cost.latency_s if cost is not None else 0.0

    def plan_order(self, prompt: str, members: Sequence[str]) -> list[str]:
        """The order ``members`` are called in for ``prompt``."""
        names = _check_members(members)
        if self.order is None:
            position = {m: k for k, m in enumerate(names)}
            return sorted(
                names,
                key=lambda m: (
                    -(self.priors.prior(m) if self.priors is not None else 0.0),
                    self.expected_cost(m, prompt),
                    position[m],
                ),
            )
        given = list(self.order(prompt, names) if callable(self.order) else self.order)
        unknown = [m for m in given if m not in names]
        if unknown and not callable(self.order):
            raise ValueError(f"cascade order names members not in the ensemble: {unknown}")
        head = [m for m in given if m in names]
        return head + [m for m in names if m not in head]

    def check_members(self, members: Sequence[str]) -> None:
        """Raise ``ValueError`` when a given ``order`` names members not in ``members``."""
        if self.order is not None and not callable(self.order):
            self.plan_order("", members)

    def start(
        self, prompt: str, members: Sequence[str], *, embedding: np.ndarray | None = None
    ) -> CascadeRun:
        """A run over ``members`` for ``prompt``."""
        return CascadeRun(self, prompt, self.plan_order(prompt, members))


# -- router -------------------------------------------------------------------------------------


@dataclass
class RouterRun:
    """The run of :class:`RouterPolicy`: the routed members in one stage."""

    chosen: list[str]
    probabilities: dict[str, float]
    members: list[str]
    called: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    needs_observation: ClassVar[bool] = False

    def first_stage(self) -> list[str]:
        """The routed members."""
        self.called = list(self.chosen)
        _skip_rest(self, self.members, "not_routed")
        return list(self.chosen)

    def next_stage(self, observation: Observation) -> list[str] | Stop:
        """Always :class:`Stop` (``routed``)."""
        return Stop("routed")


@dataclass(frozen=True)
class RouterPolicy:
    """Call the members a learned router gives the best chance for this prompt.

    Args:
        model: The fitted :class:`~blender_core.routing.RouterModel`.
        top_m: Call this many members (with ``mass=None``).
        mass: Instead of a fixed count, call the fewest members whose probabilities (renormalised
            over the ensemble's members the router knows) sum to at least this, in (0, 1].
        embed: ``texts -> (n, dim)`` prompt embeddings (default: the model's encoder, loaded on
            first use); not needed when the caller passes ``embedding=`` to :meth:`start`.
    """

    model: RouterModel
    top_m: int = 1
    mass: float | None = None
    embed: Callable[[Sequence[str]], np.ndarray] | None = None

    name: ClassVar[str] = "router"

    def __post_init__(self) -> None:
        if isinstance(self.top_m, bool) or not isinstance(self.top_m, int) or self.top_m < 1:
            raise ValueError(f"top_m must be an integer >= 1, got {self.top_m!r}")
        if self.mass is not None and not 0.0 < self.mass <= 1.0:
            raise ValueError(f"mass must be in (0, 1], got {self.mass!r}")

    def probabilities(
        self, prompt: str, members: Sequence[str], *, embedding: np.ndarray | None = None
    ) -> dict[str, float]:
        """Each known member's chance to give the best answer, renormalised over ``members``."""
        names = _check_members(members)
        if embedding is None:
            embed = self.embed or self.model.default_embedder()
            embedding = np.asarray(embed([prompt]))[0]
        probs = self.model.probabilities(np.asarray(embedding)[None, :], members=names)[0]
        return dict(zip(names, probs.tolist(), strict=True))

    def start(
        self, prompt: str, members: Sequence[str], *, embedding: np.ndarray | None = None
    ) -> RouterRun:
        """A run that calls the routed members."""
        names = _check_members(members)
        probs = self.probabilities(prompt, names, embedding=embedding)
        ranked = sorted(names, key=lambda m: (-probs[m], names.index(m)))
        if self.mass is None:
            chosen = ranked[: self.top_m]
        else:
            chosen, total = [], 0.0
            for name in ranked:
                chosen.append(name)
                total += probs[name]
                if total >= self.mass - 1e-12:
                    break
        return RouterRun(chosen, probs, names)

    def check_members(self, members: Sequence[str]) -> None:
        """Raise ``ValueError`` when the router knows none of ``members``."""
        if not set(self.model.members) & set(members):
            raise ValueError(
                f"the router knows none of the ensemble's members {list(members)} (it was "
                f"fitted on {list(self.model.members)})"
            )

    def order(self, prompt: str, members: Sequence[str]) -> list[str]:
        """The members by routed probability, best first (a per-prompt cascade order)."""
        probs = self.probabilities(prompt, members)
        names = list(members)
        return sorted(names, key=lambda m: (-probs[m], names.index(m)))


PolicyName = Literal["all", "cascade", "router"]


def make_policy(spec: Policy | PolicyName | str | None, **options: Any) -> Policy:
    """A policy from a name (``"all"``, ``"cascade"``, ``"router"``) and its options, or as is.

    Raises:
        ValueError: An unknown name, or options for ``"all"``.
    """
    if spec is None or spec == "all":
        if options:
            raise ValueError(f"policy 'all' takes no options, got {sorted(options)}")
        return AllPolicy()
    if isinstance(spec, str):
        if spec == "cascade":
            return CascadePolicy(**options)
        if spec == "router":
            if "model" not in options:
                raise ValueError("policy 'router' needs model= (a RouterModel or its file)")
            model = options.pop("model")
            if not hasattr(model, "probabilities"):
                from blender_core.routing import RouterModel

                model = RouterModel.load(model)
            return RouterPolicy(model, **options)
        raise ValueError(f"unknown policy {spec!r}: use 'all', 'cascade' or 'router'")
    if not callable(getattr(spec, "start", None)):
        raise TypeError(f"a policy must have start(prompt, members), got {type(spec).__name__}")
    return spec


def build_policy(
    spec: Policy | str | None,
    options: Mapping[str, Any] | None = None,
    *,
    priors: Any = None,
    costs: Mapping[str, Any] | None = None,
) -> Policy:
    """The policy of an ensemble from its ``policy``, ``policy_options``, ``priors`` and ``costs``
    options (every front's names).

    A cascade made from its name gets the ensemble's member priors (its order and expected
    scores) and costs unless ``options`` gives its own; ``options["calibration"]`` may be a
    :class:`StopCalibration`, its dict, or a file (:meth:`StopCalibration.load`, for the
    cascade's ``stage_sizes``). A router's ``model`` may be a ``blender train-router`` file.
    A policy object is used as is (``options`` must then be empty).

    Raises:
        ValueError: An unknown policy or option, or options with a policy object.
        TypeError: An option of the wrong type.
    """
    opts = dict(options or {})
    if spec is not None and not isinstance(spec, str):
        if opts:
            raise ValueError(
                f"policy_options {sorted(opts)} were given with a policy object: set them on it"
            )
        return make_policy(spec)
    if spec == "cascade":
        calibration = opts.get("calibration")
        if calibration is not None and not isinstance(calibration, StopCalibration):
            if isinstance(calibration, Mapping):
                opts["calibration"] = StopCalibration.from_dict(calibration)
            else:
                opts["calibration"] = StopCalibration.load(
                    calibration, stage_sizes=tuple(opts.get("stage_sizes", (1,)))
                )
        if "stage_sizes" in opts and not isinstance(opts["stage_sizes"], tuple):
            opts["stage_sizes"] = tuple(opts["stage_sizes"])
        if "priors" not in opts and priors is not None:
            from blender_core.priors import MemberPriors

            opts["priors"] = (
                priors if isinstance(priors, MemberPriors) else MemberPriors.load(priors)
            )
        if "costs" not in opts and costs:
            opts["costs"] = costs
    try:
        return make_policy(spec, **opts)
    except TypeError as exc:
        raise TypeError(f"policy {spec!r}: {exc}") from exc


def check_policy_members(
    policy: Policy, members: Sequence[str], costs: Mapping[str, Any] | None = None
) -> None:
    """Refuse a price table or a policy that cannot serve these members, before any call.

    ``costs`` naming members not in the ensemble, and what the policy itself checks
    (``policy.check_members``: a cascade's given ``order``, a router that knows none of them).

    Raises:
        ValueError: Naming the members at fault.
    """
    names = _check_members(members)
    unknown = sorted(set(costs or {}) - set(names))
    if unknown:
        raise ValueError(f"costs name members not in the ensemble: {unknown} (members: {names})")
    check = getattr(policy, "check_members", None)
    if callable(check):
        check(names)
