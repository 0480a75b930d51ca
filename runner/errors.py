"""Exception types shared across runner. A UserError is the user's to fix: the CLI prints its
message as one line and exits with code 2, never a traceback."""
from __future__ import annotations

from collections.abc import Sequence


class RunnerError(Exception):
    """Base class for every error runner raises on purpose."""


class UserError(RunnerError):
    """A mistake the user can fix (bad grid file, unknown key, bad database URL...).

    The message is one line that names the cause and the fix.
    """

    exit_code = 2


class JobSetupError(UserError):
    """A job that cannot be built: its batch function's factory or its model's constructor refused
    its config (the function's own argument checks). Like every UserError raised for a job, it is
    the same on every attempt, so a worker fails the job at once instead of retrying it."""


def setup_error(what: str, exc: Exception) -> Exception:
    """`exc`, raised while building a job's `what`, as a JobSetupError naming it; an out-of-memory
    error is left as it is (another attempt, on an emptier device, may fit)."""
    if "OutOfMemoryError" in type(exc).__name__ or isinstance(exc, (MemoryError, UserError)):
        return exc
    first = (str(exc).strip().splitlines() or [""])[0]
    return JobSetupError(f"{what} refused the job's config: {type(exc).__name__}: {first}")


class NoSuchSweep(UserError):
    """A sweep named on the command line or in a call is not in the database: the one wording
    every command and reader uses, with the sweeps that are there and how to list them."""

    def __init__(self, name: str, where: str, known: Sequence[str]) -> None:
        shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        super().__init__(f"no sweep {name!r} in {where} (sweeps there: {shown or 'none'}): "
                         "pick one of those, or list them with `runner status`")
        self.name, self.known = name, list(known)


class StoreError(RunnerError):
    """The database refused or failed an operation (after retries)."""


class StaleTokenError(StoreError):
    """A write-back carried a fencing token that is no longer current: another worker owns the job."""


class TransitionError(StoreError):
    """A job was asked to move between two states that the state machine does not allow."""


def error_line(text: str | None) -> str | None:
    """The one line of a stored error that says what went wrong: a traceback's last line (the
    exception), else the first line; None for no text. For tables and `error` columns."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    if not lines:
        return None
    return lines[-1] if lines[0].startswith("Traceback (most recent call last)") else lines[0]
