"""The report of a PairRanker training run: settings, timings, dev numbers beside baselines.

Example:
    .. code-block:: python

        from blender_core.training.ranker_report import build_ranker_report

        report = build_ranker_report(config, start_kind="backbone", ...)
        report["dev_top1_vs_baselines"][0]["ranker_top1"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from blender_core.data import MixRecord
from blender_core.training.metrics import mean, selection_baselines
from blender_core.training.runs import config_settings

if TYPE_CHECKING:
    from blender_core.training.ranker_config import RankerTrainingConfig

__all__ = ["build_ranker_report"]


def build_ranker_report(
    config: RankerTrainingConfig,
    *,
    start_kind: str,
    train_metrics: dict[str, float],
    final: dict[str, float],
    train_records: Sequence[MixRecord],
    dev_records: Sequence[MixRecord],
    train_pairs: int,
    steps: int,
    train_seconds: float,
    eval_seconds: float,
    resumed_from: str | None,
    log_history: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The report dict of a ranker run: settings, timings, dev numbers beside baselines."""
    settings = config_settings(config)
    settings["metrics"] = ", ".join(config.metrics)
    report: dict[str, Any] = {
        "title": "PairRanker training report",
        "output_dir": str(config.output_dir),
        "started_from": f"{start_kind}: {config.backbone}",
        "resumed_from": resumed_from or "",
        "training": {
            "train_records": len(train_records),
            "pairs_per_epoch": train_pairs,
            "optimizer_steps": steps,
            "train_loss": train_metrics.get("train_loss", float("nan")),
            "train_seconds": round(train_seconds, 1),
            "final_eval_seconds": round(eval_seconds, 1),
        },
        "settings": settings,
    }
    losses = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    if losses:
        first, last = losses[: max(1, len(losses) // 5)], losses[-max(1, len(losses) // 5) :]
        report["training"]["loss_first_fifth"] = mean([v for _, v in first])
        report["training"]["loss_last_fifth"] = mean([v for _, v in last])
    evals = [h for h in log_history if "eval_pairwise_accuracy" in h]
    if evals:
        report["evaluations"] = [
            {
                "step": h.get("step"),
                "eval_loss": h.get("eval_loss", float("nan")),
                "pairwise_accuracy": h.get("eval_pairwise_accuracy", float("nan")),
                **{f"top1_{m}": h.get(f"eval_top1_{m}", float("nan")) for m in config.metrics[:1]},
            }
            for h in evals
        ]
    if dev_records:
        report["dev"] = {k.removeprefix("eval_"): v for k, v in final.items()}
        rows = []
        for metric in config.metrics:
            base = selection_baselines(dev_records, metric, train_records=train_records)
            rows.append(
                {
                    "metric": metric,
                    "ranker_top1": final.get(f"eval_top1_{metric}", float("nan")),
                    "best_single": base["best_single"],
                    "best_single_model": base["best_single_model"],
                    "longest": base["longest"],
                    "random": base["random"],
                    "oracle": base["oracle"],
                }
            )
        report["dev_top1_vs_baselines"] = rows
    return report
