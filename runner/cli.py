"""The `runner` command line. Every user mistake ends in one line on stderr and exit code 2."""
from __future__ import annotations

import functools
import logging
import re
import sys
from typing import Any, Callable

import click

from .errors import UserError

DB_HELP = "database: a file path or a SQLAlchemy URL (env RUNNER_DB)"


def _db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--db", envvar="RUNNER_DB", default="jobs.db", show_default=True, help=DB_HELP)(fn)


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a UserError into `error: <message>` and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            click.echo("error: " + re.sub(r"\s*\n\s*", " ", str(exc).strip()), err=True)  # always one line
            sys.exit(exc.exit_code)

    return wrapper


class _OneLineGroup(click.Group):
    """click's own usage errors (a bad option value, an unknown command) end in one line and exit 2 too."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            click.echo(f"error: {exc.format_message().rstrip('.')}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runner")
def main() -> None:
    """Hyperparameter sweeps of small networks: grid file -> job queue -> GPU workers -> results."""


@main.command()
@click.argument("grid", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@_db_option
@click.option("--dry-run", is_flag=True, help="validate and count the jobs, write nothing")
@_user_errors
def submit(grid: str, overrides: tuple[str, ...], db: str, dry_run: bool) -> None:
    """Expand GRID (a YAML file) into jobs; OVERRIDES like lr=0.01,0.1 base.steps=2000."""
    from .submission import submit as do_submit

    report = do_submit(grid, db=db, overrides=overrides, dry_run=dry_run)
    click.echo(str(report))


@main.command()
@click.option("--devices", default=None, help="'cpu' or GPU indices like 0,1 [default: every GPU, else cpu]")
@click.option("--per-device", default=1, show_default=True, type=int, help="worker processes per device")
@_db_option
@click.option("--sweep", default=None, help="only run jobs of this sweep")
@click.option("--max-jobs", default=None, type=int, help="each worker exits after this many jobs")
@click.option("--wait", is_flag=True, help="keep polling for new jobs instead of exiting when the queue is empty")
@click.option("--lease", "lease_s", default=60.0, show_default=True, type=float, help="seconds a claim lasts without a heartbeat")
@click.option("--checkpoint-dir", default=None, envvar="RUNNER_CHECKPOINT_DIR", show_envvar=True,
              help="folder for job checkpoints [default: <db name>-checkpoints beside a SQLite file]")
@click.option("--quiet", is_flag=True, help="no progress display")
@click.option("-v", "--verbose", is_flag=True, help="log every job")
@_user_errors
def workers(devices: str | None, per_device: int, db: str, sweep: str | None, max_jobs: int | None, wait: bool,
            lease_s: float, checkpoint_dir: str | None, quiet: bool, verbose: bool) -> None:
    """Run workers pinned to devices until the queue is empty (or forever with --wait)."""
    from .devices import parse_devices
    from .supervisor import run_workers

    level = "INFO" if verbose else "WARNING"
    logging.basicConfig(level=level, format="%(asctime)s [supervisor] %(message)s", stream=sys.stderr)
    code = run_workers(db, parse_devices(devices), per_device=per_device, sweep=sweep, max_jobs=max_jobs, wait=wait,
                       lease_s=lease_s, checkpoint_dir=checkpoint_dir, show_progress=not quiet, log_level=level)
    sys.exit(code)


@main.command()
@_db_option
@click.option("--sweep", default=None, help="only this sweep")
@_user_errors
def status(db: str, sweep: str | None) -> None:
    """Jobs per state, per sweep."""
    from .store import JobStatus, Store, display_url

    store = Store(db)
    try:
        counts = store.counts(sweep)
    finally:
        store.close()
    if sweep is not None and sweep not in counts:
        raise UserError(f"no sweep {sweep!r} in {display_url(db)}: run `runner status` without --sweep to list them")
    states = [s.value for s in JobStatus]
    width = max([len("sweep"), *map(len, counts)])
    click.echo(f"{'sweep':<{width}}  " + "  ".join(f"{s:>9}" for s in states) + "      total")
    for name, by_state in counts.items():
        total = sum(by_state.values())
        click.echo(f"{name:<{width}}  " + "  ".join(f"{by_state.get(s, 0):>9}" for s in states) + f"  {total:>9}")
    if not counts:
        click.echo(f"(no jobs in {display_url(db)})")


@main.command()
@_db_option
@click.option("--sweep", default=None, help="only this sweep")
@click.option("-o", "--output", default=None, help="write to FILE.csv, .parquet or .json instead of printing")
@_user_errors
def results(db: str, sweep: str | None, output: str | None) -> None:
    """One row per job: config, status, attempts, final losses, steps, wall time, device."""
    from .reading import export
    from .reading import results as read_results

    df = read_results(db, sweep)
    if output:
        export(df, output)
        click.echo(f"wrote {len(df)} rows to {output}")
        return
    import pandas as pd

    if not len(df):
        click.echo("(no jobs)")
        return
    hidden = {"sweep", "error", "host", "cuda_visible_devices"}
    constant = [c for c in df.columns[2:df.columns.get_loc("status")]
                if df[c].map(repr).nunique() == 1]
    if constant:
        click.echo("same in every job: " + ", ".join(f"{c}={df[c].iloc[0]}" for c in constant))
    shown = df.drop(columns=[c for c in df.columns if c in hidden or c in constant])
    with pd.option_context("display.max_rows", 200, "display.max_columns", 40, "display.width", 200):
        click.echo(shown.to_string(index=False))


@main.command()
@click.argument("job_ids", nargs=-1, type=int)
@_db_option
@click.option("--sweep", default=None, help="cancel every pending or running job of this sweep")
@_user_errors
def cancel(job_ids: tuple[int, ...], db: str, sweep: str | None) -> None:
    """Cancel jobs by id, or a whole sweep; running ones stop at their next heartbeat."""
    from .store import Store

    if not job_ids and sweep is None:
        raise UserError("name job ids or --sweep NAME to cancel")
    store = Store(db)
    try:
        n = store.cancel(sweep=sweep, job_ids=list(job_ids) or None)
    finally:
        store.close()
    click.echo(f"cancelled {n} jobs")


@main.command()
@_db_option
@click.option("--sweep", default=None, help="only this sweep")
@click.option("--state", "states", multiple=True, default=("failed",), show_default=True,
              type=click.Choice(["failed", "diverged", "cancelled"]), help="which jobs to put back")
@_user_errors
def retry(db: str, sweep: str | None, states: tuple[str, ...]) -> None:
    """Put failed (or diverged, cancelled) jobs back in the queue with fresh attempts."""
    from .store import JobStatus, Store

    store = Store(db)
    try:
        n = store.retry(sweep=sweep, statuses=[JobStatus(s) for s in states])
    finally:
        store.close()
    click.echo(f"{n} jobs back in the queue")


if __name__ == "__main__":
    main()
