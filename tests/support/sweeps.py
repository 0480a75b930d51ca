"""A small sweep with known outcomes, written through the Store API (no training): plots and reports
are checked against values computed here from the same formulas."""
from __future__ import annotations

from pathlib import Path

from runner.queue.store import JobOutcome, JobStatus, Store

SWEEP = "toy"
OTHER = "other"
LRS = (0.01, 0.1, 1.0)
WIDTHS = (16, 64)
SEEDS = (0, 1)
TRAIN_STEPS = (0, 10, 100, 1000)  # spans decades: a log x axis
TEST_STEPS = (0, 500, 1000)
DIVERGED = {(1.0, 64)}  # both seeds diverge: the heatmap cell is empty
FAILED = (1.0, 16, 1)  # one job fails (one attempt): its heatmap cell is partial
FIXED = {"batchfn": "gaussian_teacher", "model": "mlp", "steps": 1000, "thresholds": [0.1]}


def final_test(lr: float, width: int, seed: int) -> float:
    """The toy final test loss: spans decades over the grid."""
    return lr * width / 16 * (1 + seed)


def train_loss(lr: float, width: int, seed: int, step: int) -> float:
    """The toy train-loss curve: falls over steps spanning decades."""
    return final_test(lr, width, seed) * (1 + 100 / (1 + step))


def heldout_loss(lr: float, width: int, seed: int, step: int) -> float:
    """The toy test-loss curve (recorded as test_loss)."""
    return final_test(lr, width, seed) * (2 - step / 1000)


def step_at(lr: float, width: int, seed: int) -> int | None:
    """step_at_0.1: crossed only where the final test loss is small."""
    return 100 * (1 + seed) if final_test(lr, width, seed) < 0.5 else None


def status_of(lr: float, width: int, seed: int) -> JobStatus:
    """How the toy job ends."""
    if (lr, width) in DIVERGED:
        return JobStatus.DIVERGED
    return JobStatus.FAILED if (lr, width, seed) == FAILED else JobStatus.DONE


def _outcome(config: dict) -> JobOutcome:
    """What a worker would write back for this config."""
    lr, width, seed = config["lr"], config["width"], config["seed"]
    status = status_of(lr, width, seed)
    if status is JobStatus.FAILED:
        return JobOutcome(status, {}, error="Traceback (most recent call last):\n  File x\nValueError: boom")
    done = status is JobStatus.DONE
    steps = TRAIN_STEPS if done else TRAIN_STEPS[:2]  # a diverged run stops early
    metrics = [(s, "train_loss", train_loss(lr, width, seed, s)) for s in steps]
    metrics += [(s, "test_loss", heldout_loss(lr, width, seed, s)) for s in TEST_STEPS if done]
    summary = {"final_train_loss": final_test(lr, width, seed) / 2 if done else None,
               "final_test_loss": final_test(lr, width, seed) if done else None, "steps_run": steps[-1],
               "wall_s": 1.0 + seed, "device": "cpu", "host": "testhost", "precision": "fp32",
               "step_at_0.1": step_at(lr, width, seed) if done else None}
    return JobOutcome(status, summary, metrics, error=None if done else "non-finite train loss at step 11")


def configs() -> list[dict]:
    """The toy grid, one config per job."""
    return [{**FIXED, "lr": lr, "width": w, "seed": s} for lr in LRS for w in WIDTHS for s in SEEDS]


def make_db(path: Path) -> str:
    """The toy sweep (12 jobs: 9 done, 2 diverged, 1 failed) plus `other`: two pending jobs, only lr varies."""
    db = str(path)
    with Store(db, create=True) as store:
        jobs = configs()
        store.add_jobs(SWEEP, [(f"h{i}", c) for i, c in enumerate(jobs) if c != _failed_config()])
        store.add_jobs(SWEEP, [("failed", _failed_config())], max_attempts=1)
        store.add_jobs(OTHER, [(f"o{lr}", {**FIXED, "lr": lr, "width": 8, "seed": 0}) for lr in (0.05, 0.5)])
        while (job := store.claim("w", host="testhost", device="cpu", sweep=SWEEP)) is not None:
            store.finish(job.id, job.token, _outcome(job.config))
    return db


def _failed_config() -> dict:
    """The config of the job that fails."""
    lr, width, seed = FAILED
    return {**FIXED, "lr": lr, "width": width, "seed": seed}


def finished(lr: float, width: int, seed: int) -> bool:
    """Done, so the job has final values."""
    return status_of(lr, width, seed) is JobStatus.DONE


def mean(values: list[float]) -> float:
    """Plain arithmetic mean, as the plots compute it."""
    return sum(values) / len(values)
