"""Figures of a sweep: loss curves grouped by one key, a heatmap over two keys, learning curves.

Each function reads a sweep (an open Sweep, or a database it opens for the call), returns a
matplotlib Figure and writes it when given `out` (PNG, SVG or PDF by the suffix). Figures are drawn on the Agg canvas, never through pyplot, so
nothing here opens a window or keeps figures alive between calls.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, NullLocator

from ..errors import UserError
from .sweep import Sweep, opened
from .tables import (
    averaged_note,
    check_axis,
    check_value,
    combinations,
    fmt,
    is_number,
    levels,
    long_curves,
    outside_keys,
    outside_note,
    rows_at,
    stats,
)

BANDS = ("minmax", "std")
SUFFIXES = (".png", ".svg", ".pdf")
DPI = 150
MISSING = "#d0d0d0"  # heatmap cells without a finite value
LOG_SPAN = 100.0  # a positive axis spanning this factor or more is drawn on a log scale
LINE_STYLES = ("-", "--", ":", "-.")  # jobs that differ outside the grid: one style per combination


def plot_curves(db: str | Sweep, sweep: str | None = None, metric: str | None = None, by: str = "lr",
                out: str | Path | None = None, *, band: str = "minmax", logy: bool | None = None,
                logx: bool | None = None) -> Figure:
    """One line per value of `by`: the metric's mean over the other keys against step, with a band.
    metric None: the one recorded at the most steps (Sweep.busiest_metric). Jobs that differ in a key
    no grid of the sweep varies get lines of their own (tables.outside_keys), never one mean."""
    check_output(out)
    check_band(band)
    with opened(db, sweep) as source:
        metric = metric or source.busiest_metric()
        df = source.results(hashable=True)
        by = check_axis(df, by, source.name)
        split = [k for k in outside_keys(source, df) if k != by]
        points = long_curves(source, metric, df)
        logx = _span(points.step) >= LOG_SPAN if logx is None else logx
        notes = [averaged_note(df, [by, *split]), _band_note(band), *([outside_note(df, split)] if split else [])]
        if logx and (points.step <= 0).any():
            points = points[points.step > 0]
            notes.append("step 0 not shown on the log axis")
        logy = _log_values(points.value, metric) if logy is None else logy
        if points.step.nunique() == 1:
            notes.append(_one_step_note(source, metric))
    fig, ax = _figure(7.0, 4.6)
    table = stats(points, [by, *split, "step"], "value")
    styles = _styles(df, split)
    for level, colour in _colours(levels(df[by])).items():
        for combo, style in styles.items():
            part = rows_at(table, [by, *split], [level, *combo]).sort_values("step")
            if len(part):
                _line_with_band(ax, part.step, part, band, colour, _label(level, split, combo), linestyle=style)
    _scales(ax, logx, logy)
    if points.step.nunique() == 1:
        ax.set_xticks(sorted(set(points.step)))
    _labels(ax, "step", metric, f"{source.name}: {metric} by {by}", notes)
    _legend(ax, by)
    return _finish(fig, out)


def plot_heatmap(db: str | Sweep, sweep: str | None = None, value: str = "final_test_loss", x: str = "lr",
                 y: str = "width", out: str | Path | None = None, *, logc: bool | None = None) -> Figure:
    """The mean of a summary value over every other key, on a grid of two keys; empty cells grey."""
    check_output(out)
    with opened(db, sweep) as source:
        name, df = source.name, source.results(hashable=True)
        outside = outside_keys(source, df)
    x, y = check_axis(df, x, name), check_axis(df, y, name)
    if x == y:
        raise UserError(f"--x and --y are both {x!r}: pick two different keys")
    apart = [k for k in outside if k not in (x, y)]
    if apart:
        raise UserError(f"sweep {name!r} holds jobs that differ in {', '.join(apart)}, which no grid of it varies: a "
                        f"cell would average them; put {apart[0]} on an axis (--x {apart[0]} or --y {apart[0]}), "
                        "or keep one value from runner.results()")
    df = df.assign(**{value: check_value(df, value, name)})
    xs, ys = levels(df[x]), levels(df[y])
    masked, partial = _cells(df, value, x, y, xs, ys)
    finite = masked.compressed()
    logc = _log_values(pd.Series(finite), value, span_only=True) if logc is None else logc
    norm = LogNorm(finite.min(), finite.max()) if logc else Normalize(finite.min(), finite.max())
    fig, ax = _figure(max(5.0, 1.0 * len(xs) + 3.0), max(3.6, 0.55 * len(ys) + 2.2))
    cmap = colormaps["viridis"].with_extremes(bad=MISSING)
    image = ax.imshow(masked, cmap=cmap, norm=norm, origin="lower", aspect="auto", interpolation="nearest")
    _annotate(ax, masked, partial, image)
    _ticks(ax, xs, ys)
    bar = fig.colorbar(image, ax=ax)
    bar.set_label(value + (" (log scale)" if logc else ""))
    if logc:
        _plain_log_labels(bar.ax.yaxis)
    notes = [averaged_note(df, [x, y])]
    if partial.any():
        notes.append("* some jobs of the cell have no value")
    if masked.mask.any():
        notes.append("grey: no finished job")
    _labels(ax, x, y, f"{name}: {value}", notes)
    return _finish(fig, out)


def plot_scaling(db: str | Sweep, sweep: str | None = None, value: str = "final_test_loss", x: str = "n_train",
                 by: str | None = "width", out: str | Path | None = None, *, band: str = "minmax") -> Figure:
    """Learning curves: a summary value against a numeric key, one line per value of `by`, log-log."""
    check_output(out)
    check_band(band)
    with opened(db, sweep) as source:
        name, df = source.name, source.results(hashable=True)
        outside = outside_keys(source, df)
    x = check_axis(df, x, name, numeric=True)
    by = check_axis(df, by, name) if by is not None else None
    if by == x:
        raise UserError(f"--x and --by are both {x!r}: pick two different keys")
    df = df.assign(**{value: check_value(df, value, name)})
    shown = [x] if by is None else [by, x]
    split = [k for k in outside if k not in shown]
    table = stats(df, [*shown, *split], value)
    fig, ax = _figure(7.0, 4.6)
    colours = _colours(levels(df[by])) if by is not None else {None: "C0"}
    styles = _styles(df, split)
    for level, colour in colours.items():
        for combo, style in styles.items():
            keys, values = ([], []) if by is None else ([by], [level])
            part = rows_at(table, [*keys, *split], [*values, *combo]).sort_values(x)
            if len(part):
                label = _label("mean" if by is None else level, split, combo)
                _line_with_band(ax, part[x], part, band, colour, label, marker="o", linestyle=style)
    xs = np.array(levels(df[x]), dtype=float)
    logx, logy = bool((xs > 0).all()), bool((table["min"] > 0).all())
    _scales(ax, logx, logy)
    if len(xs) <= 10:
        ax.set_xticks(xs, [fmt(v) for v in levels(df[x])], minor=False)
        ax.xaxis.set_minor_locator(NullLocator())
    notes = [averaged_note(df, [*shown, *split]), _band_note(band), *([outside_note(df, split)] if split else [])]
    missing = int((~np.isfinite(df[value])).sum())
    if missing:
        notes.append(f"{missing} of {len(df)} jobs without a value left out")
    _labels(ax, x, value, f"{name}: {value} against {x}", notes)
    if by is not None:
        _legend(ax, by)
    return _finish(fig, out)


def _cells(df: pd.DataFrame, value: str, x: str, y: str, xs: Sequence[Any],
           ys: Sequence[Any]) -> tuple[np.ma.MaskedArray, np.ndarray]:
    """Heatmap cells: the mean value per (y, x), masked where no job has one; and which cells lack some jobs."""
    grid = np.full((len(ys), len(xs)), np.nan)
    partial = np.zeros_like(grid, dtype=bool)
    jobs = df.groupby([y, x], dropna=False, sort=False).size()
    for _, row in stats(df, [y, x], value).iterrows():
        i, j = _index(ys, row[y]), _index(xs, row[x])
        grid[i, j] = row["mean"]
        partial[i, j] = row["count"] < jobs[(row[y], row[x])]
    return np.ma.masked_invalid(grid), partial


def _one_step_note(sweep: Sweep, metric: str) -> str:
    """Say that a metric has no curve (e.g. train_loss of online training), and which metrics have one."""
    others = sweep.curve_metrics()
    more = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
    return f"{metric} was recorded at one step only" + (f"; curves exist for {more}" if others else "")


# --- checks --------------------------------------------------------------------------------------
def check_output(out: str | Path | None) -> None:
    """A figure path must end in .png/.svg/.pdf and sit in an existing folder."""
    if out is None:
        return
    path = Path(out)
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"cannot write {str(path)!r}: the file name must end in {', '.join(SUFFIXES)}")
    if not path.parent.is_dir():
        raise UserError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist; create it first")


def check_band(band: str) -> None:
    """Bands are min-max or mean +- one standard deviation."""
    if band not in BANDS:
        raise UserError(f"unknown band {band!r}: pick one of {', '.join(BANDS)}")


# --- drawing helpers -----------------------------------------------------------------------------
def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure on the Agg canvas with one axes."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _finish(fig: Figure, out: str | Path | None) -> Figure:
    """Write the figure when a path is given; return it either way."""
    if out is not None:
        fig.savefig(out, dpi=DPI)
    return fig


def _index(values: Sequence[Any], value: Any) -> int:
    """Position of a level, matching a missing value to None."""
    return len(values) - 1 if pd.isna(value) and values[-1] is None else list(values).index(value)


def _colours(values: Sequence[Any]) -> dict[Any, Any]:
    """An ordered colour map for numbers (dark = small), distinct colours for categories."""
    if all(is_number(v) for v in values):
        cmap = colormaps["viridis"]
        return {v: cmap(0.85 * i / max(len(values) - 1, 1)) for i, v in enumerate(values)}
    return {v: f"C{i % 10}" for i, v in enumerate(values)}


def _styles(df: pd.DataFrame, split: Sequence[str]) -> dict[tuple[Any, ...], str]:
    """A line style per combination of the keys drawn apart (one solid style when none)."""
    return {combo: LINE_STYLES[i % len(LINE_STYLES)] for i, combo in enumerate(combinations(df, split))}


def _label(level: Any, split: Sequence[str], combo: Sequence[Any]) -> str:
    """A legend entry: the level, then the values of the keys drawn apart ('0.1, steps 300')."""
    return ", ".join([fmt(level), *(f"{k} {fmt(v)}" for k, v in zip(split, combo))])


def _line_with_band(ax: Axes, xs: pd.Series, part: pd.DataFrame, band: str, colour: Any, label: str,
                    marker: str | None = None, linestyle: str = "-") -> None:
    """The mean as a line, and the spread (min-max or +- std) as a translucent band around it."""
    x, mean = xs.to_numpy(float), part["mean"].to_numpy(float)
    if band == "std":
        low, high = mean - part["std"].to_numpy(float), mean + part["std"].to_numpy(float)
    else:
        low, high = part["min"].to_numpy(float), part["max"].to_numpy(float)
    marker = marker or ("o" if len(x) <= 12 else None)  # a short series still shows as points
    ax.plot(x, mean, color=colour, label=label, marker=marker, markersize=4, linewidth=1.8, linestyle=linestyle)
    if len(x) == 1:  # a band needs two points: show the spread as an error bar
        ax.errorbar(x, mean, yerr=[mean - low, high - mean], color=colour, capsize=4, linewidth=1, fmt="none")
    elif (high > low).any():
        ax.fill_between(x, low, high, color=colour, alpha=0.2, linewidth=0)


def _band_note(band: str) -> str:
    """What the band shows, for the note under the title."""
    return "band: min to max" if band == "minmax" else "band: mean +- 1 std"


def _span(values: pd.Series) -> float:
    """Ratio of the largest to the smallest positive value (1 when fewer than two)."""
    positive = values[values > 0].astype(float)
    return float(positive.max() / positive.min()) if len(positive) > 1 else 1.0


def _log_values(values: pd.Series, name: str, span_only: bool = False) -> bool:
    """Log scale for positive losses, and for positive values spanning decades."""
    if not len(values) or (values <= 0).any():
        return False
    return (not span_only and "loss" in name) or _span(values) >= (10.0 if span_only else LOG_SPAN)


class _PlainLog(LogFormatter):
    """Log-axis tick labels as plain numbers (0.03, 200), not 3x10^-2."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:.6g}"


