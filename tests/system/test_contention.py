"""Contention: submitter processes add grids while workers claim from the same SQLite file.

Everything goes through the real CLI in real processes: one `runner workers --wait` pool of 4
workers, and 8 submitters started together, each running `runner submit` several times in a row
(a new grid, the same grid again, a grown axis), so that submits overlap claims, heartbeats and
finishes. No "database is locked" may reach anyone and no job may be claimed twice.

The quick variant (2 submits each: about 80 s of CPU, so roughly a minute on 2 cores, mostly
16 + 5 processes importing torch) runs in the default suite; the bigger one (4 submits each) is marked `slow`,
which `bash scripts/test.sh` (and so CI) also runs.
"""
from __future__ import annotations

import itertools
import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.processes import cli_env, worker_pids

from runner.queue.store import Store

WORKERS = 4
LOCKED = ("database is locked", "stayed locked")  # SQLite's own text, and the store's message when it gives up
REPORT = re.compile(r"^sweep (\S+): (\d+) jobs, (\d+) added (?:to .*?(?:, (\d+) already there)?|\(all already in .*\))$",
                    re.MULTILINE)  # `runner submit`'s one line


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "runner.cli", *args]


def _grid_file(folder: Path, k: int) -> Path:
    """Submitter k's grid: its own sweep; every other one uses a batch function from an import path."""
    batchfn = "gaussian_teacher" if k % 2 == 0 else "plugins_for_tests:linear_teacher"
    path = folder / f"grid{k}.yaml"
    path.write_text(f"sweep: contention-{k}\nbatchfn: {batchfn}\nmodel: mlp\n"
                    "base: {d: 4, width: 4, batch_size: 16, n_test: 16, eval_every: 10}\n"
                    "grid:\n  steps: [20, 30]\n  seed: {range: [0, 4]}\n")
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # processes this one has waited for, and theirs
    return usage.ru_utime + usage.ru_stime


def _db_snapshot(db: str) -> dict[str, int]:
    """Jobs per status (a short read-only look, as a user's `runner status` would take)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    try:
        return dict(con.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
    finally:
        con.close()


def _wait_for_workers(db: str, pool: subprocess.Popen, n: int, timeout: float = 180) -> None:
    """Block until `n` workers have registered in the database (they are then ready to claim)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pool.poll() is None:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
        try:
            if con.execute("SELECT COUNT(*) FROM workers").fetchone()[0] >= n:
                return
        finally:
            con.close()
        time.sleep(0.2)
    raise AssertionError(f"{n} workers did not register within {timeout} s (pool exit code {pool.poll()})")


def _submitter(k: int, grid: Path, db: str, rounds: list[tuple[str, ...]], start: threading.Barrier,
               log: list[dict]) -> None:
    """One submitter: `runner submit` once per round, one after the other, each a fresh process."""
    start.wait()
    for i, overrides in enumerate(rounds):
        t0 = time.monotonic()
        proc = subprocess.run(_cli("submit", str(grid), *overrides, "--db", db), cwd=grid.parent, env=cli_env(),
                              capture_output=True, text=True, timeout=300)
        log.append(dict(submitter=k, round=i, rc=proc.returncode, out=proc.stdout, err=proc.stderr,
                        t0=t0, t1=time.monotonic()))


