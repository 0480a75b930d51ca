"""`runner plot curves|heatmap|scaling` and `runner report`: figures and a markdown report of a sweep.

Each command opens the sweep once (runner.results.sweep.Sweep: the one named, or the database's
only sweep) and draws from it; matplotlib and pandas are imported when a command runs.
"""
from __future__ import annotations

from typing import Any, Callable

import click

from ..text import safe_file_name
from .common import DRAWN_SWEEP, JOB_REF, db_option, main, say, sweep_option, user_errors


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
    """Figures: a sweep's curves, heatmap, scaling; a job's loss landscape; the connectivity of two
    jobs. Each writes one PNG (or .svg, .pdf with -o)."""


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


def _data_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--data test|train: the set the loss is measured on."""
    return click.option("--data", default=None, type=click.Choice(["test", "train"]),
                        help="measure the loss on the test set or the training set [default: train offline, else test]")(fn)


def _device_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--device", default="cpu", show_default=True, help="where the losses are computed (cpu, cuda:0)")(fn)


@plot.command()
@db_option
@click.argument("job", type=JOB_REF)
@click.option("--points", default=21, show_default=True, help="grid points along each principal direction")
@click.option("--margin", default=0.25, show_default=True, help="grid beyond the trajectory, as a fraction of its extent")
@click.option("--slices", default=3, show_default=True, help="random filter-normalised 1-D slices drawn beside it (0: none)")
@_data_option
@_device_option
@click.option("-o", "--output", default=None, help="FILE.png (or .svg, .pdf) [default: landscape_job<JOB>.png]")
@user_errors
def landscape(db: str, job: str, points: int, margin: float, slices: int, data: str | None, device: str,
              output: str | None) -> None:
    """A job's trajectory on the loss surface of its top two principal components. Needs the weights of
    several steps (trajectory_every in its grid); random-direction slices through its final weights beside.
    JOB is a job id, or ID.MEMBER for a member of a paired job (7.a)."""
    from ..api.landscape import loss_slice, trajectory
    from ..results.landscape_plots import plot_landscape
    from ..results.plots import check_output

    path = output or f"landscape_job{job}.png"
    check_output(path)
    found = trajectory(db, job, points=points, margin=margin, data=data, device=device)
    drawn = [loss_slice(db, job, points=max(points, 3), seed=i, data=data, device=device) for i in range(max(slices, 0))]
    plot_landscape(found, drawn, path)
    ratio = ", ".join(f"{100 * r:.1f}%" for r in found["explained_variance_ratio"])
    say(f"wrote {path} (PC1, PC2 explain {ratio} of the trajectory's variance; {len(found['steps'])} steps)")


@plot.command()
@db_option
@click.argument("job_a", type=JOB_REF)
@click.argument("job_b", type=JOB_REF)
@click.option("--align", default="both", show_default=True, type=click.Choice(["none", "permutation", "both"]),
              help="reorder job B's hidden units to match job A's first (weight matching); both: a line each")
@click.option("--path", "path_kind", default="linear", show_default=True, type=click.Choice(["linear", "bezier", "both"]),
              help="the straight line, a fitted quadratic Bezier curve, or both")
@click.option("--points", default=25, show_default=True, help="points along each path")
@click.option("--step", default="end", show_default=True, help="the stored weights of this step of each job")
@click.option("--bezier-steps", default=1000, show_default=True, help="Adam steps fitting the Bezier curve")
@_data_option
@_device_option
@click.option("-o", "--output", default=None, help="FILE.png (or .svg, .pdf) [default: connectivity_<A>_<B>.png]")
@user_errors
def connectivity(db: str, job_a: str, job_b: str, align: str, path_kind: str, points: int, step: str,
                 bezier_steps: int, data: str | None, device: str, output: str | None) -> None:
    """The loss along the path between two jobs' solutions, and its barrier. The jobs need stored
    weights (snapshots: [end]) of one architecture; the loss is job A's, on its data. A job is an id,
    or ID.MEMBER for a member of a paired job (7.a 7.b: its two members)."""
    from ..api.landscape import connectivity as measure
    from ..results.landscape_plots import path_label, plot_connectivity
    from ..results.plots import check_output

    out = output or f"connectivity_{job_a}_{job_b}.png"
    check_output(out)
    at: int | str = int(step) if step.strip().isdigit() else step
    aligns = ["none", "permutation"] if align == "both" else [align]
    kinds = ["linear", "bezier"] if path_kind == "both" else [path_kind]
    paths = [measure(db, job_a, job_b, step=at, points=points, align=a, path=k, data=data, bezier_steps=bezier_steps,
                     device=device) for k in kinds for a in aligns]
    plot_connectivity(paths, out)
    for p in paths:
        say(path_label(p))
    say(f"wrote {out}")
