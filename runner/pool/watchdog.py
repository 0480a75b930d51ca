"""What ends a job from outside its own code: its time limit, a cancel, a stop it does not answer.

The job's code may be stuck anywhere (a batch function in a sleep, a read that never returns) and
never reach the loop's stop check. So once a second, on the worker's heartbeat thread, the watchdog
looks at the jobs in hand: one past its `timeout` ends failed ("timed out after N s", its fused
group's other members released without using an attempt); jobs all cancelled or taken over for
GRACE_S, or a stop unanswered for STOP_GRACE_S (its jobs released), end the process at once with
RECYCLE_EXIT, and the supervisor starts a fresh worker in its place.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from ..queue.store import ClaimedJob, JobOutcome, JobStatus, StaleTokenError, Store
from .entry import RECYCLE_EXIT
from .job_output import BoundedLog, JobLog

log = logging.getLogger("runner.worker")

WATCH_S = 1.0        # how often the jobs in hand are looked at
GRACE_S = 2.0        # a cancelled job's loop gets this long to notice by itself
STOP_GRACE_S = 10.0  # a stop request gets this long to be answered at the next step


class Watchdog:
    """The jobs a worker holds, and the limits on them that its heartbeat thread enforces."""

    def __init__(self, store: Store, where: dict[str, Any], stop: threading.Event):
        self.store, self.where, self.stop = store, where, stop
        self.jobs: list[ClaimedJob] = []
        self.started = 0.0
        self.gone_since: float | None = None
        self.stop_since: float | None = None
        self.output: BoundedLog | None = None  # what the jobs in hand have printed so far (the worker sets it)

    def hold(self, jobs: list[ClaimedJob]) -> None:
        """These jobs are being trained from now on (an empty list: none)."""
        self.jobs, self.started, self.gone_since = list(jobs), time.monotonic(), None

    def check(self) -> None:
        """Enforce the limits on the jobs in hand; ends the process where one is reached."""
        jobs = self.jobs
        if not jobs:
            return
        now = time.monotonic()
        overdue = [job for job in jobs if _timeout(job) and now - self.started > _timeout(job)]
        if overdue:
            self._timed_out(jobs, overdue, now - self.started)
        held = self.store.still_held([(job.id, job.token) for job in jobs])
        if jobs is self.jobs and not held:  # every one cancelled or taken over: nothing left to write
            self.gone_since = self.gone_since or now
            if now - self.gone_since > GRACE_S:
                log.warning("jobs %s were cancelled or taken over and their code did not stop; ending this worker",
                            [job.id for job in jobs])
                _leave()
        if self.stop.is_set():
            self.stop_since = self.stop_since or now
            if now - self.stop_since > STOP_GRACE_S and jobs is self.jobs:
                for job in jobs:
                    self._release(job, "worker stopped; the job's code did not answer the stop")
                log.warning("jobs %s did not answer the stop within %.0f s: released, worker ending",
                            [job.id for job in jobs], STOP_GRACE_S)
                _leave()

    def _timed_out(self, jobs: list[ClaimedJob], overdue: list[ClaimedJob], elapsed: float) -> None:
        for job in jobs:
            if job in overdue:
                error = f"timed out after {_timeout(job):g} s (the job's timeout; it ran {elapsed:.1f} s)"
                summary = {**self.where, "wall_s": round(elapsed, 4)}
                printed = self._printed()
                try:
                    self.store.finish(job.id, job.token, JobOutcome(JobStatus.FAILED, summary, error=error,
                                                                    log=printed.text, log_dropped=printed.dropped))
                except StaleTokenError:
                    pass
            else:
                self._release(job, f"job {overdue[0].id} of its fused group timed out")
        log.warning("jobs %s timed out; ending this worker", [job.id for job in overdue])
        _leave()

    def _printed(self) -> JobLog:
        """What the jobs in hand printed up to now: a stuck job's log says where it was."""
        return self.output.value() if self.output is not None else JobLog("", 0)

    def _release(self, job: ClaimedJob, reason: str) -> None:
        printed = self._printed()
        try:
            self.store.release(job.id, job.token, reason=reason, count_attempt=False, log=printed.text,
                               log_dropped=printed.dropped)
        except StaleTokenError:
            pass


def _timeout(job: ClaimedJob) -> float:
    return float(job.config.get("timeout") or 0.0)


def _leave() -> None:
    """End the process now, from the heartbeat thread: the main thread is stuck in a job's code."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(RECYCLE_EXIT)
