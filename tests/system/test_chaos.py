"""Chaos: workers killed with SIGKILL at random moments during a sweep; nothing is lost or doubled.

The quick variant runs in the default suite; the full one (200 jobs, >= 20 kills) is marked
`slow`, which `bash scripts/test.sh` (and so CI) also runs.
"""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.processes import cli_env, worker_pids

import runner
from runner.queue.store import Store


def _busy_workers(db: str) -> list[int]:
    """Pids of workers that hold a running job (read-only look at the store's tables)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return [r[0] for r in con.execute(
            "SELECT w.pid FROM jobs j JOIN workers w ON w.worker = j.worker WHERE j.status = 'running'")]
    finally:
        con.close()


def run_chaos(tmp_path: Path, show, jobs: int, kills: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    db = str(tmp_path / "jobs.db")
    steps = [rng.randrange(100, 900) for _ in range(jobs)]  # 0.2-1.8 s each at 2 ms a step
    runner.submit(dict(sweep="chaos", batchfn="plugins_for_tests:slow_teacher", model="mlp",
                       base=dict(d=4, batch_size=8, width=8, n_test=16, eval_every=100, delay=0.002, max_attempts=20),
                       zip=[dict(seed=list(range(jobs)), steps=steps)]), db=db)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "workers", "--devices", "cpu", "--per-device", "4",
                             "--db", db, "--quiet"], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    done_kills = aimed = 0
    try:
        while not _busy_workers(db) and proc.poll() is None:  # let the sweep get going first
            time.sleep(0.1)
        while done_kills < kills and proc.poll() is None:
            time.sleep(rng.uniform(1.0, 3.0))  # slower than a restart (~5 s on 2 busy cores) would starve it
            alive = worker_pids(proc.pid)
            busy = [p for p in _busy_workers(db) if p in alive]
            mid_job = bool(busy) and rng.random() < 0.8  # mostly mid-job, sometimes anywhere
            victims = busy if mid_job else alive
            if victims:
                try:
                    os.kill(rng.choice(victims), signal.SIGKILL)
                    done_kills += 1
                    aimed += mid_job
                except ProcessLookupError:
                    pass
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    wall = time.monotonic() - t0
    df = runner.results(db, sweep="chaos")
    store = Store(db)
    history = [a for j in df.job_id for a in store.attempt_rows(int(j))]
    result_rows = len(store.result_rows("chaos"))
    store.close()
    figures = {
        "jobs": jobs, "kills": done_kills, "kills_aimed_mid_job": aimed, "reruns": int(df.attempts.sum()) - jobs,
        "lost": int((df.status != "done").sum()), "duplicated": result_rows - df.job_id.nunique(),
        "attempts_lost_to_kills": sum(1 for a in history if a["outcome"] == "lost"),
        "wall_s": round(wall, 1), "exit": proc.returncode,
    }
    show("\nchaos figures: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    assert proc.returncode == 0, err[-2000:]
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert len(df) == jobs and df.seed.nunique() == jobs
    assert (df.steps_run == df.steps).all()  # every job ran to its end, none cut short
    assert figures["reruns"] == figures["attempts_lost_to_kills"]  # every extra attempt is a recorded kill
    return figures


def test_chaos_quick(tmp_path, show):
    # 40 jobs: enough work that the fifth kill comes well before the queue is empty (24 sometimes
    # ended after 4 once workers started faster).
    figures = run_chaos(tmp_path, show, jobs=40, kills=5, seed=1)
    assert figures["kills"] == 5


@pytest.mark.slow
def test_chaos_full(tmp_path, show):
    figures = run_chaos(tmp_path, show, jobs=200, kills=24, seed=2)
    assert figures["kills"] >= 20
