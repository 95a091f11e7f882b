"""What an evaluation produced: one :class:`MethodResult` per method inside :class:`EvalResults`.

Data only (filled by :func:`blender_core.evaluation.runner.evaluate`); :meth:`EvalResults.table`
lays them out with :class:`~blender_core.evaluation.table.EvalTable`, which reads them through
its own protocol, so neither the runner nor this module is imported by the table.

Example:
    .. code-block:: python

        results = evaluate(records, methods)
        results.method("consensus").values["judge"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from blender_core.data import MixRecord
from blender_core.evaluation.gpt_rank import GPTRankResult
from blender_core.evaluation.metrics import ReferenceMetric
from blender_core.evaluation.stats import PairedDifference
from blender_core.evaluation.table import EvalTable
from blender_core.rankers.baselines import Pick

__all__ = ["EvalResults", "MethodResult"]


@dataclass
class MethodResult:
    """One method's outputs over the records.

    Attributes:
        name: Row name.
        kind: ``"selection"`` (one candidate per record), ``"expected"`` (a distribution, e.g. the
            random baseline's exact expectation) or ``"generated"`` (new text).
        picks: Per record, weights over candidate indices (``None`` for generated methods).
        texts: Per record, the generated text (``None`` for selections).
        values: Column -> value (``None`` = not applicable), filled by :func:`evaluate`.
        rank_distribution: Share of records whose pick has oracle rank r (index r - 1).
        model_share: Model -> share of records where that model's answer is the pick.
        judge_values: Per record, the judge score of the pick (its expectation for a
            distribution); ``None`` for generated methods or without a judge score.
    """

    name: str
    kind: Literal["selection", "expected", "generated"]
    picks: list[Pick] | None = None
    texts: list[str] | None = None
    values: dict[str, float | None] = field(default_factory=dict)
    rank_distribution: list[float] | None = None
    model_share: dict[str, float] | None = None
    judge_values: list[float] | None = None


@dataclass
class EvalResults:
    """Everything :func:`evaluate` computed; :meth:`table` lays it out.

    Attributes:
        records: The records, with computed metric scores added to each candidate's ``scores``.
        methods: One result per method, in row order.
        judge_metric: The stored judge score used for the judge column, "beats" and top-k.
        metrics: The reference-based metrics computed (name -> metric).
        beats_models: The models of the "beats" columns.
        top_ks: The k of the "top-k share" columns.
        models: The candidate models, in record order.
        gpt_rank: The GPT-Rank result, when a judge was given.
        notes: Remarks for the report (e.g. unparseable judge answers).
        baseline: The method the others are compared with (the best single model by default).
        comparisons: Method -> paired bootstrap of its judge score minus the baseline's (see
            :mod:`blender_core.evaluation.stats`); empty without a judge score or baseline.
    """

    records: list[MixRecord]
    methods: list[MethodResult]
    judge_metric: str | None
    metrics: dict[str, ReferenceMetric]
    beats_models: list[str]
    top_ks: list[int]
    models: list[str]
    gpt_rank: GPTRankResult | None = None
    notes: list[str] = field(default_factory=list)
    baseline: str | None = None
    comparisons: dict[str, PairedDifference] = field(default_factory=dict)

    def method(self, name: str) -> MethodResult:
        for result in self.methods:
            if result.name == name:
                return result
        raise KeyError(f"no method {name!r} (have {[m.name for m in self.methods]})")

    def table(self) -> EvalTable:
        """The results as an :class:`~blender_core.evaluation.table.EvalTable`."""
        return EvalTable.from_results(self)
