"""`runner plot curves|heatmap|scaling` and `runner report`: figures and a markdown report of a sweep.

Each command opens the sweep once (runner.results.sweep.Sweep: the one named, or the database's
only sweep) and draws from it; matplotlib and pandas are imported when a command runs.
"""
from __future__ import annotations

from typing import Any, Callable

import click

from ..text import safe_file_name
from .common import DRAWN_SWEEP, db_option, main, say, sweep_option, user_errors


def _band_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--band minmax|std for the spread around a mean."""
    return click.option("--band", default="minmax", show_default=True, type=click.Choice(["minmax", "std"]),
                        help="spread drawn around the mean: min to max, or +- one standard deviation")(fn)


def _draw(db: str, sweep: str | None, output: str | None, default: str | Callable[[Any], str],
          draw: Callable[[Any, str], Any]) -> None:
    """Open the sweep once, draw one figure of it into `output`, or into the default name (made from
    names in the database: kept to one safe file name in the working folder), and say so."""
    from ..results.sweep import Sweep

    with Sweep(db, sweep) as opened:
        path = output or safe_file_name(default(opened) if callable(default) else default)
        draw(opened, path)
    say(f"wrote {path}")


@main.group(context_settings={"help_option_names": ["-h", "--help"]})
def plot() -> None:
    """Figures of a sweep: curves, heatmap, scaling. Each writes one PNG (or .svg, .pdf with -o)."""


@plot.command()
@db_option
@sweep_option(DRAWN_SWEEP)
@click.option("--metric", default=None, help="the series to draw (see runner.curves) [default: the metric recorded "
                                              "at the most steps, e.g. test_loss of online training]")
@click.option("--by", default="lr", show_default=True, help="one line per value of this config key")
@_band_option
@click.option("-o", "--output", default=None, help="FILE.png (or .svg, .pdf) [default: curves_<metric>_by_<by>.png]")
@user_errors
def curves(db: str, sweep: str | None, metric: str | None, by: str, band: str, output: str | None) -> None:
    """Mean metric against step, by one key. One line per value of --by, averaged over the other keys."""
    from ..results.plots import plot_curves

    _draw(db, sweep, output, lambda opened: f"curves_{metric or opened.busiest_metric()}_by_{by}.png",
          lambda opened, out: plot_curves(opened, None, metric or opened.busiest_metric(), by, out, band=band))


@plot.command()
@db_option
@sweep_option(DRAWN_SWEEP)
@click.option("--value", default="final_test_loss", show_default=True, help="a summary column (see runner results)")
@click.option("--x", "x", default="lr", show_default=True, help="config key along the horizontal axis")
@click.option("--y", "y", default="width", show_default=True, help="config key along the vertical axis")
@click.option("-o", "--output", default=None, help="FILE.png (or .svg, .pdf) [default: heatmap_<value>_<x>_<y>.png]")
@user_errors
def heatmap(db: str, sweep: str | None, value: str, x: str, y: str, output: str | None) -> None:
    """Mean summary value over two keys. Averaged over the other keys; cells without a value grey."""
    from ..results.plots import plot_heatmap

    _draw(db, sweep, output, f"heatmap_{value}_{x}_{y}.png",
          lambda opened, out: plot_heatmap(opened, None, value, x, y, out))


@plot.command()
@db_option
@sweep_option(DRAWN_SWEEP)
@click.option("--value", default="final_test_loss", show_default=True, help="a summary column (see runner results)")
@click.option("--x", "x", default="n_train", show_default=True, help="numeric config key along the horizontal axis")
@click.option("--by", default="width", show_default=True, help="one line per value of this key ('none': one line)")
@_band_option
@click.option("-o", "--output", default=None, help="FILE.png (or .svg, .pdf) [default: scaling_<value>_<x>.png]")
@user_errors
def scaling(db: str, sweep: str | None, value: str, x: str, by: str, band: str, output: str | None) -> None:
    """Summary value against a size, log-log. Learning curves: one line per value of --by, mean over seeds."""
    from ..results.plots import plot_scaling

    _draw(db, sweep, output, f"scaling_{value}_{x}.png",
          lambda opened, out: plot_scaling(opened, None, value, x, None if by.lower() == "none" else by, out, band=band))


@main.command()
@db_option
@sweep_option(DRAWN_SWEEP)
@click.option("-o", "--output", default=None,
              help="folder for summary.md, results.csv and figures [default: <sweep>-report]")
@user_errors
def report(db: str, sweep: str | None, output: str | None) -> None:
    """Markdown report with tables and figures. Writes summary.md, results.csv and the figures that fit the grid."""
    from ..results.report import write_report
    from ..results.sweep import Sweep

    with Sweep(db, sweep) as opened:
        written = write_report(opened, None, output or safe_file_name(f"{opened.name}-report"))
    say(f"wrote {written.summary}, {written.results.name} and {len(written.figures)} figures")
    for note in written.skipped:
        say(f"skipped {note}")
