"""The result of a training run and its short report (``report.json`` and ``report.md``).

Example:
    .. code-block:: python

        from blender_core.training.report import write_report

        write_report("runs/ranker", {"kind": "ranker", "dev": {"pairwise_accuracy": 0.71}})
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blender_core.io import atomic_write_text, dumps_json

__all__ = ["PERCENT_KEYS", "TrainResult", "format_report", "write_report"]


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        output_dir: The run directory: final model (loadable by ``PairRanker.from_pretrained`` /
            ``GenFuser.from_pretrained``), ``checkpoint-*`` folders, ``report.json``/``report.md``.
        metrics: Final dev metrics (``eval_*`` keys, as the Trainer logs them); empty without dev.
        train_metrics: The Trainer's train summary (``train_loss``, ``train_runtime``, ...).
        report: The full report written to ``report.json``.
    """

    output_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    train_metrics: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def model_dir(self) -> Path:
        """Where the final model was saved (the run directory itself)."""
        return self.output_dir


PERCENT_KEYS = frozenset(
    {"ranker_top1", "best_single", "longest", "random", "oracle", "pairwise_accuracy"}
)
"""Score fields that ``report.md`` shows as percentages (as ``blender eval`` does), with the
``top1_*`` ones; ``report.json`` keeps the fractions."""


def _is_percent(key: str) -> bool:
    return key in PERCENT_KEYS or key.startswith("top1_")


def _title(key: str) -> str:
    return f"{key} (%)" if _is_percent(key) else key


def _fmt(value: Any, key: str = "") -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if _is_percent(key):
            return f"{100 * value:.1f}"
        return f"{value:.4g}"
    return str(value)


def format_report(report: dict[str, Any]) -> str:
    """A short Markdown rendering of a report dict (sections of scalars and small tables).

    Scores (:data:`PERCENT_KEYS`, ``top1_*``) are shown in percent with one decimal, the unit of
    ``blender eval``'s table, and their names say ``(%)``.
    """
    lines = [f"# {report.get('title', 'Training report')}", ""]
    for key, value in report.items():
        if key == "title":
            continue
        if isinstance(value, dict):
            lines += [f"## {key}", "", "| key | value |", "|---|---|"]
            lines += [
                f"| {_title(k)} | {_fmt(v, k)} |"
                for k, v in value.items()
                if not isinstance(v, dict)
            ]
            lines.append("")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            cols = list(value[0])
            lines += [f"## {key}", "", "| " + " | ".join(map(_title, cols)) + " |"]
            lines.append("|" + "---|" * len(cols))
            lines += [
                "| " + " | ".join(_fmt(row.get(c, ""), c) for c in cols) + " |" for row in value
            ]
            lines.append("")
        else:
            lines.append(f"- **{_title(key)}**: {_fmt(value, key)}")
    return "\n".join(lines).rstrip() + "\n"


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_report(output_dir: str | Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``output_dir``; returns both paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "report.json", out / "report.md"
    atomic_write_text(json_path, dumps_json(_json_safe(report), indent=2) + "\n")
    atomic_write_text(md_path, format_report(report))
    return json_path, md_path
