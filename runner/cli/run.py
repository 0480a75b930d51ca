"""`runner run GRID`: the quickstart in one command, and `runner.run(grid)` from Python.

Submit the grid, run workers on the local devices until its sweep has no job pending or running,
and give back the sweep's results (a DataFrame; the command prints it), like a Hydra multirun.
The exit code is the workers' (0; 1 when a job ended failed; 2 for a user's mistake).
"""
from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import click

from .common import db_option, main, say, user_errors


def run(grid: str | os.PathLike | Mapping[str, Any], overrides: Sequence[str] = (), *, db: str = "jobs.db",
        sweep: str | None = None, devices: str | None = None, per_device: int = 1, fuse: str = "auto",
        quiet: bool = False, **workers: Any) -> Any:
    """Submit `grid`, run workers on `devices` (every GPU, else the CPU) until its sweep is finished,
    and return its results (runner.results). Jobs that fail are rows with status 'failed'; a user's
    mistake raises UserError before anything runs. `workers`: more of run_workers' options."""
    df, _, _ = _run(grid, overrides, db=db, sweep=sweep, devices=devices, per_device=per_device, fuse=fuse,
                    quiet=quiet, announce=not quiet, **workers)
    return df


def _run(grid: Any, overrides: Sequence[str], *, db: str, sweep: str | None, devices: str | None, per_device: int,
         fuse: str, quiet: bool, announce: bool, **workers: Any) -> tuple[Any, int, Any]:
    """(the sweep's results, the workers' exit code, the submit's report); `announce`: say what the
    submit added (on stderr: stdout holds the results)."""
    from ..pool.devices import parse_devices
    from ..pool.supervisor import run_workers
    from ..queue.submission import submit
    from ..results.reading import results

    chosen = parse_devices(devices)  # a bad --devices is refused before anything is written
    report = submit(grid, db=db, overrides=overrides, sweep=sweep)
    if announce:
        say(report.headline(), err=True)
    code = run_workers(db, chosen, per_device=per_device, sweep=report.sweep, fuse=fuse, show_progress=not quiet,
                       **workers)
    return results(db, report.sweep), code, report


@main.command("run")
@click.argument("grid", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@db_option
@click.option("--devices", default=None, help="'cpu' or GPU indices like 0,1 [default: every GPU, else cpu]")
@click.option("--per-device", default=1, show_default=True, type=int, help="worker processes per device")
@click.option("--fuse", default="auto", show_default=True, help="as `runner workers --fuse`")
@click.option("--quiet", is_flag=True, help="no progress display")
@click.option("-m", "--multirun", is_flag=True, help="accepted and ignored (Hydra's flag: every run is a sweep)")
@user_errors
def run_command(grid: str, overrides: tuple[str, ...], db: str, devices: str | None, per_device: int, fuse: str,
                quiet: bool, multirun: bool) -> None:
    """Submit GRID, work its sweep on this machine's devices until it is finished, print its results."""
    from ..queue.submission import MixedSweepWarning
    from .reading import say_results

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixedSweepWarning)  # said on its own line below, as `runner submit` does
        df, code, report = _run(grid, overrides, db=db, sweep=None, devices=devices, per_device=per_device, fuse=fuse,
                                quiet=quiet, announce=True)
    if report.outside:
        say(f"warning: {report.warning()}", err=True)
    say_results(df)
    sys.exit(code)
