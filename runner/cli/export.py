"""`runner export tensorboard`: a sweep written in another tool's format, here as TensorBoard runs.

tensorboard is an optional extra (`pip install 'runner[tensorboard]'`), imported when the command runs.
"""
from __future__ import annotations

import shlex

import click

from .common import db_option, main, say, sweep_option, user_errors


@main.group(context_settings={"help_option_names": ["-h", "--help"]})
def export() -> None:
    """Write a sweep for another tool: TensorBoard runs (`runner results -o` writes csv, parquet, json)."""


@export.command()
@db_option
@sweep_option("the sweep to export [default: the database's only sweep]")
@click.option("-o", "--output", required=True, metavar="DIR", help="the folder to write the runs into (new or empty)")
@click.option("--overwrite", is_flag=True, help="replace the runs of an earlier export in DIR")
@user_errors
def tensorboard(db: str, sweep: str | None, output: str, overwrite: bool) -> None:
    """A sweep as TensorBoard runs, one per finished job.

    Each run holds the job's curves as scalars, its swept config values and summary values for the
    HParams tab; view them with `tensorboard --logdir DIR`. Pending and running jobs are skipped."""
    from ..results.tensorboard import export_tensorboard

    done = export_tensorboard(db, output, sweep, overwrite=overwrite)
    skipped = sum(done.skipped.values())
    size = f"{done.bytes / 1e6:.1f} MB" if done.bytes >= 100_000 else f"{done.bytes / 1e3:.1f} kB"
    left = (f", skipped {skipped:,} unfinished jobs ({', '.join(f'{n:,} {s}' for s, n in done.skipped.items())})"
            if skipped else "")
    say(f"wrote {done.runs:,} TensorBoard runs of sweep {done.sweep!r} to {output} ({size}){left}; "
        f"view them: tensorboard --logdir {shlex.quote(output)}")
