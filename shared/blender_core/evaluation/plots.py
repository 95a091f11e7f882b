"""PNG plots of evaluation results (matplotlib's Agg canvas; no global backend change).

- :func:`plot_rank_distribution`: for each method, the share of records whose pick has oracle
  rank 1, 2, ... (by the stored judge score; ties share the better rank).
- :func:`plot_model_share`: for each method, how often each base model's answer is the pick.
- :func:`plot_metrics`: each metric by method, as horizontal bars.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from blender_core._optional import require
from blender_core.io import atomic_open

if TYPE_CHECKING:
    from blender_core.evaluation.runner import EvalResults

__all__ = [
    "metrics_figure",
    "plot_all",
    "plot_metrics",
    "plot_model_share",
    "plot_rank_distribution",
]


def _figure(width: float, height: float) -> Any:
    require("matplotlib", "eval")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _heatmap(
    figure: Any,
    data: list[list[float]],
    rows: list[str],
    cols: list[str],
    title: str,
    xlabel: str,
) -> None:
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(data, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(cols)), labels=cols, rotation=35, ha="right", fontsize=8)
    axes.set_yticks(range(len(rows)), labels=rows, fontsize=8)
    for r, row in enumerate(data):
        for c, value in enumerate(row):
            if value >= 0.005:
                axes.text(
                    c,
                    r,
                    f"{100 * value:.0f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value > 0.55 else "black",
                )
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel, fontsize=9)
    colorbar = figure.colorbar(image, ax=axes, fraction=0.03, pad=0.02)
    colorbar.set_label("share of records", fontsize=8)
    figure.tight_layout()


def plot_rank_distribution(results: EvalResults, path: str | Path) -> Path | None:
    """Heatmap of the pick's oracle rank per method (``None`` when no judge metric)."""
    methods = [m for m in results.methods if m.rank_distribution is not None]
    if not methods:
        return None
    width = max(len(m.rank_distribution or []) for m in methods)
    data = [
        list(m.rank_distribution or []) + [0.0] * (width - len(m.rank_distribution or []))
        for m in methods
    ]
    figure = _figure(2.5 + 0.55 * width, 1.2 + 0.38 * len(methods))
    _heatmap(
        figure,
        data,
        [m.name for m in methods],
        [str(r) for r in range(1, width + 1)],
        f"Oracle rank of the chosen candidate (by {results.judge_metric}; % of records)",
        "rank among the candidates (1 = best; ties share the better rank)",
    )
    return _save(figure, path)


def plot_model_share(results: EvalResults, path: str | Path) -> Path | None:
    """Heatmap of how often each base model's answer is each method's pick."""
    # Rows that always pick one model (the single-model rows) carry no information here.
    methods = [
        m
        for m in results.methods
        if m.model_share is not None and max(m.model_share.values()) < 1.0 - 1e-6
    ]
    if not methods:
        return None
    models = results.models
    data = [[(m.model_share or {}).get(model, 0.0) for model in models] for m in methods]
    figure = _figure(3.0 + 0.6 * len(models), 1.6 + 0.38 * len(methods))
    _heatmap(
        figure,
        data,
        [m.name for m in methods],
        models,
        "Win share per base model (% of records where its answer is the pick)",
        "base model",
    )
    return _save(figure, path)


def plot_metrics(results: EvalResults, path: str | Path) -> Path | None:
    """One horizontal bar chart per metric column (judge score, BERTScore, ...), by method."""
    figure = metrics_figure(results)
    return None if figure is None else _save(figure, path)


