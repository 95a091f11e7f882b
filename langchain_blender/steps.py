"""LCEL steps that rank and fuse answers a chain already produced.

Each step takes ``{"instruction": ..., "candidates": [...] or {name: text or message}}`` (plus an
optional ``"input"``), so a chain that fans out with ``RunnableParallel`` is routed through the
ranker and the fuser with one more step:

.. code-block:: python

    from langchain_blender import RankAndFuse, parallel_candidates

    chain = parallel_candidates(
        {"a": prompt | llm_a | StrOutputParser(), "b": prompt | llm_b | StrOutputParser()},
        instruction="question",
    ) | RankAndFuse(ranker="llm-blender/PairRM", fuser="llm-blender/gen_fuser_3b", top_k=2)
    chain.invoke({"question": "What is MBR decoding?"})["text"]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any, ClassVar, cast

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.messages import BaseMessage
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableParallel,
    RunnableSerializable,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator

from blender_core.blend import BlendResult
from blender_core.bridge import run_sync
from blender_core.engine import Engine as CoreEngine
from blender_core.ranking import Ranking
from langchain_blender._adapters import message_text
from langchain_blender._callbacks import ChildCallbacks
from langchain_blender._settings import BlendSettings

__all__ = [
    "BlendOutput",
    "CandidatesInput",
    "FuseCandidates",
    "RankAndFuse",
    "RankCandidates",
    "RankingOutput",
    "parallel_candidates",
]


class CandidatesInput(BaseModel):
    """Input of the rank/fuse steps."""

    instruction: str = Field(description="The instruction (question) the candidates answer.")
    candidates: list[str | BaseMessage] | dict[str, str | BaseMessage] = Field(
        description="The answers: a list, or a mapping name -> answer (text or message)."
    )
    input: str = Field(default="", description="Optional input (context) for the instruction.")

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @field_validator("candidates")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if not value:
            raise ValueError("candidates is empty: nothing to rank or fuse")
        return value

    def named_texts(self) -> dict[str, str]:
        """Candidates as name -> text (a list's are named ``candidate_0``, ``candidate_1``, ...)."""
        items = (
            self.candidates.items()
            if isinstance(self.candidates, dict)
            else ((f"candidate_{i}", c) for i, c in enumerate(self.candidates))
        )
        return {name: message_text(c) for name, c in items}


class RankingOutput(BaseModel):
    """Output of :class:`RankCandidates` (returned as a dict of these fields)."""

    names: list[str] = Field(description="Candidate names, in input order.")
    texts: list[str] = Field(description="Candidate texts, in input order.")
    order: list[int] = Field(description="Candidate indices, best first.")
    ranks: list[int] = Field(description="1-based rank of each candidate, in input order.")
    scores: list[float] = Field(description="Score of each candidate (higher is better).")
    ranked: list[str] = Field(description="Candidate texts, best first.")
    best: str = Field(description="The best candidate's text.")
    best_name: str = Field(description="The best candidate's name.")


class BlendOutput(BaseModel):
    """Output of :class:`RankAndFuse` (returned as a dict of these fields)."""

    text: str = Field(description="The fused answer (select fuser: the best candidate).")
    candidates: dict[str, str] = Field(description="Candidate text by name.")
    ranking: dict[str, Any] = Field(
        description="order/ranks/scores over the distinct texts, with texts and their models."
    )
    top_k: list[str] = Field(description="The texts given to the fuser, best first.")
    best_models: list[str] = Field(description="Names of the candidates ranked best.")
    failures: list[dict[str, str]] = Field(description="Empty candidates (model, kind, message).")


def _coerce(value: Any) -> CandidatesInput:
    if isinstance(value, CandidatesInput):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(
            "expected {'instruction': ..., 'candidates': [...] or {name: answer}}, "
            f"got {type(value).__name__}"
        )
    return CandidatesInput.model_validate(dict(value))


def _ranking_output(names: list[str], texts: list[str], ranking: Ranking) -> dict[str, Any]:
    return RankingOutput(
        names=names,
        texts=texts,
        order=list(ranking.order),
        ranks=list(ranking.ranks),
        scores=list(ranking.scores),
        ranked=[texts[i] for i in ranking.order],
        best=texts[ranking.best],
        best_name=names[ranking.best],
    ).model_dump()


def _blend_output(result: BlendResult) -> dict[str, Any]:
    ranking = result.ranking.to_dict()
    ranking["texts"] = list(result.texts)
    ranking["models"] = [list(m) for m in result.models_by_text]
    return BlendOutput(
        text=result.text,
        candidates=dict(result.candidates),
        ranking=ranking,
        top_k=list(result.top_k),
        best_models=list(result.best_models),
        failures=[f.to_dict() for f in result.failures],
    ).model_dump()


class _Step(BlendSettings, RunnableSerializable[dict[str, Any], Any]):
    """What the steps share: the input schema, the output type, and the one implementation
    (:meth:`_astep`, async; ``invoke`` runs it through the core's one bridge) under a chain run.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _output: ClassVar[type[Any]]
    """The output type (a pydantic model is also the output schema; the output is its dict)."""

    @property
    def InputType(self) -> type[Any]:
        return CandidatesInput

    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return CandidatesInput

    @property
    def OutputType(self) -> type[Any]:
        return self._output

    def get_output_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        if issubclass(self._output, BaseModel):
            return self._output
        return cast(type[BaseModel], super().get_output_schema(config))

    async def _astep(self, data: CandidatesInput, core: CoreEngine) -> Any:
        """The step on the core engine (run with the ranker's and fuser's runs nested)."""
        raise NotImplementedError

    async def _arun(self, value: Any, callbacks: ChildCallbacks) -> Any:
        data = _coerce(value)
        return await self.engine.run_in(callbacks, lambda core: self._astep(data, core))

    def _run_sync(self, value: Any, run_manager: CallbackManagerForChainRun | None = None) -> Any:
        callbacks = run_manager.get_child() if run_manager else None
        return run_sync(lambda: self._arun(value, callbacks))

    async def _run_async(
        self, value: Any, run_manager: AsyncCallbackManagerForChainRun | None = None
    ) -> Any:
        return await self._arun(value, run_manager.get_child() if run_manager else None)

    def invoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Any:
        return self._call_with_config(self._run_sync, input, config, run_type="chain")

    async def ainvoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Any:
        return await self._acall_with_config(self._run_async, input, config, run_type="chain")


class RankCandidates(_Step):
    """Ranks candidate answers to an instruction (no fusion).

    Output (a dict, see :class:`RankingOutput`): ``names``, ``texts``, ``order``, ``ranks``,
    ``scores``, ``ranked`` (texts best first), ``best`` and ``best_name``.

    Example:
        .. code-block:: python

            step = RankCandidates(ranker="llm-blender/PairRM")
            step.invoke({"instruction": "2+2?", "candidates": {"a": "4", "b": "5"}})["best_name"]
    """

    _output = RankingOutput

    async def _astep(self, data: CandidatesInput, core: CoreEngine) -> dict[str, Any]:
        named = data.named_texts()
        names, texts = list(named), list(named.values())
        ranking = await core.arank(data.instruction, texts, input=data.input)
        return _ranking_output(names, texts, ranking)


class FuseCandidates(_Step):
    """Fuses candidates given best first (for example, by :class:`RankCandidates`) into one
    answer with the fuser; only the first ``top_k`` are used. Returns the fused text.

    Example:
        .. code-block:: python

            fuse = FuseCandidates(fuser=chat_model, top_k=2)
            rank_then_fuse = RankCandidates() | (
                lambda r: {"instruction": question, "candidates": r["ranked"]}
            ) | fuse
    """

    _output = str

    async def _astep(self, data: CandidatesInput, core: CoreEngine) -> str:
        texts = list(data.named_texts().values())[: self.top_k]
        return await core.afuse(data.instruction, texts, input=data.input)


class RankAndFuse(_Step):
    """Ranks the candidates, keeps the best ``top_k`` and fuses them (LLM-Blender on answers a
    chain already has). Identical answers are merged and empty ones reported as failures.

    Output (a dict, see :class:`BlendOutput`): ``text``, ``candidates``, ``ranking``, ``top_k``,
    ``best_models``, ``failures``. Pipe into ``itemgetter("text")`` for the answer alone.

    Example:
        .. code-block:: python

            chain = parallel_candidates({"a": chain_a, "b": chain_b}) | RankAndFuse(top_k=2)
            chain.invoke({"question": "..."})["text"]
    """

    _output = BlendOutput

    async def _astep(self, data: CandidatesInput, core: CoreEngine) -> dict[str, Any]:
        result = await core.ablend(data.instruction, data.named_texts(), input=data.input)
        return _blend_output(result)


def parallel_candidates(
    branches: Mapping[str, Runnable[Any, Any] | Callable[..., Any]],
    *,
    instruction: str | Runnable[Any, Any] | Callable[..., Any] = "question",
    input: str | Runnable[Any, Any] | Callable[..., Any] | None = None,
) -> RunnableParallel[Any]:
    """Fan out to ``branches`` and carry the instruction alongside, in the steps' input shape.

    Args:
        branches: Name -> runnable (each gets the chain's input and returns a text or message).
        instruction: The chain input's key holding the instruction, or a runnable/callable that
            computes it from the chain's input.
        input: Optionally, the key (or runnable/callable) of an input/context for the instruction.

    Returns:
        ``RunnableParallel(instruction=..., candidates=RunnableParallel(branches)[, input=...])``.
    """
    if not branches:
        raise ValueError("parallel_candidates needs at least one branch")
    steps: dict[str, Any] = {
        "instruction": itemgetter(instruction) if isinstance(instruction, str) else instruction,
        "candidates": RunnableParallel(dict(branches)),
    }
    if input is not None:
        steps["input"] = itemgetter(input) if isinstance(input, str) else input
    return RunnableParallel(steps)
