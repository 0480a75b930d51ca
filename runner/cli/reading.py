"""The commands that read the queue in the terminal: `runner status`, `jobs`, `sweeps`, `show`, `logs`
and `results`.
They print what runner.results builds (views, the results frame), importing it when they run."""
from __future__ import annotations

from typing import Any

import click

from ..queue.states import JobStatus  # the store's JobStatus, without loading SQLAlchemy for `--help`
from .common import JOB_ID, db_option, main, say, sweep_option, user_errors


@main.command()
@db_option
@sweep_option()
@click.option("--watch", is_flag=True, help="redraw every --interval seconds until Ctrl-C")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.1),
              help="seconds between redraws with --watch")
@user_errors
def status(db: str, sweep: str | None, watch: bool, interval: float) -> None:
    """Jobs per state per sweep, throughput and ETA, live workers, the latest failures."""
    from ..queue.store import Store
    from ..results.views import status_lines
    from ..results.views import watch as watch_status

    with Store(db) as store:
        if watch:
            watch_status(store, sweep, interval)
        else:
            say("\n".join(status_lines(store, sweep)))


@main.command()
@db_option
@sweep_option()
@click.option("--state", "states", multiple=True, help="only jobs in this state (repeatable)",
              type=click.Choice([s.value for s in JobStatus]))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="show at most this many jobs")
@user_errors
def jobs(db: str, sweep: str | None, states: tuple[str, ...], limit: int) -> None:
    """List jobs: id, sweep, status, attempts, device, wall time, the config keys that vary, error."""
    from ..queue.store import Store
    from ..results.views import jobs_lines

    with Store(db) as store:
        say("\n".join(jobs_lines(store, sweep, states, limit)))


@main.command()
@db_option
@user_errors
def sweeps(db: str) -> None:
    """List sweeps: jobs by outcome, submits, first submit, tags and description (the grid's notes)."""
    from ..queue.store import Store
    from ..results.views import sweeps_lines

    with Store(db) as store:
        say("\n".join(sweeps_lines(store)))


@main.command()
@click.argument("job_id", type=JOB_ID)
@db_option
@user_errors
def show(job_id: int, db: str) -> None:
    """One job in full: config, where its submit came from, attempts and outcomes, summary, metrics,
    arrays, error traceback."""
    from ..queue.store import Store
    from ..results.views import show_lines

    with Store(db) as store:
        say("\n".join(show_lines(store, job_id)))


@main.command()
@click.argument("job_id", type=JOB_ID)
@click.option("--attempt", type=click.IntRange(min=1), default=None,
              help="this attempt's log [default: the latest attempt that kept one]")
@db_option
@user_errors
def logs(job_id: int, attempt: int | None, db: str) -> None:
    """What a job printed: stdout, stderr, Python warnings and log records of one attempt (the last
    64 KiB, RUNNER_JOB_LOG_KB to change), then its error if it failed."""
    from ..queue.store import Store
    from ..results.views import log_lines

    with Store(db) as store:
        say("\n".join(log_lines(store, job_id, attempt)))


@main.command()
@db_option
@sweep_option()
@click.option("-o", "--output", default=None, help="write to FILE.csv, .parquet or .json instead of printing")
@user_errors
def results(db: str, sweep: str | None, output: str | None) -> None:
    """One row per job: config, status, attempts, final losses, steps, wall time, device."""
    from ..results.reading import export
    from ..results.reading import results as read_results

    df = read_results(db, sweep)
    if output:
        export(df, output)
        say(f"wrote {len(df)} rows to {output}")
        return
    say_results(df)


def say_results(df: Any) -> None:
    """A results frame as a terminal table: the keys every job shares on one line, then one row per
    job (the first and last 100 of a long sweep)."""
    import pandas as pd

    if not len(df):
        say("(no jobs)")
        return
    hidden = {"sweep", "error", "host", "cuda_visible_devices", "git_diff_sha256", "submit_host", "submit_command",
              "runner_version", "torch_version", "cuda_version", "python_version"}  # (in the frame and exports)
    # a dict grab's per-entry columns (final_weight_norm.net.0.bias ...) stay in the frame and the
    # exports; the terminal shows its total, or its first entry
    hidden |= {c for c in df.columns if c.startswith("final_") and "." in c and not c.endswith(".total")
               and f"{c.split('.')[0]}.total" in df.columns}
    constant = [c for c in df.columns[2:df.columns.get_loc("status")]
                if (df[c].map(repr) if df[c].dtype == object else df[c]).nunique(dropna=False) == 1]
    if constant:
        say("same in every job: " + ", ".join(f"{c}={df[c].iloc[0]}" for c in constant))
    shown = df.drop(columns=[c for c in df.columns if c in hidden or c in constant])
    most = 200  # a terminal's worth: the first and last 100 rows
    with pd.option_context("display.max_columns", 40, "display.width", 200):
        say(shown.to_string(index=False, max_rows=most))
    if len(df) > most:
        say(f"({len(df):,} rows: the first and last {most // 2} shown; write them all with -o FILE.csv)")
