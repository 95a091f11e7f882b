"""Fields shared by the LangChain ensembles (``ChatBlender``, ``Blender``)."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from langchain_core.language_models import BaseLanguageModel
from langchain_core.runnables import Runnable
from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator

from blender_core.lazy import Lazy
from blender_core.loading import DEFAULT_RANKER
from blender_core.ranking import Ranker
from langchain_blender._engine import Engine

__all__ = [
    "DEFAULT_RANKER",
    "BlendSettings",
    "EnsembleSettings",
    "describe_spec",
    "member_identity",
]

"""The ranker used when none is given: the PairRM checkpoint (hub id), loaded on first call."""


def describe_spec(spec: Any) -> Any:
    """A short, stable description of a ranker/fuser spec for identifying params and caching."""
    if spec is None or isinstance(spec, str):
        return spec
    name = getattr(spec, "model_name", None) or getattr(spec, "name", None)
    label = type(spec).__name__
    return f"{label}({name})" if isinstance(name, str) and name else label


def member_identity(member: Runnable[Any, Any]) -> Any:
    """A member's identifying params (its ``_llm_type`` and params), or its repr if not a model."""
    if isinstance(member, BaseLanguageModel):
        params = member._identifying_params
        return {"_type": getattr(member, "_llm_type", type(member).__name__), **params}
    return repr(member)


class BlendSettings(BaseModel):
    """Ranking and fusion settings of an ensemble."""

    ranker: Any = DEFAULT_RANKER
    """A ``Ranker`` object (``PairRanker``, ``ConsensusRanker``, ...), or a spec: a PairRanker hub
    id or path (default ``"llm-blender/PairRM"``), ``"consensus"`` (MiniLM, offline), ``"random"``.
    A spec is loaded on the first call."""
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
    """Retries of a member that raises, before it counts as failed."""

    _engine: Lazy[Engine] = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._engine = Lazy(self._new_engine)

    @field_validator("ranker")
    @classmethod
    def _check_ranker(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, Ranker):
            return value
        raise TypeError(
            "ranker must be a Ranker (with rank/arank), a PairRanker hub id or path, "
            f"'consensus', 'random' or None, got {type(value).__name__}"
        )

    def _member_names(self) -> list[str]:
        raise NotImplementedError

    def _new_engine(self) -> Engine:
        return Engine(
            self._member_names(),
            ranker=self.ranker,
            fuser=self.fuser,
            top_k=self.top_k,
            timeout=self.timeout,
            min_candidates=self.min_candidates,
            strategy=self.strategy,
        )

    def _get_engine(self) -> Engine:
        """The ranker/fuser pipeline (built once, on first use; it loads lazily itself)."""
        return self._engine.get()

    def _blend_params(self) -> dict[str, Any]:
        return {
            "ranker": describe_spec(self.ranker),
            "fuser": describe_spec(self.fuser),
            "top_k": self.top_k,
            "strategy": self.strategy,
            "min_candidates": self.min_candidates,
        }


class EnsembleSettings(BlendSettings):
    """Settings, validation and identity shared by the member ensembles (``ChatBlender``,
    ``Blender``); a subclass names its members field in ``_members_field``."""

    _members_field: ClassVar[str]
    """Name of the subclass's members field (``"models"``, ``"llms"``)."""

    def _members(self) -> dict[str, Runnable[Any, Any]]:
        members: dict[str, Runnable[Any, Any]] = getattr(self, self._members_field)
        return members

    @model_validator(mode="after")
    def _check_min_candidates(self) -> Self:
        members = self._members()
        if self.min_candidates > len(members):
            raise ValueError(
                f"min_candidates={self.min_candidates} can never be met with "
                f"{len(members)} model(s)"
            )
        return self

    @property
    def model_name(self) -> str:
        """The ensemble's name: ``ensemble_name`` or ``"blend(<member>, ...)"``."""
        ensemble_name: str | None = getattr(self, "ensemble_name", None)
        return ensemble_name or f"blend({', '.join(self._members())})"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            self._members_field: {
                name: member_identity(member) for name, member in self._members().items()
            },
            **self._blend_params(),
        }

    def _member_names(self) -> list[str]:
        return list(self._members())
