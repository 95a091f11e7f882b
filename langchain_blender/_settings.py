"""The base the LangChain ensembles share (``ChatBlender``, ``Blender``) and the LCEL steps' fields.

:class:`BlendSettings` holds the options every front takes, with the core's names and defaults
(:data:`blender_core.engine.DEFAULT_OPTIONS`); :class:`EnsembleSettings` adds the members and the
one implementation of "call the members, then blend" that both ensembles translate from.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from langchain_core.load.serializable import Serializable
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.runnables import Runnable
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from blender_core.bridge import iterate_sync, run_sync
from blender_core.engine import engine_options
from blender_core.lazy import Lazy
from blender_core.loading import DEFAULT_RANKER
from blender_core.policies import check_policy_members
from blender_core.ranking import Ranker
from langchain_blender._adapters import runnable_name
from langchain_blender._callbacks import ChildCallbacks
from langchain_blender._engine import Blended, Engine
from langchain_blender._members import (
    MemberOutcome,
    Prepare,
    is_language_model,
    member_calls,
    member_usage,
    name_members,
)

__all__ = [
    "DEFAULT_RANKER",
    "BlendSettings",
    "EnsembleCall",
    "EnsembleSettings",
    "StopCutter",
    "apply_stop",
    "describe_spec",
    "member_identity",
]

T = TypeVar("T")


def describe_spec(spec: Any) -> Any:
    """A short, stable description of a ranker/fuser spec for identifying params and caching."""
    if spec is None or isinstance(spec, str):
        return spec
    name = getattr(spec, "model_name", None) or getattr(spec, "name", None)
    label = type(spec).__name__
    return f"{label}({name})" if isinstance(name, str) and name else label


def member_identity(member: Runnable[Any, Any]) -> Any:
    """A member's identity for caching: its public serialised form (secrets masked) where it
    has one, else its name and class."""
    if isinstance(member, Serializable) and member.is_lc_serializable():
        return member.to_json()
    return {"name": runnable_name(member), "class": type(member).__name__}


Stop = list[str] | None


def apply_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut ``text`` at the first occurrence of any stop sequence (as a model's ``stop`` does)."""
    if not stop:
        return text
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


class StopCutter:
    """The fused text's deltas as pieces to stream, cut at the first stop sequence.

    A tail as long as the longest stop sequence is held back until it cannot start one, and the
    pieces run one delta behind, so that the last piece (:meth:`finish`) goes out with the
    metadata: a fuser that does not stream gives one piece.
    """

    def __init__(self, stop: Sequence[str] | None) -> None:
        self.stop = [s for s in stop or [] if s]
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.text = ""
        self.sent = 0
        self.pending: str | None = None

    def feed(self, delta: str) -> Iterator[str]:
        """Take a delta; yield the pieces now ready to stream."""
        self.text += delta
        cut = apply_stop(self.text, self.stop)
        ready = len(cut) if len(cut) < len(self.text) else max(self.sent, len(cut) - self.hold)
        if ready > self.sent:
            if self.pending is not None:
                yield self.pending
            self.pending = cut[self.sent : ready]
            self.sent = ready

    def finish(self, text: str) -> str:
        """The last piece, given the whole answer with the stop applied."""
        return (self.pending or "") + text[self.sent :]


@dataclass(frozen=True)
class EnsembleCall:
    """One call of an ensemble, as a LangChain hook received it."""

    member_input: Any
    """What every member gets (messages, a prompt)."""
    stop: Stop
    kwargs: dict[str, Any]
    """The hook's per-call kwargs (tools, tool_choice, params for language-model members)."""
    callbacks: ChildCallbacks
    """Where the members', ranker's and fuser's runs nest."""
    sync: bool = False
    """From a sync hook: each member's ``invoke`` runs in a worker thread (else ``ainvoke``)."""


