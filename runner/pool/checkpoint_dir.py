"""Where a pool's checkpoint files go: a folder chosen from the database, one file per job.

Torch-free (the supervisor resolves the folder before any worker starts); the files themselves are
written and read by runner.train.checkpoints.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import UserError
from ..queue.store import sqlite_file


def default_dir(db: str) -> Path:
    """Where a queue's checkpoints go unless told: `<db stem>-checkpoints/` beside a SQLite file,
    `./runner-checkpoints/` for a server database (point every host at a shared folder)."""
    database = sqlite_file(db)
    if database is None:
        return Path("runner-checkpoints").resolve()
    path = Path(database).expanduser().resolve()
    return path.with_name(f"{path.stem}-checkpoints")


def usable_dir(directory: str | os.PathLike[str]) -> Path:
    """The folder, created if missing, once a file could be written and removed there; UserError
    naming the folder and the fix otherwise (checked when `runner workers` starts, not by the jobs)."""
    path = Path(directory).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)  # a folder runner makes is its user's alone
        fd, probe = tempfile.mkstemp(prefix=".runner-probe-", dir=path)  # exclusive: never through a symlink
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"checkpoint folder {str(path)!r} cannot be used ({exc.strerror or exc}): point "
                        "--checkpoint-dir (or RUNNER_CHECKPOINT_DIR) at a folder you can write to") from None
    return path


def job_path(directory: str | os.PathLike[str], job_id: int, config_hash: str) -> Path:
    """The checkpoint file of one job; the hash keeps two databases' job 7 apart."""
    return Path(directory) / f"job-{job_id}-{config_hash[:12]}.pt"