def metrics_figure(results: EvalResults) -> Any:
    """The figure of :func:`plot_metrics` (``None`` when no metric has a value).

    Every value label lies inside its panel: after layout, a label that would cross the panel's
    edge moves inside the end of its bar (white on the bar), or, where the bar is too short to
    hold it, the axis grows to make room.
    """
    table = results.table()
    columns = [
        c
        for c in table.columns
        if not c.key.startswith(("beats:", "gpt_beats:", "top"))
        and any(v[table.columns.index(c)] is not None for _, v in table.rows)
    ]
    if not columns:
        return None
    names = [name for name, _ in table.rows]
    figure = _figure(4.2 * len(columns), 1.2 + 0.32 * len(names))
    panels: list[tuple[Any, list[tuple[Any, float, bool]]]] = []
    for k, column in enumerate(columns):
        axes = figure.add_subplot(1, len(columns), k + 1)
        index = table.columns.index(column)
        values = [v[index] for _, v in table.rows]
        shown = [0.0 if v is None else v * column.scale for v in values]
        colors = ["#bbbbbb" if v is None else "#3b75af" for v in values]
        positions = list(range(len(names)))
        axes.barh(positions, shown, color=colors)
        axes.set_yticks(positions, labels=names if k == 0 else [""] * len(names), fontsize=8)
        axes.invert_yaxis()
        finite = [s for s, v in zip(shown, values, strict=True) if v is not None]
        low, high = min(finite), max(finite)
        span = (high - low) or abs(high) or 1.0
        if column.key == "judge" or 0 <= low < 0.5 * high:
            axes.set_xlim(0, high + 0.15 * span)  # win rates and shares: bars from 0
        else:
            # Close values (BERTScore 62-72, BARTScore -3.1 to -2.8): zoom in to show the
            # differences; the axis then does not start at 0, as its tick labels show.
            axes.set_xlim(low - 0.25 * span, high + 0.3 * span)
        labels = []
        for pos, value, s in zip(positions, values, shown, strict=True):
            label = "N/A" if value is None else f"{s:.{column.digits}f}"
            text = axes.text(
                s if value is not None else 0,
                pos,
                f" {label} ",
                va="center",
                ha="left" if s >= 0 else "right",
                fontsize=7,
            )
            labels.append((text, s, value is not None))
        panels.append((axes, labels))
        better = "higher" if column.higher_is_better else "lower"
        axes.set_title(f"{column.title}\n({better} is better)", fontsize=9)
        axes.tick_params(axis="x", labelsize=7)
        axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    for axes, labels in panels:
        _fit_labels(figure, axes, labels)
    return figure


def _fit_labels(figure: Any, axes: Any, labels: list[tuple[Any, float, bool]]) -> None:
    """Keep each bar's value label inside the panel (see :func:`metrics_figure`)."""
    renderer = figure.canvas.get_renderer()
    to_data = axes.transData.inverted()
    left, right = axes.get_xlim()
    grow_left, grow_right = left, right
    for text, end, has_bar in labels:
        box = text.get_window_extent(renderer).transformed(to_data)
        width = box.x1 - box.x0
        outward_right = text.get_ha() == "left"
        if box.x0 >= left and box.x1 <= right:
            continue
        base = max(left, 0.0) if outward_right else min(right, 0.0)
        if has_bar and abs(end - base) >= width:  # room inside the bar, by its end
            text.set_ha("right" if outward_right else "left")
            text.set_color("white")
        elif outward_right:
            grow_right = max(grow_right, box.x1 + 0.02 * (right - left))
        else:
            grow_left = min(grow_left, box.x0 - 0.02 * (right - left))
    if (grow_left, grow_right) != (left, right):
        axes.set_xlim(grow_left, grow_right)


def plot_all(results: EvalResults, out_dir: str | Path) -> list[Path]:
    """Write ``rank_distribution.png``, ``model_share.png`` and ``metrics.png`` to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        plot_rank_distribution(results, out / "rank_distribution.png"),
        plot_model_share(results, out / "model_share.png"),
        plot_metrics(results, out / "metrics.png"),
    ]
    return [p for p in written if p is not None]


def _save(figure: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:  # a kill never leaves half a PNG
        figure.savefig(handle, format=path.suffix.lstrip(".") or "png")
    return path
