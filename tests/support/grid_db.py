"""A small lr x width x seed sweep written through the Store API, as workers write it: one job
failed, one cell never submitted, optionally one job left running. Every value read back is known."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import runner
from runner.hashing import config_hash
from runner.npy import to_npy
from runner.queue.store import JobOutcome, JobStatus, Store

SWEEP = "grid"
STEPS = (0, 10, 20)
MISSING = {"lr": 0.1, "width": 8, "seed": 1}     # never submitted: a hole in the grid
FAILS = {"lr": 0.01, "width": 16, "seed": 1}      # fails on its only attempt
RUNS = {"lr": 0.01, "width": 16, "seed": 0}       # claimed and left running (running sweep only)
TRACEBACK = 'Traceback (most recent call last):\n  File "job.py", line 3, in train\nValueError: boom\n'
WORKER = "testhost/4242/cpu/0.0"


def config(lr: float, width: int, seed: int) -> dict:
    return {"lr": lr, "width": width, "seed": seed, "steps": STEPS[-1]}


def loss(c: dict) -> float:
    """The final test loss job c reports: distinct per cell."""
    return round(c["lr"] * 10 + c["width"] / 100 + c["seed"] / 1000, 6)


def curve(c: dict, step: int) -> float:
    return loss(c) * (3 - step / 10)


def grid_configs() -> list[dict]:
    cells = [config(lr, w, s) for lr in (0.1, 0.01) for w in (8, 16) for s in (0, 1)]
    return [c for c in cells if {k: c[k] for k in MISSING} != MISSING]


def outcome(c: dict) -> JobOutcome:
    where = {"device": "cpu", "host": "testhost", "cuda_visible_devices": ""}
    if all(c[k] == v for k, v in FAILS.items()):
        return JobOutcome(JobStatus.FAILED, {**where, "wall_s": 0.25}, error=TRACEBACK)
    summary = {"final_train_loss": loss(c) * 0.9, "final_test_loss": loss(c), "steps_run": STEPS[-1], "wall_s": 1.5,
               "precision": "fp32", "step_at_0.5": 10, **where}
    metrics = [(s, name, curve(c, s) * k) for s in STEPS for name, k in (("test_loss", 1.0), ("train_loss", 0.9))]
    return JobOutcome(JobStatus.DONE, summary, metrics, arrays=[("w", s, to_npy(np.arange(3.0) * s)) for s in (0, 20)])


def build(path: Path | str, *, running: bool) -> str:
    """A sweep of 7 jobs (one cell of the 2x2x2 grid missing) with known outcomes; running=True
    leaves one job claimed and unfinished (its worker alive) and nothing else pending. path: a
    SQLite file or a database URL."""
    db = str(path)
    store = Store(db, create=True)
    try:
        store.add_jobs(SWEEP, [(config_hash(c), c) for c in grid_configs()], max_attempts=1)
        store.register_worker(WORKER, host="testhost", pid=4242, device="cpu")
        held = None
        while (job := store.claim(WORKER, host="testhost", device="cpu")) is not None:
            if running and all(job.config[k] == v for k, v in RUNS.items()):
                held = job
                continue
            store.finish(job.id, job.token, outcome(job.config))
        if running:
            store.worker_seen(WORKER, job_id=held.id)
        else:
            store.worker_exited(WORKER)
    finally:
        store.close()
    return db


def job_id_of(db: str, cell: dict) -> int:
    df = runner.results(db, sweep=SWEEP)
    return int(df[(df.lr == cell["lr"]) & (df.width == cell["width"]) & (df.seed == cell["seed"])].job_id.iloc[0])