def _plain_log_labels(axis: Any) -> None:
    """Plain-number labels on a log axis; within two decades some minor ticks are labelled too."""
    axis.set_major_formatter(_PlainLog())
    axis.set_minor_formatter(_PlainLog(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _scales(ax: Axes, logx: bool, logy: bool) -> None:
    """Log scales where asked, labelled with plain numbers; a light grid."""
    for log, axis, scale in ((logx, ax.xaxis, ax.set_xscale), (logy, ax.yaxis, ax.set_yscale)):
        if log:
            scale("log")
            _plain_log_labels(axis)
    ax.grid(True, which="major", alpha=0.3)


def _labels(ax: Axes, xlabel: str, ylabel: str, title: str, notes: Sequence[str]) -> None:
    """Axis labels, a bold title, and a smaller line under it saying what was averaged."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.figure.suptitle(title, fontsize=11, fontweight="bold")
    note = "; ".join(n for n in notes if n)
    ax.set_title(textwrap.fill(note, 100), fontsize=8.5, color="#404040")


def _legend(ax: Axes, title: str) -> None:
    """A legend titled by the key, outside the axes on the right so it never hides a line or band."""
    n = len(ax.get_legend_handles_labels()[1])
    ax.legend(title=title, fontsize=8, title_fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              ncols=1 + (n - 1) // 18, frameon=False)


def _ticks(ax: Axes, xs: Sequence[Any], ys: Sequence[Any]) -> None:
    """Heatmap ticks at cell centres, labelled by level; x labels turn when long."""
    xlabels, ylabels = [fmt(v) for v in xs], [fmt(v) for v in ys]
    turn = sum(map(len, xlabels)) > 40
    ax.set_xticks(range(len(xs)), xlabels, rotation=30 if turn else 0, ha="right" if turn else "center")
    ax.set_yticks(range(len(ys)), ylabels)
    ax.tick_params(length=0)


def _annotate(ax: Axes, grid: np.ma.MaskedArray, partial: np.ndarray, image: Any) -> None:
    """Write each cell's value in it, dark on light colours and light on dark ones."""
    small = grid.shape[1] > 8 or grid.shape[0] > 12
    for (i, j), v in np.ndenumerate(grid.filled(np.nan)):
        if not np.isfinite(v):
            ax.text(j, i, "n/a", ha="center", va="center", fontsize=7, color="#606060")
            continue
        r, g, b, _ = image.cmap(image.norm(v))
        colour = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
        ax.text(j, i, f"{v:.3g}" + ("*" if partial[i, j] else ""), ha="center", va="center",
                fontsize=7 if small else 9, color=colour)
