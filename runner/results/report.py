"""A sweep report in one folder: summary.md (renders on GitHub as is), its figures, results.csv.

    runner.results.report.write_report("jobs.db", "quickstart", "quickstart-report")

Axes are chosen from the grid: the keys that vary (seeds are averaged over). A figure that needs
more varying keys than the sweep has is skipped with a note saying why.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import UserError
from ..queue.store import JobStatus
from .plots import plot_curves, plot_heatmap, plot_scaling
from .reading import export
from .sweep import Sweep, opened
from .tables import (
    SEED_KEYS,
    axis_keys,
    combinations,
    config_columns,
    fmt,
    fmt_number,
    is_number,
    levels,
    outside_keys,
    outside_note,
    rows_at,
    value_columns,
    varying_keys,
)

TOP = 5
MAX_CURVE_AXES = 3  # curves by at most this many keys, so a wide grid does not flood the report
SCALING_KEYS = ("n_train", "width", "depth", "d", "batch_size", "steps")  # a learning-curve x axis
CURVE_METRICS = (("train_loss", "batch_loss"), ("test_loss",))  # per row: the first with a curve


@dataclass
class Report:
    """What write_report wrote: the files, and the figures it skipped with the reason."""

    summary: Path
    results: Path
    figures: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def write_report(db: str | Sweep, sweep: str | None, out_dir: str | Path) -> Report:
    """Write summary.md, results.csv and the figures that fit the sweep's grid into out_dir.

    db: a database (opened for this report) or an open Sweep (sweep then None or its name)."""
    out = _out_folder(out_dir)
    with opened(db, sweep) as source:  # before the folder is made: an unknown sweep leaves nothing behind
        df = source.results(hashable=True)
        apart = outside_keys(source, df)
        out.mkdir(exist_ok=True)
        report = Report(summary=out / "summary.md", results=out / "results.csv")
        export(source.results(), str(report.results))
        figures = _figures(source, df, out, report)
        submits = source.store.submission_rows(source.name)
    intro = f"Database: `{source.shown}`. Results of every job: [results.csv](results.csv)."
    lines = [f"# Sweep `{source.name}`", "", *_notes(submits), intro, "", *_what_ran(df, apart), *_failures(df),
             *_by_axis(df, apart), *_best(df), *figures, *_provenance(submits)]
    report.summary.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return report


def _out_folder(out_dir: str | Path) -> Path:
    """The report folder: an existing folder, or a new one in an existing parent."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"cannot write a report into {str(out)!r}: it is a file; pass a folder with -o")
    if not out.parent.is_dir():
        raise UserError(f"cannot write a report into {str(out)!r}: folder {str(out.parent)!r} does not exist; "
                        "create it first")
    return out


# --- sections ------------------------------------------------------------------------------------
def _notes(submits: Sequence[dict[str, Any]]) -> list[str]:
    """The sweep's description (its latest) and tags (of every submit), first thing in the report."""
    description = next((row["description"] for row in reversed(submits) if row["description"]), None)
    tags = list(dict.fromkeys(t for row in submits for t in row["tags"]))
    return ([description, ""] if description else []) + ([f"Tags: {', '.join(f'`{t}`' for t in tags)}", ""] if tags else [])


