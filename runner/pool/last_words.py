"""A worker's last output: what it wrote to stderr, kept in a small file beside the terminal's copy,
so that when the process dies the supervisor stores the end of it with the lost attempt and
"worker process died (exit code 1)" says why. Torch-free: both sides use it.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import TextIO

from . import tee

KEEP_BYTES = 16 * 1024  # how much of the end the file keeps at least (it is cut back past 4x that)
TAIL_LINES = 15         # how many lines the supervisor stores


def path_for(worker_id: str) -> Path:
    """The file of one worker process (worker ids hold '/': made safe)."""
    return Path(tempfile.gettempdir()) / "runner-last-words" / (re.sub(r"[^\w.-]", "_", worker_id) + ".log")


class Tee(tee.Tee):
    """stderr for a worker: every write goes to the real stderr and to the worker's file."""

    def __init__(self, stream: TextIO, worker_id: str):
        path = path_for(worker_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "w", encoding="utf-8", errors="replace")  # noqa: SIM115 - lives as long as the process
        super().__init__(stream, self._keep)

    def _keep(self, text: str) -> None:
        try:
            self.file.write(text)
            self.file.flush()
            if self.file.tell() > 4 * KEEP_BYTES:  # keep the end only
                self.file.seek(0)
                self.file.truncate()
        except OSError:  # a full disk must not break the worker's logging
            pass


def tail(worker_id: str, lines: int = TAIL_LINES) -> str:
    """The last lines a worker wrote to stderr ('' when none), then its file is removed."""
    path = path_for(worker_id)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    finally:
        path.unlink(missing_ok=True)
    return "\n".join(text.splitlines()[-lines:])
