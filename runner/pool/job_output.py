"""A job's own output: what its code prints to stdout and stderr, its Python warnings and the log
records emitted while it trains, kept bounded (the last LOG_BYTES, counting what was dropped before)
and stored with its attempt (`runner logs JOB`). The terminal still sees all of it: the streams are
teed, not taken. Torch-free.

What a C extension writes straight to file descriptors 1 and 2 is not seen here (it reaches the
terminal only); everything written through Python's sys.stdout, sys.stderr, warnings and logging is.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .tee import Tee

LOG_BYTES = 64 * 1024  # the end of a job's output that is kept (RUNNER_JOB_LOG_KB changes it)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class JobLog:
    """The end of what an attempt printed, and how many bytes before it were dropped."""
    text: str
    dropped: int = 0


def log_limit() -> int:
    """Bytes of a job's output kept: RUNNER_JOB_LOG_KB KiB (0 keeps none), default LOG_BYTES."""
    value = os.environ.get("RUNNER_JOB_LOG_KB", "").strip()
    try:
        return max(0, int(float(value) * 1024)) if value else LOG_BYTES
    except ValueError:
        return LOG_BYTES


class BoundedLog:
    """The last `limit` bytes (UTF-8) of text written to it, from any thread; what falls off the
    front is counted, not kept. `header` comes first in what is kept, unless nothing was written."""

    def __init__(self, limit: int, header: str = "") -> None:
        self.limit, self.size, self.dropped, self.header = limit, 0, 0, header
        self.chunks: deque[bytes] = deque()
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        with self.lock:
            self.chunks.append(data)
            self.size += len(data)
            while self.size > self.limit:
                first = self.chunks[0]
                cut = min(len(first), self.size - self.limit)
                if cut == len(first):
                    self.chunks.popleft()
                else:
                    self.chunks[0] = first[cut:]
                self.size -= cut
                self.dropped += cut

    def value(self) -> JobLog:
        """What is kept now (a character cut in two at the front is left out)."""
        with self.lock:
            data, dropped = b"".join(self.chunks), self.dropped
        text = data.decode("utf-8", "replace")
        if dropped and text.startswith("\ufffd"):  # the tail of a character whose start was dropped
            text = text.lstrip("\ufffd")
        return JobLog(self.header + text if text or dropped else "", dropped)


class _ToLog(logging.Handler):
    """Log records emitted while a job trains, formatted into its log."""

    def __init__(self, log: BoundedLog) -> None:
        super().__init__()
        self.log = log
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.log.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - a record that cannot be formatted must not break the job
            self.handleError(record)


def _to_stderr(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
               line: str | None = None) -> None:
    """warnings.showwarning that writes to sys.stderr (the job's teed stream) as Python's own does."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextmanager
def captured(header: str = "") -> Iterator[BoundedLog]:
    """Keep what is printed, warned and logged inside the block (and still print it). Warnings are
    shown once per job, not once per worker process: a long-lived worker would otherwise keep each
    warning out of every job's log after the first. `header` starts the log if anything is printed."""
    log = BoundedLog(log_limit(), header)
    out, err = sys.stdout, sys.stderr
    handler = _ToLog(log)
    root = logging.getLogger()
    sys.stdout, sys.stderr = Tee(out, log.write), Tee(err, log.write)  # type: ignore[assignment]
    root.addHandler(handler)
    try:
        with warnings.catch_warnings():
            # A filter added (at the end: the user's filters still decide) tells every module to forget
            # which warnings it has shown; catch_warnings puts the filters back afterwards.
            warnings.simplefilter("default", append=True)
            warnings.showwarning = _to_stderr  # shown on our stderr, whoever else was recording them
            yield log
    finally:
        root.removeHandler(handler)
        sys.stdout, sys.stderr = out, err