def _provenance(submits: Sequence[dict[str, Any]]) -> list[str]:
    """Each submit: when, the command, the git commit (dirty or not), the versions; the last grid as submitted."""
    if not submits:
        return []
    rows = []
    for row in submits:
        p = row["provenance"]
        commit = "-" if p.get("git_commit") is None else f"`{p['git_commit'][:12]}`" + (
            f" dirty (diff `{p['git_diff_sha256'][:12]}`)" if p.get("git_dirty") else "")
        rows.append([row["id"], _when(row["created_at"]), f"`{p.get('command')}`", commit, p.get("host"),
                     f"runner {p.get('runner_version')}, torch {p.get('torch_version')}, Python {p.get('python_version')}"])
    lines = ["## Provenance", "", *_table(["submit", "when", "command", "git", "host", "versions"],
                                          [[str(c) for c in row] for row in rows], "rlllll"), ""]
    grid = submits[-1]["grid"]
    if grid:
        lines += ["The grid of the last submit, as submitted:", "", "```yaml", grid.rstrip(), "```", ""]
    return lines


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _what_ran(df: pd.DataFrame, apart: Sequence[str]) -> list[str]:
    """Job counts by status, the grid, fixed keys, keys outside the grid, wall time and devices."""
    counts = df.status.value_counts()
    rows = [[s.value, str(int(counts.get(s.value, 0)))] for s in JobStatus if counts.get(s.value, 0)]
    lines = ["## What ran", "", *_table(["status", "jobs"], rows + [["**total**", f"**{len(df)}**"]], "lr"), ""]
    varying = varying_keys(df)
    if varying:
        cells = " × ".join(f"`{k}` ({_values(df[k])})" for k in varying)
        lines.append(f"- Grid: {cells}: {_configurations(df)}")
    fixed = [k for k in config_columns(df) if k not in varying]
    if fixed:
        lines.append("- Same in every job: " + ", ".join(f"`{k}={fmt(df[k].iloc[0])}`" for k in fixed))
    if apart:
        lines.append(f"- **Not one grid**: {outside_note(df, apart, then='')} (a base value changed between "
                     "submits): the tables and figures below keep them apart")
    wall = pd.to_numeric(df.get("wall_s"), errors="coerce").dropna()
    if len(wall):
        lines.append(f"- Wall time: {_duration(wall.sum())} in all, {_duration(wall.mean())} mean per job "
                     f"({len(wall)} jobs with a result)")
    devices = df.device.dropna().value_counts() if "device" in df else pd.Series(dtype=int)
    if len(devices):
        lines.append("- Devices: " + ", ".join(f"{d} ({n} jobs)" for d, n in devices.items()))
    unfinished = int(df.status.isin([JobStatus.PENDING.value, JobStatus.RUNNING.value]).sum())
    if unfinished:
        lines.append(f"- {unfinished} jobs have not finished yet: the numbers below cover finished jobs only")
    return lines + [""]


def _failures(df: pd.DataFrame) -> list[str]:
    """Failed and diverged jobs with their config and the last line of their error."""
    bad = df[df.status.isin([JobStatus.FAILED.value, JobStatus.DIVERGED.value])]
    if not len(bad):
        return ["## Failures", "", "None.", ""]
    keys = varying_keys(df)
    rows = [[str(r["job_id"]), r["status"], *[fmt(r[k]) for k in keys], _short(r["error"])] for _, r in bad.iterrows()]
    return ["## Failures", "", f"{len(bad)} of {len(df)} jobs failed or diverged "
            "(error: the last line of the traceback, or the reason).", "",
            *_table(["job", "status", *keys, "error"], rows, "rl" + "".join(_align(df, k) for k in keys) + "l"), ""]


def _by_axis(df: pd.DataFrame, apart: Sequence[str]) -> list[str]:
    """Per varying key (seeds aside): mean +- std of each summary value over the other keys, apart for
    each combination of the keys no grid varies."""
    values = [v for v in value_columns(df) if _numeric(df[v]).notna().any()]
    if not values:
        return ["## Results by axis", "", "No job has a result yet.", ""]
    keys = axis_keys(df) or varying_keys(df)
    note = "Mean ± standard deviation over the jobs at each value (every other key varies)."
    if any(v.startswith("step_at_") for v in values):
        note += (" `step_at_T`: first step the smoothed train loss fell below T, over the jobs that crossed;"
                 " (k/n) when only k of n finished jobs did.")
    lines = ["## Results by axis", "", note, ""]
    for key in keys or [None]:
        split = [k for k in apart if k != key]
        lines += [f"### `{key}`" if key else "### All jobs", "", *_axis_table(df, key, split, values), ""]
    return lines


def _axis_table(df: pd.DataFrame, key: str | None, split: Sequence[str], values: Sequence[str]) -> list[str]:
    """One row per value of `key` (or one row for all jobs) and combination of the `split` keys, one
    column per summary value."""
    shown = ([key] if key else []) + list(split)
    groups = [(combo, rows_at(df, shown, combo)) for combo in combinations(df, shown)] if shown else [(("all",), df)]
    rows = [[*map(fmt, combo), str(len(part)), str(int((part.status == JobStatus.DONE.value).sum())),
             *[_cell(part, v) for v in values]] for combo, part in groups if len(part)]
    aligns = "".join(_align(df, k) for k in shown) or "l"
    return _table([*(shown or ["jobs"]), "jobs", "done", *values], rows, aligns + "r" * (2 + len(values)))