class BlendSettings(BaseModel):
    """Ranking and fusion settings of an ensemble or a step (the same on every front)."""

    ranker: Any = DEFAULT_RANKER
    """A ``Ranker`` object (``PairRanker``, ``ConsensusRanker``, ...), or a spec: a PairRanker hub
    id or path (default ``"llm-blender/PairRM"``), ``"consensus"`` (MiniLM, offline), ``"random"``,
    ``{"type": ..., options}``. A spec is loaded on the first call that needs it."""
    fuser: Any = None
    """``None``/``"select"`` (no fusion: the top-ranked answer), a ``GenFuser`` or other ``Fuser``,
    a GenFuser hub id or path, or a LangChain chat model / LLM used as an LLM fuser."""
    top_k: int = Field(default=3, ge=1)
    """How many of the best-ranked answers the fuser gets."""
    strategy: str | None = None
    """PairRanker aggregation (``"max_logits"``, ``"max_wins"``, ``"bubble"``); ``None``: the
    ranker's default."""
    timeout: float | None = Field(default=60.0, gt=0)
    """Seconds each member may take; a member past it is reported as a ``"timeout"`` failure."""
    min_candidates: int = Field(default=1, ge=1)
    """Fewest answers (distinct, for text) needed to go on; below it the call raises
    ``BlendError``."""
    max_retries: int = Field(default=0, ge=0)
    """Retries of a member that raises, before it counts as failed (within ``timeout``)."""
    device: str | None = None
    """Where ranker and fuser models load (``None``: by hardware)."""
    priors: Any = None
    """Member priors (a ``MemberPriors`` or a file from ``blender calibrate``)."""
    policy: Any = "all"
    """Which members a call asks (:mod:`blender_core.policies`): ``"all"`` (every member, the
    default), ``"cascade"`` (in stages, stopping once confident), ``"router"`` (the members a
    learned router picks), or a policy object."""
    policy_options: dict[str, Any] | None = None
    """The named policy's options (a cascade's ``threshold``, ``calibration``, ``stage_sizes``,
    ``max_members``, ``budget``, ...; a router's ``model``, ``top_m``, ``mass``)."""
    costs: dict[str, Any] | None = None
    """Member name -> price and expected latency (a ``MemberCost``, a dict of its fields, or a
    price per call): each call's cost in the blend metadata's ``calls``, and a cascade's budget."""

    _engine: Lazy[Engine] = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._engine = Lazy(self._new_engine)

    @field_validator("ranker")
    @classmethod
    def _check_ranker(cls, value: Any) -> Any:
        if value is None or isinstance(value, str | dict):
            return value
        if isinstance(value, Ranker):
            return value
        raise TypeError(
            "ranker must be a Ranker (with rank/arank), a PairRanker hub id or path, "
            f"'consensus', 'random' or None, got {type(value).__name__}"
        )

    def _new_engine(self) -> Engine:
        return Engine(**engine_options(self))

    @property
    def engine(self) -> Engine:
        """The blend engine (built on first use; it loads the ranker and fuser lazily itself)."""
        return self._engine.get()

    def _get_engine(self) -> Engine:
        return self.engine

    def _blend_params(self) -> dict[str, Any]:
        return {
            "ranker": describe_spec(self.ranker),
            "fuser": describe_spec(self.fuser),
            "top_k": self.top_k,
            "strategy": self.strategy,
            "min_candidates": self.min_candidates,
        }


