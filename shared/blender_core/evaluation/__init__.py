"""Evaluation of rankers and fusers on MixInstruct data: metrics, the paper's table, plots.

Example:
    .. code-block:: python

        from blender_core.data import read_mixinstruct
        from blender_core.evaluation import BERTScoreMetric, evaluate, plot_all
        from blender_core.evaluation.specs import build_methods

        records = read_mixinstruct("dev.jsonl")
        methods = build_methods("oracle,random,longest,single,consensus", records,
                                judge_metric="gpt4_pref")
        results = evaluate(records, methods, metrics=[BERTScoreMetric()])
        print(results.table().to_markdown())
        plot_all(results, "out/")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blender_core.lazy import lazy_exports

_EXPORTS = {
    "ScoreCache": "blender_core.evaluation.cache",
    "ReferenceMetric": "blender_core.evaluation.metrics",
    "BERTScoreMetric": "blender_core.evaluation.bertscore",
    "BARTScoreMetric": "blender_core.evaluation.bartscore",
    "BLEURTMetric": "blender_core.evaluation.bleurt",
    "BLEURTUnavailableError": "blender_core.evaluation.bleurt",
    "GPTRank": "blender_core.evaluation.gpt_rank",
    "GPTRankResult": "blender_core.evaluation.gpt_rank",
    "ChatModelJudge": "blender_core.evaluation.gpt_rank",
    "BlendMethod": "blender_core.evaluation.runner",
    "EvalResults": "blender_core.evaluation.results",
    "MethodResult": "blender_core.evaluation.results",
    "evaluate": "blender_core.evaluation.runner",
    "EvalTable": "blender_core.evaluation.table",
    "PairedDifference": "blender_core.evaluation.stats",
    "paired_bootstrap": "blender_core.evaluation.stats",
    "plot_all": "blender_core.evaluation.plots",
    "build_methods": "blender_core.evaluation.specs",
    "build_metrics": "blender_core.evaluation.specs",
}

__all__ = [
    "BARTScoreMetric",
    "BERTScoreMetric",
    "BLEURTMetric",
    "BLEURTUnavailableError",
    "BlendMethod",
    "ChatModelJudge",
    "EvalResults",
    "EvalTable",
    "GPTRank",
    "GPTRankResult",
    "MethodResult",
    "PairedDifference",
    "ReferenceMetric",
    "ScoreCache",
    "build_methods",
    "build_metrics",
    "evaluate",
    "paired_bootstrap",
    "plot_all",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from blender_core.evaluation.bartscore import BARTScoreMetric
    from blender_core.evaluation.bertscore import BERTScoreMetric
    from blender_core.evaluation.bleurt import BLEURTMetric, BLEURTUnavailableError
    from blender_core.evaluation.cache import ScoreCache
    from blender_core.evaluation.gpt_rank import ChatModelJudge, GPTRank, GPTRankResult
    from blender_core.evaluation.metrics import ReferenceMetric
    from blender_core.evaluation.plots import plot_all
    from blender_core.evaluation.results import EvalResults, MethodResult
    from blender_core.evaluation.runner import BlendMethod, evaluate
    from blender_core.evaluation.specs import build_methods, build_metrics
    from blender_core.evaluation.stats import PairedDifference, paired_bootstrap
    from blender_core.evaluation.table import EvalTable