def _best(df: pd.DataFrame) -> list[str]:
    """The configurations with the lowest mean final_test_loss over seeds."""
    head = ["## Best configurations", ""]
    if "final_test_loss" not in df or not _numeric(df.final_test_loss).notna().any():
        return head + ["No job has a final_test_loss yet.", ""]
    keys = axis_keys(df)
    scored = df.assign(final_test_loss=_numeric(df.final_test_loss),
                       final_train_loss=_numeric(df.get("final_train_loss", pd.Series(np.nan, index=df.index))))
    scored = scored[scored.final_test_loss.notna()]
    groups = list(scored.groupby(keys, dropna=False, sort=False)) if keys else [((), scored)]
    ranked = sorted(groups, key=lambda g: g[1].final_test_loss.mean())[:TOP]
    seeds = [k for k in SEED_KEYS if k in varying_keys(df)]
    rows = []
    for rank, (lvls, part) in enumerate(ranked, 1):
        lvls = lvls if isinstance(lvls, tuple) else (lvls,)
        rows.append([str(rank), *[fmt(v) for v in lvls], _cell(part, "final_test_loss"),
                     _cell(part, "final_train_loss"), str(len(part)), ", ".join(map(str, part.job_id))])
    over = f"mean over {', '.join(f'`{s}`' for s in seeds)}" if seeds else "one job each"
    return head + [f"Lowest `final_test_loss` ({over}), top {min(TOP, len(groups))} of {len(groups)}.", "",
                   *_table(["rank", *keys, "final_test_loss", "final_train_loss", "jobs", "job ids"], rows,
                           "r" + "".join(_align(df, k) for k in keys) + "rrrl"), ""]


# --- figures -------------------------------------------------------------------------------------
def _figures(sweep: Sweep, df: pd.DataFrame, out: Path, report: Report) -> list[str]:
    """Draw the figures that fit the grid; markdown image links, and a note for each one skipped."""
    keys = axis_keys(df)
    lines = ["## Figures", ""]
    for title, file, draw in _plan(sweep, df, keys, report):
        try:
            draw(out / file)
        except UserError as exc:
            report.skipped.append(f"{title}: {exc}")
            continue
        report.figures.append(out / file)
        lines += [f"### {title}", "", f"![{title.replace('`', '')}]({file})", ""]
    if report.skipped:
        lines += ["Skipped:", "", *[f"- {s}" for s in report.skipped], ""]
    return lines


FigurePlan = tuple[str, str, Callable[[Path], Any]]  # (title, file name, draw into a path)


def _plan(sweep: Sweep, df: pd.DataFrame, keys: list[str], report: Report) -> list[FigurePlan]:
    """(title, file name, draw) for each figure that fits: curves, a heatmap, learning curves."""
    if not keys:
        report.skipped.append("all figures: no key varies apart from seeds, so there is nothing to compare")
        return []
    ordered = sorted(keys, key=lambda k: k != "lr")  # lr first: the key most often compared
    value = _summary_value(df)
    return [*_curve_plan(sweep, ordered, report), *_heatmap_plan(sweep, ordered, value, report),
            *_scaling_plan(sweep, df, ordered, value, report)]


def _curve_plan(sweep: Sweep, keys: list[str], report: Report) -> list[FigurePlan]:
    """A training and a test loss curve by each of the first few keys."""
    metrics = _curve_metrics(sweep)
    if not metrics:
        report.skipped.append("curves: no metric was recorded at more than one step")
    return [(f"`{m}` by `{k}`", f"curves_{m}_by_{k}.png", lambda path, m=m, k=k: plot_curves(sweep, None, m, k, path))
            for m in metrics for k in keys[:MAX_CURVE_AXES]]


def _heatmap_plan(sweep: Sweep, keys: list[str], value: str | None, report: Report) -> list[FigurePlan]:
    """The summary value over the first two keys, when two keys vary."""
    if len(keys) < 2:
        report.skipped.append(f"heatmap: it needs two varying keys, and only `{keys[0]}` varies (seeds aside)")
        return []
    if value is None:
        return []
    x, y = keys[0], keys[1]
    return [(f"`{value}` over `{x}` and `{y}`", f"heatmap_{value}_{x}_{y}.png",
             lambda path: plot_heatmap(sweep, None, value, x, y, path))]


