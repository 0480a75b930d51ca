"""Exception types shared across runner. A UserError is the user's to fix: the CLI prints its
message as one line and exits with code 2, never a traceback."""
from __future__ import annotations


class RunnerError(Exception):
    """Base class for every error runner raises on purpose."""


class UserError(RunnerError):
    """A mistake the user can fix (bad grid file, unknown key, bad database URL...).

    The message is one line that names the cause and the fix.
    """

    exit_code = 2


class StoreError(RunnerError):
    """The database refused or failed an operation (after retries)."""


class StaleTokenError(StoreError):
    """A write-back carried a fencing token that is no longer current: another worker owns the job."""


class TransitionError(StoreError):
    """A job was asked to move between two states that the state machine does not allow."""