def run_contention(tmp_path: Path, capsys: pytest.CaptureFixture, submitters: int,
                   rounds: list[dict[str, list[int]]]) -> dict:
    """`rounds` are the axes (steps, seed) of each submitter's successive submits (CLI overrides of
    its grid file); a round equal to an earlier one must add nothing."""
    db = str(tmp_path / "jobs.db")
    Store(db, create=True).close()  # the workers need a database to wait on; racing schema creation is test_store's
    overrides = [tuple(f"{axis}={','.join(map(str, values))}" for axis, values in r.items()) for r in rounds]
    cells = [set(itertools.product(r["steps"], r["seed"])) for r in rounds]
    distinct = len(set().union(*cells))  # per submitter
    expected_jobs = submitters * distinct

    outputs = {name: (tmp_path / f"workers.{name}").open("w+") for name in ("out", "err")}
    t0, cpu0 = time.monotonic(), _children_cpu()
    pool = subprocess.Popen(_cli("workers", "--devices", "cpu", "--per-device", str(WORKERS), "--db", db, "--wait",
                                 "--quiet"), cwd=tmp_path, env=cli_env(), stdout=outputs["out"], stderr=outputs["err"],
                            text=True, start_new_session=True)
    log: list[dict] = []
    start = threading.Barrier(submitters)
    threads = [threading.Thread(target=_submitter, args=(k, _grid_file(tmp_path, k), db, overrides, start, log))
               for k in range(submitters)]
    try:
        # Submits start once every worker has registered (which it does after importing torch), so
        # claims overlap the submits even on a slow machine where 4 spawned workers take long to start.
        _wait_for_workers(db, pool, WORKERS)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=400)
        submits_done = time.monotonic()
        assert not any(t.is_alive() for t in threads), "a submitter hung"
        # every submitted job done, with the pool still up (it waits, it never exits by itself)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and pool.poll() is None:
            counts = _db_snapshot(db)
            if counts.get("done", 0) == sum(counts.values()) >= expected_jobs:
                break
            time.sleep(0.2)
        drained = time.monotonic()
        alive_before_stop = worker_pids(pool.pid)
        pool.send_signal(signal.SIGTERM)
        pool.wait(timeout=120)
    finally:
        if pool.poll() is None:
            os.killpg(pool.pid, signal.SIGKILL)
            pool.wait()
    wall, cpu = time.monotonic() - t0, _children_cpu() - cpu0
    still_alive = [p for p in alive_before_stop if Path(f"/proc/{p}").exists()]
    for f in outputs.values():
        f.seek(0)
    pool_out, pool_err = (outputs[n].read() for n in ("out", "err"))
    for f in outputs.values():
        f.close()

    # what the database says, read-only
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    try:
        jobs = con.execute("SELECT id, sweep, status, token, attempts FROM jobs").fetchall()
        per_job = dict(con.execute("SELECT job_id, COUNT(*) FROM attempts GROUP BY job_id").fetchall())
        attempts = con.execute("SELECT job_id, token, outcome, ended_at FROM attempts").fetchall()
        results = dict(con.execute("SELECT job_id, COUNT(*) FROM results GROUP BY job_id").fetchall())
        registry = con.execute("SELECT worker, exited_at FROM workers").fetchall()
        # claims made while the submitters were still adding jobs (between the first and the last insert)
        during = con.execute("SELECT COUNT(*) FROM attempts WHERE started_at BETWEEN "
                             "(SELECT MIN(created_at) FROM jobs) AND (SELECT MAX(created_at) FROM jobs)").fetchone()[0]
    finally:
        con.close()

    texts = [pool_out, pool_err] + [s[key] for s in log for key in ("out", "err")]
    locked = sum(t.lower().count(word) for t in texts for word in LOCKED)
    tracebacks = sum(t.count("Traceback") for t in texts)
    reports = [(s, REPORT.search(s["out"])) for s in log]
    added = sum(int(m.group(3)) for _, m in reports if m)
    claimed_twice = sum(1 for j in jobs if per_job.get(j[0], 0) > 1 or j[3] > 1 or j[4] > 1)
    overlap_s = max(s["t1"] for s in log) - min(s["t0"] for s in log)
    figures = {
        "submitters": submitters, "submissions": len(log), "jobs": len(jobs), "workers": len(registry),
        "claims": len(attempts), "claims_while_submitting": during, "claimed_twice": claimed_twice,
        "locked_errors": locked, "tracebacks": tracebacks,
        "not_done": sum(1 for j in jobs if j[2] != "done"), "submit_span_s": round(overlap_s, 1),
        "drain_after_submits_s": round(drained - submits_done, 1), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "submit_s_mean": round(sum(s["t1"] - s["t0"] for s in log) / max(1, len(log)), 1), "exit": pool.returncode,
    }
    with capsys.disabled():  # shown by plain pytest too, not only with -s
        print("\ncontention figures: " + ", ".join(f"{k} {v}" for k, v in figures.items()), flush=True)

    failed = [s for s in log if s["rc"] != 0]
    assert not failed, "a submit failed:\n" + "\n".join(f"submitter {s['submitter']} round {s['round']} exit {s['rc']}: "
                                                       f"{s['err'][-1500:]}" for s in failed)
    assert locked == 0 and tracebacks == 0, "\n---\n".join(t[-3000:] for t in texts if "Traceback" in t
                                                          or any(w in t.lower() for w in LOCKED))
    assert len(log) == submitters * len(rounds)
    assert during > 0, "no claim overlapped the submits: the test did not test contention"
    # the submit reports add up: each round's cells were all there after it, and nothing was added twice
    for s, m in reports:
        assert m, f"submit printed no report: {s['out']!r}"
        total, new = int(m.group(2)), int(m.group(3))
        there = int(m.group(4)) if m.group(4) else total if new == 0 else 0
        assert total == len(cells[s["round"]]) and new + there == total, s["out"]
        if cells[s["round"]] <= set().union(*cells[:s["round"]]):  # a grid submitted before, again
            assert new == 0, f"a repeated submit added jobs: {s['out']}"
    assert added == len(jobs) == expected_jobs
    assert len({j[1] for j in jobs}) == submitters
    # every job done, claimed exactly once, one results row
    assert figures["not_done"] == 0, _db_snapshot(db)
    assert claimed_twice == 0
    assert len(attempts) == len(jobs) and all(a[1] == 1 and a[2] == "done" and a[3] is not None for a in attempts)
    assert set(results) == {j[0] for j in jobs} and set(results.values()) == {1}
    # the pool stopped cleanly on SIGTERM: no worker died or lingered, all four marked exited
    assert pool.returncode == 0, pool_err[-3000:]
    assert "died" not in pool_err, pool_err[-3000:]
    assert len(alive_before_stop) == WORKERS and not still_alive
    assert len(registry) == WORKERS and all(r[1] is not None for r in registry), registry
    return figures


def test_contention_quick(tmp_path, capsys):
    """8 submitters x 2 submits (a grid, then the grid grown) against 4 waiting workers."""
    figures = run_contention(tmp_path, capsys, submitters=8, rounds=[
        dict(steps=[20, 30], seed=list(range(6))),
        dict(steps=[20, 30], seed=list(range(10))),   # 8 new cells, 12 already there
    ])
    assert figures["jobs"] == 8 * 20


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_contention_full(tmp_path, capsys):
    """8 submitters x 4 submits: a grid, the same grid again (adds 0), an axis grown, a new axis value."""
    figures = run_contention(tmp_path, capsys, submitters=8, rounds=[
        dict(steps=[20, 30], seed=list(range(10))),
        dict(steps=[20, 30], seed=list(range(10))),   # the same again: nothing added
        dict(steps=[20, 30], seed=list(range(16))),   # 12 new cells
        dict(steps=[40], seed=list(range(8))),        # 8 new cells
    ])
    assert figures["jobs"] == 8 * 40