class EnsembleSettings(BlendSettings):
    """What ``ChatBlender`` and ``Blender`` share: members, validation, identity, and the one
    "call the members the policy picks, then blend" implementation they translate from."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    models: dict[str, Runnable[Any, Any]]
    """The members: chat models, LLMs, ``init_chat_model`` strings (``"openai:gpt-4o-mini"``) or
    runnables returning a message or a string (a list, or a mapping name -> model; list names
    come from each model's ``model_name``/``model`` or runnable name)."""
    stop: list[str] | None = None
    """Default stop sequences: passed to members and applied to the fused text."""
    ensemble_name: str | None = Field(default=None)
    """Name reported as ``model_name`` (default ``"blend(<member>, ...)"``)."""

    @model_validator(mode="before")
    @classmethod
    def _renamed_llms(cls, data: Any) -> Any:
        if isinstance(data, dict) and "llms" in data:
            warnings.warn(
                f"{cls.__name__}(llms=...) is deprecated: use models=... (the same name on "
                "every front); llms= goes in the next release",
                DeprecationWarning,
                stacklevel=4,
            )
            data = dict(data)
            if "models" in data:
                raise ValueError("give models= or llms= (deprecated), not both")
            data["models"] = data.pop("llms")
        return data

    @field_validator("models", mode="before")
    @classmethod
    def _name_models(cls, value: Any) -> dict[str, Runnable[Any, Any]]:
        return name_members(value)

    @model_validator(mode="after")
    def _check_min_candidates(self) -> Self:
        if self.min_candidates > len(self.models):
            raise ValueError(
                f"min_candidates={self.min_candidates} can never be met with "
                f"{len(self.models)} model(s)"
            )
        return self

    @model_validator(mode="after")
    def _check_policy(self) -> Self:
        """Build the policy now (nothing loads: the ranker, the fuser and a router's encoder
        wait for the first call), so that a bad ``policy``, ``policy_options`` or ``costs``
        fails here, naming the problem."""
        core = self.engine.core
        check_policy_members(core.policy, list(self.models), core.costs)
        return self

    @property
    def llms(self) -> dict[str, Runnable[Any, Any]]:
        """Deprecated alias of :attr:`models`."""
        warnings.warn("llms is deprecated: use models", DeprecationWarning, stacklevel=2)
        return self.models

    @property
    def model_name(self) -> str:
        """The ensemble's name: ``ensemble_name`` or ``"blend(<member>, ...)"``."""
        return self.ensemble_name or f"blend({', '.join(self.models)})"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "models": {name: member_identity(m) for name, m in self.models.items()},
            **self._blend_params(),
        }

    # -- one call: members, then the engine ---------------------------------------------------

    def _prepare(self, stop: list[str] | None, kwargs: dict[str, Any]) -> Prepare:
        """How each member is called: tools bound (``bind_tools``), and ``stop`` and per-call
        params (``temperature``/``max_tokens`` when set on the ensemble) for language models
        (bare or wrapped: ``.bind()``, ``.with_retry()``, ``.with_fallbacks()``)."""
        kwargs = dict(kwargs)
        kwargs.pop("ls_structured_output_format", None)
        tools = kwargs.pop("tools", None)
        tool_choice = kwargs.pop("tool_choice", None)
        for name in ("temperature", "max_tokens"):
            if getattr(self, name, None) is not None:
                kwargs.setdefault(name, getattr(self, name))
        stop = stop if stop is not None else self.stop

        def prepare(
            name: str, member: Runnable[Any, Any]
        ) -> tuple[Runnable[Any, Any], dict[str, Any]]:
            runnable = member
            if tools:
                bind = getattr(member, "bind_tools", None)
                if bind is None:
                    raise TypeError(
                        f"{type(member).__name__} has no bind_tools: it cannot use tools"
                    )
                runnable = (
                    bind(tools) if tool_choice is None else bind(tools, tool_choice=tool_choice)
                )
            if not is_language_model(member):
                return runnable, {}
            call = dict(kwargs)
            if stop:
                call["stop"] = stop
            return runnable, call

        return prepare

    def _stop_for(self, stop: list[str] | None) -> list[str] | None:
        """The call's stop sequences, else the ensemble's."""
        return stop if stop is not None else self.stop

    def _prompt(self, member_input: Any) -> tuple[str, str]:
        """The ``(instruction, input)`` the engine ranks on (the core's chat policy)."""
        raise NotImplementedError

    def _finish(self, blended: Blended, outcomes: Sequence[MemberOutcome], stop: Stop) -> Any:
        """The framework's answer (a message, a generation) for a blend."""
        raise NotImplementedError

    def _delta_chunk(self, text: str) -> Any:
        """A stream chunk of the fused answer's text."""
        raise NotImplementedError

    def _final_chunks(self, answer: Any, cutter: StopCutter) -> Iterable[Any]:
        """The stream's last chunk(s), from :meth:`_finish`'s answer: the rest of the text and
        the blend."""
        raise NotImplementedError

    @staticmethod
    def _usage(blended: Blended, outcomes: Sequence[MemberOutcome]) -> UsageMetadata | None:
        """The members' summed usage plus a LangChain-model fuser's."""
        usage = member_usage(outcomes)
        return add_usage(usage, blended.usage) if blended.usage else usage

    async def _arun(
        self, call: EnsembleCall, *, stream: bool = False
    ) -> tuple[Any, list[MemberOutcome]]:
        """The members the policy picks answer ``call.member_input`` (those of a stage
        concurrently: each its native ``ainvoke``, from a sync hook its ``invoke`` in a worker
        thread), then the engine blends: a :class:`Blended`, or with ``stream`` an async
        iterator of the fused answer's deltas then the :class:`Blended` answer; and the called
        members' outcomes. The metadata's ``calls`` reports the calls made and saved."""
        instruction, input = self._prompt(call.member_input)
        calls = member_calls(
            self.models,
            call.member_input,
            callbacks=call.callbacks,
            prepare=self._prepare(call.stop, call.kwargs),
            sync=call.sync,
        )
        outcomes, report = await self.engine.acall_members(
            instruction, calls, callbacks=call.callbacks, input=input, retries=self.max_retries
        )
        options: dict[str, Any] = {"callbacks": call.callbacks, "input": input, "calls": report}
        if stream:
            return self.engine.astream(instruction, outcomes, **options), outcomes
        return await self.engine.ablend(instruction, outcomes, **options), outcomes

    async def _achunks(self, call: EnsembleCall) -> AsyncIterator[Any]:
        """The stream of one call: the fused answer's deltas (cut at the stop sequences) as
        :meth:`_delta_chunk` s, then :meth:`_final_chunks`."""
        cutter = StopCutter(self._stop_for(call.stop))
        pieces, outcomes = await self._arun(call, stream=True)
        async for piece in pieces:
            if isinstance(piece, str):
                for text in cutter.feed(piece):
                    yield self._delta_chunk(text)
            else:
                for chunk in self._final_chunks(self._finish(piece, outcomes, call.stop), cutter):
                    yield chunk

    def _sync(self, make: Callable[[], Awaitable[T]]) -> T:
        """The sync hooks: ``make()`` through the core's one bridge (a worker thread for each
        member's sync ``invoke``)."""
        return run_sync(make, workers=max(8, len(self.models)))

    def _sync_iter(self, make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        """:meth:`_sync` for a stream."""
        return iterate_sync(make, workers=max(8, len(self.models)))
