"""`runner.submit(grid, wait=True)`: submit, then block until the sweep has no job pending or running
(workers elsewhere, a warm `runner workers --wait` pool, do the work) and return its results, with a
progress bar: tqdm's notebook form in a notebook, its text form in a terminal, nothing in a log.

Here rather than in runner.queue: waiting ends in the results, which the queue layer may not import.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..queue.states import JobStatus
from ..queue.submission import DEFAULT_DB, SubmitReport
from ..queue.submission import submit as submit_jobs

WAIT_POLL_S = 0.25  # how often a waiting submit reads the sweep's counts
ENDED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.DIVERGED, JobStatus.CANCELLED)


def submit(grid: str | os.PathLike | Mapping[str, Any], *, db: str = DEFAULT_DB, overrides: Sequence[str] = (),
           sweep: str | None = None, dry_run: bool = False, wait: bool = False, progress: bool = True,
           timeout: float | None = None) -> SubmitReport | Any:
    """Expand a grid file (or dict) into jobs in the database; idempotent per (sweep, config). With
    `wait`, block until no job of the sweep is pending or running and return runner.results(db,
    sweep) (a DataFrame); `timeout` seconds: TimeoutError past it, the jobs left in the queue."""
    report = submit_jobs(grid, db=db, overrides=overrides, sweep=sweep, dry_run=dry_run)
    if not wait or dry_run:
        return report
    wait_for_sweep(db, report.sweep, progress=progress, timeout=timeout)
    from .reading import results

    return results(db, report.sweep)


def wait_for_sweep(db: str, sweep: str, *, progress: bool = True, timeout: float | None = None) -> dict[str, int]:
    """Block until no job of `sweep` is pending or running; its counts by status then."""
    from ..queue.store import Store

    deadline = None if timeout is None else time.monotonic() + timeout
    with Store(db) as store:
        bar = _bar(sum(store.counts(sweep).get(sweep, {}).values()), sweep) if progress else None
        try:
            while True:
                counts = store.counts(sweep).get(sweep, {})
                ended = sum(counts.get(s.value, 0) for s in ENDED)
                if bar is not None:
                    bar.total = sum(counts.values())
                    bar.update(ended - bar.n)
                    bar.set_postfix_str(", ".join(f"{n} {s}" for s, n in counts.items() if n and s != "done"))
                if not counts.get(JobStatus.PENDING.value) and not counts.get(JobStatus.RUNNING.value):
                    return counts
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"sweep {sweep}: {counts.get('pending', 0)} jobs pending and "
                                       f"{counts.get('running', 0)} running after {timeout} s; they stay in the queue")
                time.sleep(WAIT_POLL_S)
        finally:
            if bar is not None:
                bar.close()


def _bar(total: int, sweep: str) -> Any:
    """A tqdm bar (the notebook form in a notebook), or None where nobody watches or tqdm is missing."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    in_notebook = "ipykernel" in sys.modules
    if not in_notebook and not sys.stderr.isatty():
        return None
    return tqdm(total=total, desc=f"sweep {sweep}", unit="job")