def _scaling_plan(sweep: Sweep, df: pd.DataFrame, keys: list[str], value: str | None,
                  report: Report) -> list[FigurePlan]:
    """Learning curves against the first size-like key, by the other key with the fewest values."""
    x = next((k for k in SCALING_KEYS if k in keys and _positive_numbers(df[k])), None)
    if x is None:
        report.skipped.append(f"scaling: no numeric size key varies (looked for {', '.join(SCALING_KEYS)})")
        return []
    if value is None:
        return []
    by = min((k for k in keys if k != x), key=lambda k: len(levels(df[k])), default=None)
    return [(f"`{value}` against `{x}`", f"scaling_{value}_{x}.png",
             lambda path: plot_scaling(sweep, None, value, x, by, path))]


def _curve_metrics(sweep: Sweep) -> list[str]:
    """A training and a test loss that were recorded at more than one step."""
    recorded = set(sweep.curve_metrics())
    chosen = [next((m for m in row if m in recorded), None) for row in CURVE_METRICS]
    return [m for m in chosen if m]


def _summary_value(df: pd.DataFrame) -> str | None:
    """The value the heatmap and learning curves show: final test loss, else final train loss."""
    return next((v for v in ("final_test_loss", "final_train_loss") if v in df and _numeric(df[v]).notna().any()), None)


# --- formatting ----------------------------------------------------------------------------------
def _table(head: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """A GitHub pipe table; `align` holds one l or r per column."""
    marks = ["---:" if a == "r" else ":---" for a in align]
    return ["| " + " | ".join(_escape(c) for c in row) + " |" for row in [list(head), marks, *rows]]


def _align(df: pd.DataFrame, key: str) -> str:
    """Numbers align right in a table column, text left."""
    return "r" if all(is_number(v) for v in levels(df[key])) else "l"


def _escape(text: str) -> str:
    """A table cell that cannot break the pipe table."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _numeric(series: pd.Series) -> pd.Series:
    """Finite floats, NaN elsewhere (None, inf, text)."""
    numbers = pd.to_numeric(series, errors="coerce").astype(float)
    return numbers.where(np.isfinite(numbers))


def _positive_numbers(series: pd.Series) -> bool:
    """Every value a positive number: the key can be a log axis."""
    return all(is_number(v) and v > 0 for v in levels(series))


def _cell(part: pd.DataFrame, column: str) -> str:
    """mean ± std of a column over jobs; for step_at_* also (crossed/total) when some never crossed."""
    values = _numeric(part[column]).dropna()
    if not len(values):
        return ""
    steps = column.startswith("step_at_")
    text = f"{values.mean():.0f}" if steps else fmt_number(values.mean())
    if len(values) > 1:
        text += f" ± {values.std():.0f}" if steps else f" ± {fmt_number(values.std(), 2)}"
    finished = int(part.status.isin([JobStatus.DONE.value, JobStatus.DIVERGED.value]).sum())
    if steps and len(values) < finished:
        text += f" ({len(values)}/{finished})"
    return text


def _values(series: pd.Series) -> str:
    """'3 values: 0.003, 0.01, 0.03' (the list cut short when long)."""
    lv = levels(series)
    shown = ", ".join(fmt(v) for v in lv[:8]) + (", ..." if len(lv) > 8 else "")
    return f"{len(lv)} values: {shown}"


def _configurations(df: pd.DataFrame) -> str:
    """'12 configurations x 2 seeds', or 'N configurations' when no seed key varies."""
    keys, seeds = axis_keys(df), [k for k in SEED_KEYS if k in varying_keys(df)]
    n = len(df.groupby(keys, dropna=False)) if keys else 1
    if not seeds:
        return f"{n} configurations"
    per = df.groupby(keys, dropna=False).size() if keys else pd.Series([len(df)])
    runs = f"{per.iloc[0]}" if per.nunique() == 1 else f"{per.min()} to {per.max()}"
    return f"{n} configurations × {runs} seeds"


def _duration(seconds: float) -> str:
    """12.3 s, 4 min 5 s, 2 h 3 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def _short(error: Any, limit: int = 160) -> str:
    """An error's one line, cut to a table-friendly length."""
    if not isinstance(error, str) or not error:
        return ""
    return error if len(error) <= limit else error[:limit - 3] + "..."
