"""The paper-style results table: rows = methods, columns = metrics, "beats X %", top-k share."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from blender_core.evaluation.stats import PairedDifference
from blender_core.io import atomic_write_text

__all__ = ["Column", "EvalTable", "ResultsView"]


class _MethodRow(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def values(self) -> Mapping[str, float | None]: ...


class ResultsView(Protocol):
    """What :meth:`EvalTable.from_results` reads of an evaluation's results.

    :class:`~blender_core.evaluation.results.EvalResults` is one; the protocol keeps this module
    free of the runner and the results (no import cycle).
    """

    @property
    def judge_metric(self) -> str | None: ...

    @property
    def metrics(self) -> Mapping[str, Any]: ...

    @property
    def gpt_rank(self) -> object | None: ...

    @property
    def beats_models(self) -> Sequence[str]: ...

    @property
    def top_ks(self) -> Sequence[int]: ...

    @property
    def methods(self) -> Sequence[_MethodRow]: ...

    @property
    def baseline(self) -> str | None: ...

    @property
    def comparisons(self) -> Mapping[str, PairedDifference]: ...


@dataclass(frozen=True)
class Column:
    """One table column.

    Attributes:
        key: The key in :attr:`MethodResult.values`.
        title: The header.
        scale: Printed value = stored value x scale.
        digits: Decimals printed.
        higher_is_better: For marking the best value (GPT-Rank: lower is better).
    """

    key: str
    title: str
    scale: float = 1.0
    digits: int = 2
    higher_is_better: bool = True


@dataclass(frozen=True)
class EvalTable:
    """Rows of values (``None`` = N/A) under :class:`Column` s; Markdown and CSV output.

    With a ``baseline`` (the best single model in ``blender eval``), every other row also
    carries the paired bootstrap of its judge score minus the baseline's (``comparisons``):
    printed as the difference in points with its confidence interval, and whether the row beats
    the baseline (the interval is above 0).

    Example:
        .. code-block:: python

            table = evaluate(records, methods, metrics=[BERTScoreMetric()]).table()
            print(table.to_markdown())
            table.to_csv("results.csv")
    """

    columns: tuple[Column, ...]
    rows: tuple[tuple[str, tuple[float | None, ...]], ...]
    baseline: str | None = None
    comparisons: Mapping[str, PairedDifference] = field(default_factory=dict)

    @classmethod
    def from_results(cls, results: ResultsView) -> EvalTable:
        """Lay out an evaluation's results: one row per method, columns by what was computed."""
        columns: list[Column] = []
        if results.judge_metric:
            columns.append(Column("judge", f"{results.judge_metric} (%)", 100.0, 1))
        for name, metric in results.metrics.items():
            title = {"bertscore": "BERTScore", "bartscore": "BARTScore", "bleurt": "BLEURT"}.get(
                name, name
            )
            scale = getattr(metric, "display_scale", 1.0)
            columns.append(Column(name, title, scale, 2 if scale != 1.0 else 3))
        if results.gpt_rank is not None:
            columns.append(Column("gpt_rank", "GPT-Rank", 1.0, 2, higher_is_better=False))
        for model in results.beats_models:
            columns.append(Column(f"beats:{model}", f"Beats {model} (%)", 100.0, 1))
        if results.gpt_rank is not None:
            for model in results.beats_models:
                columns.append(Column(f"gpt_beats:{model}", f"GPT beats {model} (%)", 100.0, 1))
        if results.judge_metric:
            for k in results.top_ks:
                columns.append(Column(f"top{k}", f"Top-{k} share (%)", 100.0, 1))
        rows = tuple((m.name, tuple(m.values.get(c.key) for c in columns)) for m in results.methods)
        return cls(
            tuple(columns),
            rows,
            baseline=results.baseline if results.comparisons else None,
            comparisons=dict(results.comparisons),
        )

    def _comparison_titles(self) -> list[str]:
        if self.baseline is None:
            return []
        first = next(iter(self.comparisons.values()), None)
        level = f"{first.confidence:.0%}" if first is not None else "95%"
        return [f"Δ vs {self.baseline} (pts, {level} CI)", "beats it?"]

    def _comparison_cells(self, row: str) -> list[str]:
        if self.baseline is None:
            return []
        if row == self.baseline:
            return ["(baseline)", ""]
        diff = self.comparisons.get(row)
        if diff is None:
            return ["N/A", ""]
        verdict = {"better": "yes", "worse": "no (worse)", "n.s.": "no (n.s.)"}[diff.verdict]
        return [diff.format(), verdict]

    def value(self, row: str, column: str) -> float | None:
        """The stored (unscaled) value of a row and a column key or title."""
        index = next((i for i, c in enumerate(self.columns) if column in (c.key, c.title)), None)
        if index is None:
            raise KeyError(f"no column {column!r} (have {[c.key for c in self.columns]})")
        for name, values in self.rows:
            if name == row:
                return values[index]
        raise KeyError(f"no row {row!r} (have {[r for r, _ in self.rows]})")

    def formatted(self, row: str, column: str) -> str:
        """The printed form of one cell."""
        col = next(c for c in self.columns if column in (c.key, c.title))
        return _fmt(self.value(row, column), col)

    def _best(self) -> list[float | None]:
        best: list[float | None] = []
        for i, col in enumerate(self.columns):
            values = [
                v[i] for name, v in self.rows if v[i] is not None and not name.startswith("oracle")
            ]
            if not values:
                best.append(None)
            else:
                best.append(max(values) if col.higher_is_better else min(values))  # type: ignore[type-var]
        return best

    def to_markdown(self, *, bold_best: bool = True) -> str:
        """A GitHub Markdown table; the best non-oracle value of each column in bold."""
        extra = self._comparison_titles()
        header = ["method", *(c.title for c in self.columns), *extra]
        lines = [
            "| " + " | ".join(header) + " |",
            "|---|" + "|".join("---:" for _ in [*self.columns, *extra]) + "|",
        ]
        best = self._best() if bold_best else [None] * len(self.columns)
        for name, values in self.rows:
            cells = []
            for value, col, top in zip(values, self.columns, best, strict=True):
                text = _fmt(value, col)
                if (
                    value is not None
                    and top is not None
                    and value == top
                    and not name.startswith("oracle")
                ):
                    text = f"**{text}**"
                cells.append(text)
            cells.extend(self._comparison_cells(name))
            lines.append("| " + " | ".join([name, *cells]) + " |")
        return "\n".join(lines) + "\n"

    def to_csv(self, path: str | Path | None = None) -> str:
        """CSV text (unscaled-then-scaled values as printed, empty for N/A); written if ``path``."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        extra = []
        if self.baseline is not None:
            extra = [
                f"delta vs {self.baseline} (pts)",
                "ci low (pts)",
                "ci high (pts)",
                "verdict",
            ]
        writer.writerow(["method", *(c.title for c in self.columns), *extra])
        for name, values in self.rows:
            diff = self.comparisons.get(name)
            cis = (
                [f"{v * 100:.2f}" for v in (diff.mean, diff.low, diff.high)] + [diff.verdict]
                if diff is not None
                else ["", "", "", "baseline" if name == self.baseline else ""]
            )
            writer.writerow(
                [
                    name,
                    *(
                        "" if v is None else _fmt(v, c)
                        for v, c in zip(values, self.columns, strict=True)
                    ),
                    *(cis if extra else []),
                ]
            )
        text = buffer.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: columns, the unscaled values per row, and the baseline comparisons."""
        return {
            "columns": [c.__dict__ for c in self.columns],
            "rows": [{"method": name, "values": list(values)} for name, values in self.rows],
            "baseline": self.baseline,
            "comparisons": {name: d.to_dict() for name, d in self.comparisons.items()},
        }

    def comparison(self, row: str) -> PairedDifference:
        """The paired bootstrap of ``row``'s judge score minus the baseline's."""
        if row not in self.comparisons:
            raise KeyError(f"no comparison for {row!r} (baseline: {self.baseline!r})")
        return self.comparisons[row]

    @property
    def row_names(self) -> Sequence[str]:
        return [name for name, _ in self.rows]


def _fmt(value: float | None, column: Column) -> str:
    if value is None:
        return "N/A"
    return f"{value * column.scale:.{column.digits}f}"
