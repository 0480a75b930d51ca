"""The `runner` command line. Every user mistake ends in one line on stderr and exit code 2."""
from __future__ import annotations

import logging
import sys
from typing import Any

import click

from ..errors import UserError
from ..pool.mps import MODES as MPS_MODES
from .common import db_option, user_errors


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
@db_option
@click.option("--dry-run", is_flag=True, help="validate and count the jobs, write nothing")
@user_errors
def submit(grid: str, overrides: tuple[str, ...], db: str, dry_run: bool) -> None:
    """Expand GRID (a YAML file) into jobs; OVERRIDES like lr=0.01,0.1 base.steps=2000."""
    from ..queue.submission import submit as do_submit

    report = do_submit(grid, db=db, overrides=overrides, dry_run=dry_run)
    click.echo(str(report))


@main.command()
@click.option("--devices", default=None, help="'cpu' or GPU indices like 0,1 [default: every GPU, else cpu]")
@click.option("--per-device", default=1, show_default=True, type=int, help="worker processes per device")
@db_option
@click.option("--sweep", default=None, help="only run jobs of this sweep")
@click.option("--max-jobs", default=None, type=int, help="each worker exits after this many jobs")
@click.option("--wait", is_flag=True, help="keep polling for new jobs instead of exiting when the queue is empty")
@click.option("--lease", "lease_s", default=60.0, show_default=True, type=float, help="seconds a claim lasts without a heartbeat")
@click.option("--checkpoint-dir", default=None, envvar="RUNNER_CHECKPOINT_DIR", show_envvar=True,
              help="folder for job checkpoints [default: <db name>-checkpoints beside a SQLite file]")
@click.option("--worker-mib", default=None, type=int,
              help="GPU memory one worker needs, to refuse a --per-device that cannot fit [default: 2048]")
@click.option("--host-id", default=None, envvar="RUNNER_HOST_ID", show_envvar=True,
              help="name of this host in worker ids and job rows [default: the machine's host name]")
@click.option("--mps", default="auto", show_default=True, envvar="RUNNER_MPS", show_envvar=True,
              type=click.Choice(MPS_MODES),
              help="CUDA MPS so workers sharing a GPU run at once; auto: with --per-device above 1, where it works")
@click.option("--quiet", is_flag=True, help="no progress display")
@click.option("-v", "--verbose", is_flag=True, help="log every job")
@user_errors
def workers(devices: str | None, per_device: int, db: str, sweep: str | None, max_jobs: int | None, wait: bool,
            lease_s: float, checkpoint_dir: str | None, worker_mib: int | None, host_id: str | None, mps: str,
            quiet: bool, verbose: bool) -> None:
    """Run workers pinned to devices until the queue is empty (or forever with --wait)."""
    from ..pool.devices import parse_devices
    from ..pool.supervisor import run_workers

    level = "INFO" if verbose else "WARNING"
    logging.basicConfig(level=level, format="%(asctime)s [supervisor] %(message)s", stream=sys.stderr)
    code = run_workers(db, parse_devices(devices), per_device=per_device, sweep=sweep, max_jobs=max_jobs, wait=wait,
                       lease_s=lease_s, checkpoint_dir=checkpoint_dir, host_id=host_id, mps=mps, show_progress=not quiet,
                       log_level=level, **({} if worker_mib is None else {"worker_mib": worker_mib}))
    sys.exit(code)


@main.command()
@db_option
@click.option("--sweep", default=None, help="only this sweep")
@click.option("--watch", is_flag=True, help="redraw every --interval seconds until Ctrl-C")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.1),
              help="seconds between redraws with --watch")
@user_errors
def status(db: str, sweep: str | None, watch: bool, interval: float) -> None:
    """Jobs per state per sweep, throughput and ETA, live workers, the latest failures."""
    from ..queue.store import Store
    from ..results.views import status_lines
    from ..results.views import watch as watch_status

    store = Store(db)
    try:
        if watch:
            watch_status(store, sweep, interval)
        else:
            click.echo("\n".join(status_lines(store, sweep)))
    finally:
        store.close()


