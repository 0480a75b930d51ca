"""What the benchmarks that build a synthetic sweep share: the machine and git revision their table
header names, and a kept --db reused when it holds the sweep they would build. Imported as
`benchmarks.synthetic` once a script has put the repository root on sys.path (this folder holds
queue.py, which must not shadow the standard library's `queue`)."""
from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Callable

from runner.queue.store import Store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine(cpu_model: str | None = None) -> str:
    """'Linux-..., 2 CPUs (model); load avg 0.31 1.16 1.37; Python 3.11.7': where a table was measured,
    and how busy the machine was (on a shared one the load says how far to trust the seconds)."""
    load = " load avg {:.2f} {:.2f} {:.2f};".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    model = f" ({cpu_model})" if cpu_model else ""
    return f"{platform.platform()}, {os.cpu_count()} CPUs{model};{load} Python {platform.python_version()}"


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


def ready(db: str, sweep: str, n: int, build: Callable[[str, int], float]) -> None:
    """The n-job sweep in the database at `db`: reused when a kept --db holds it (has_sweep), else
    built by build(db, n) (its seconds); says which, outside what is timed."""
    if has_sweep(db, sweep, n):
        print(f"  reusing the {n:,}-job sweep in {db}", flush=True)
    else:
        print(f"  built a {n:,}-job sweep in {build(db, n):.1f} s (not timed below)", flush=True)
