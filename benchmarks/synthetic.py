"""What the benchmarks that build a synthetic sweep share: the git revision their table header
names, and the check that a kept --db holds the sweep they would build. Imported as
`benchmarks.synthetic` once a script has put the repository root on sys.path (this folder holds
queue.py, which must not shadow the standard library's `queue`)."""
from __future__ import annotations

import os
import subprocess

from runner.queue.store import Store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_rev() -> str:
    """The checkout's short commit, marked when tracked files have uncommitted changes."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False, cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + (" (with uncommitted changes)" if dirty else "")


def has_sweep(db: str, sweep: str, n: int) -> bool:
    """Whether the database at `db` exists (with the n-job sweep: it is reused); False when there is no
    file (it is built); SystemExit when a file holds something else."""
    if not os.path.exists(db):
        return False
    with Store(db) as store:
        counts = store.counts(sweep).get(sweep)
    if counts is None or sum(counts.values()) != n:
        raise SystemExit(f"{db} exists without a {n:,}-job sweep {sweep!r}: pass another --db")
    return True