@main.command()
@db_option
@click.option("--sweep", default=None, help="only this sweep")
@click.option("--state", "states", multiple=True, help="only jobs in this state (repeatable)",
              type=click.Choice(["pending", "running", "done", "failed", "diverged", "cancelled"]))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="show at most this many jobs")
@user_errors
def jobs(db: str, sweep: str | None, states: tuple[str, ...], limit: int) -> None:
    """List jobs: id, sweep, status, attempts, device, wall time, the config keys that vary, error."""
    from ..queue.store import Store
    from ..results.views import jobs_lines

    with Store(db) as store:
        click.echo("\n".join(jobs_lines(store, sweep, states, limit)))


@main.command()
@click.argument("job_id", type=int)
@db_option
@user_errors
def show(job_id: int, db: str) -> None:
    """One job in full: config, attempts and outcomes, summary, metrics, arrays, error traceback."""
    from ..queue.store import Store
    from ..results.views import show_lines

    with Store(db) as store:
        click.echo("\n".join(show_lines(store, job_id)))


@main.command()
@db_option
@click.option("--sweep", default=None, help="only this sweep")
@click.option("-o", "--output", default=None, help="write to FILE.csv, .parquet or .json instead of printing")
@user_errors
def results(db: str, sweep: str | None, output: str | None) -> None:
    """One row per job: config, status, attempts, final losses, steps, wall time, device."""
    from ..results.reading import export
    from ..results.reading import results as read_results

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
                if (df[c].map(repr) if df[c].dtype == object else df[c]).nunique(dropna=False) == 1]
    if constant:
        click.echo("same in every job: " + ", ".join(f"{c}={df[c].iloc[0]}" for c in constant))
    shown = df.drop(columns=[c for c in df.columns if c in hidden or c in constant])
    most = 200  # a terminal's worth: the first and last 100 rows
    with pd.option_context("display.max_columns", 40, "display.width", 200):
        click.echo(shown.to_string(index=False, max_rows=most))
    if len(df) > most:
        click.echo(f"({len(df):,} rows: the first and last {most // 2} shown; write them all with -o FILE.csv)")


@main.command()
@click.argument("job_ids", nargs=-1, type=int)
@db_option
@click.option("--sweep", default=None, help="cancel every pending or running job of this sweep")
@user_errors
def cancel(job_ids: tuple[int, ...], db: str, sweep: str | None) -> None:
    """Cancel jobs by id, or a whole sweep; running ones stop at their next heartbeat."""
    from ..queue.store import Store

    if not job_ids and sweep is None:
        raise UserError("name job ids or --sweep NAME to cancel")
    store = Store(db)
    try:
        n = store.cancel(sweep=sweep, job_ids=list(job_ids) or None)
    finally:
        store.close()
    click.echo(f"cancelled {n} jobs")


@main.command()
@db_option
@click.option("--sweep", default=None, help="only this sweep")
@click.option("--state", "states", multiple=True, default=("failed",), show_default=True,
              type=click.Choice(["failed", "diverged", "cancelled"]), help="which jobs to put back")
@user_errors
def retry(db: str, sweep: str | None, states: tuple[str, ...]) -> None:
    """Put failed (or diverged, cancelled) jobs back in the queue with fresh attempts."""
    from ..queue.store import JobStatus, Store

    store = Store(db)
    try:
        n = store.retry(sweep=sweep, statuses=[JobStatus(s) for s in states])
    finally:
        store.close()
    click.echo(f"{n} jobs back in the queue")


@main.group(name="db")
def db_group() -> None:
    """The database itself: its schema version."""


@db_group.command()
@db_option
@user_errors
def upgrade(db: str) -> None:
    """Migrate a database made by an older runner to this runner's schema (stop its workers first)."""
    from ..queue.store import SCHEMA_VERSION, Store, display_url

    store = Store(db, upgrade=True)
    store.close()
    if store.upgraded_from is None:
        click.echo(f"{display_url(db)} is at schema {SCHEMA_VERSION} already: nothing to do")
    else:
        click.echo(f"upgraded {display_url(db)} from schema {store.upgraded_from} to {SCHEMA_VERSION}")


from .plots import plot, report  # noqa: E402  (its commands join the main group)

main.add_command(plot)
main.add_command(report)

if __name__ == "__main__":
    main()
