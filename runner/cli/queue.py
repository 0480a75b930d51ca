"""The commands that fill and work the queue: `runner submit`, `workers`, `cancel`, `retry` and
`db upgrade`. Each imports the store or the pool inside its body, when it runs."""
from __future__ import annotations

import logging
import sys
import warnings

import click

from ..errors import UserError
from ..pool.mps import MODES as MPS_MODES
from ..queue.states import JobStatus  # the store's JobStatus, without loading SQLAlchemy for `--help`
from .common import JOB_ID, db_option, main, say, sweep_option, user_errors

RETRY_STATES = (JobStatus.FAILED, JobStatus.DIVERGED, JobStatus.CANCELLED)  # the ended states retry puts back


@main.command()
@click.argument("grid", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@db_option
@click.option("--dry-run", is_flag=True, help="validate and count the jobs, write nothing")
@click.option("-m", "--multirun", is_flag=True, help="accepted and ignored (Hydra's flag: every submit is a sweep)")
@user_errors
def submit(grid: str, overrides: tuple[str, ...], db: str, dry_run: bool, multirun: bool) -> None:
    """Expand GRID (a YAML file) into jobs; OVERRIDES like lr=0.01,0.1 base.steps=2000 seed='range(0,8)'
    +new_key=1 ~old_key."""
    from ..queue.submission import MixedSweepWarning
    from ..queue.submission import submit as do_submit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixedSweepWarning)  # the report says it, on its own line
        report = do_submit(grid, db=db, overrides=overrides, dry_run=dry_run)
    say(report.headline())
    if report.outside:
        say(f"warning: {report.warning()}", err=True)


@main.command()
@click.option("--devices", default=None, help="'cpu' or GPU indices like 0,1 [default: every GPU, else cpu]")
@click.option("--per-device", default=1, show_default=True, type=int, help="worker processes per device")
@db_option
@sweep_option("only run jobs of this sweep")
@click.option("--max-jobs", default=None, type=int, help="each worker exits after this many jobs")
@click.option("--fuse", default="auto", show_default=True,
              help="train up to K pending jobs of one fusion key as one batched model (1: each job alone; "
                   "auto: up to 1024 on a GPU as memory allows, 16 on the CPU)")
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
def workers(devices: str | None, per_device: int, db: str, sweep: str | None, max_jobs: int | None, fuse: str, wait: bool,
            lease_s: float, checkpoint_dir: str | None, worker_mib: int | None, host_id: str | None, mps: str,
            quiet: bool, verbose: bool) -> None:
    """Run workers pinned to devices until the queue is empty (or forever with --wait)."""
    from ..pool.devices import parse_devices
    from ..pool.supervisor import run_workers

    level = "INFO" if verbose else "WARNING"
    logging.basicConfig(level=level, format="%(asctime)s [supervisor] %(message)s", stream=sys.stderr)
    code = run_workers(db, parse_devices(devices), per_device=per_device, sweep=sweep, max_jobs=max_jobs, fuse=fuse, wait=wait,
                       lease_s=lease_s, checkpoint_dir=checkpoint_dir, host_id=host_id, mps=mps, show_progress=not quiet,
                       log_level=level, **({} if worker_mib is None else {"worker_mib": worker_mib}))
    sys.exit(code)


@main.command()
@click.argument("job_ids", nargs=-1, type=JOB_ID)
@db_option
@sweep_option("cancel every pending or running job of this sweep")
@user_errors
def cancel(job_ids: tuple[int, ...], db: str, sweep: str | None) -> None:
    """Cancel jobs by id, or a whole sweep; running ones end within seconds (their workers see it)."""
    from ..queue.store import Store

    if not job_ids and sweep is None:
        raise UserError("name job ids or --sweep NAME to cancel")
    with Store(db) as store:
        n = store.cancel(sweep=sweep, job_ids=list(job_ids) or None)
    say(f"cancelled {n} jobs")


@main.command()
@db_option
@sweep_option()
@click.option("--state", "states", multiple=True, default=(JobStatus.FAILED.value,), show_default=True,
              type=click.Choice([s.value for s in RETRY_STATES]), help="which jobs to put back")
@user_errors
def retry(db: str, sweep: str | None, states: tuple[str, ...]) -> None:
    """Put failed (or diverged, cancelled) jobs back in the queue with fresh attempts."""
    from ..queue.store import Store

    with Store(db) as store:
        n = store.retry(sweep=sweep, statuses=[JobStatus(s) for s in states])
    say(f"{n} jobs back in the queue")


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
        say(f"{display_url(db)} is at schema {SCHEMA_VERSION} already: nothing to do")
    else:
        say(f"upgraded {display_url(db)} from schema {store.upgraded_from} to {SCHEMA_VERSION}")
