"""The states a job moves through and the outcomes an attempt ends with: plain values, no SQL.

The store keeps both as text (jobs.status, attempts.outcome); the transition table between job
states lives with the guarded moves in runner.queue.store.
"""
from __future__ import annotations

import enum

__all__ = ["AttemptOutcome", "JobStatus"]


class JobStatus(str, enum.Enum):
    """Where a job is: waiting, held by a worker, or ended (done, failed, diverged, cancelled)."""
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DIVERGED = "diverged"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class AttemptOutcome(str, enum.Enum):
    """How one attempt (one claim of a job) ended: what attempts.outcome holds once it has ended."""
    DONE = "done"              # the worker finished it: results written
    FAILED = "failed"          # the training raised (the job may go back to pending for another attempt)
    DIVERGED = "diverged"      # a divergence check stopped it
    CANCELLED = "cancelled"    # `runner cancel` while it ran
    RELEASED = "released"      # its worker handed it back (a graceful stop, or a counted release)
    LOST = "lost"              # its worker process died
    EXPIRED = "expired"        # its lease ran out: the worker stopped renewing it

    def __str__(self) -> str:
        return self.value
