"""A sweep of every kind of value and outcome for the TensorBoard export, written through the Store
API (no training), and an export's runs read back with tensorboard's own EventAccumulator."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner.hashing import config_hash
from runner.queue.store import JobOutcome, JobStatus, Store

SWEEP = "mixed"
AXES = ["lr", "act", "widths", "bn"]  # what the grid recorded: `note` is the same in every job
STEPS = (0, 1, 300, 100_000)          # 1-, 2- and 3-byte step varints
HUGE = 1e39                           # beyond float32: TensorBoard holds it as inf
# how each job ends, by position: 7 finished, one left running, one pending
ENDS = ["done"] * 5 + ["diverged", "failed", "running", "pending"]


def configs() -> list[dict]:
    """Nine jobs: float, string, list and bool axes, one key constant, lr=1.0 only in the unfinished."""
    cells = [{"model": "mlp", "lr": lr, "act": act, "widths": w, "bn": bn, "note": "same"}
             for lr in (0.1, 0.3) for act in ("relu", "tanh") for w, bn in (([8, 8], True), ([16], False))]
    return cells + [{**cells[0], "lr": 1.0}]


def points(i: int) -> list[tuple[int, str, float]]:
    """The curves job i (0-based) writes: train_loss at every step, test_loss at the first and last."""
    if ENDS[i] == "diverged":
        return [(0, "train_loss", 1.0), (1, "train_loss", 5.0), (300, "train_loss", HUGE)]
    if ENDS[i] != "done":
        return []
    train = [(s, "train_loss", 1.0 / (1 + i + s)) for s in STEPS]
    return train + [(s, "test_loss", 1.5 / (1 + i + s)) for s in (STEPS[0], STEPS[-1])]


def summary(i: int) -> dict[str, Any]:
    """A worker-shaped summary: losses, steps, wall time, a numeric grab value and text values."""
    where = {"device": "cpu", "host": "testhost", "precision": "fp32", "cuda_visible_devices": "0"}
    if ENDS[i] == "diverged":
        return {**where, "final_train_loss": None, "final_test_loss": None, "steps_run": 300, "wall_s": 0.5,
                "diverged_at": 300}
    return {**where, "final_train_loss": 0.5 / (1 + i), "final_test_loss": 0.75 / (1 + i), "steps_run": STEPS[-1],
            "wall_s": 2.0 + i, "final_weight_norm": 10.0 + i, "step_at_0.1": None if i % 2 else 300}


def make_db(path: Path) -> str:
    """The mixed sweep (ENDS says how each job ends) plus a second sweep `other` of one done job."""
    db = str(path)
    with Store(db, create=True) as store:
        store.add_jobs(SWEEP, [(config_hash(c), c) for c in configs()], axes=AXES, max_attempts=1)
        for i, end in enumerate(ENDS):
            if end == "pending":
                continue
            job = store.claim("w", host="testhost", device="cpu", sweep=SWEEP, lease_s=3600)
            assert job is not None and job.id == i + 1
            if end == "running":
                continue
            status = JobStatus(end)
            store.finish(job.id, job.token, JobOutcome(status, summary(i) if end != "failed" else {}, points(i),
                                                       error=None if end == "done" else f"{end}: boom"))
        store.add_jobs("other", [("o", {"lr": 0.5})])
        job = store.claim("w", host="testhost", device="cpu", sweep="other")
        store.finish(job.id, job.token, JobOutcome(JobStatus.DONE, {"final_test_loss": 1.0}, [(0, "test_loss", 1.0)]))
    return db


def as_float32(value: float | None) -> float:
    """A value as TensorBoard holds it (float32, beyond its range +-inf)."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@dataclass
class Run:
    """One run read back: scalars by tag as [(step, value)], hparams session start, session end status."""
    scalars: dict[str, list[tuple[int, float]]]
    hparams: dict[str, Any]
    status: str | None
    experiment: Any = None


def read_run(folder: Path) -> Run:
    """Every event of the event files directly in `folder`, through tensorboard's EventAccumulator (which
    checks each record's CRC32C)."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.plugins.hparams import api_pb2, metadata

    acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]}

    def plugin_data(tag: str) -> bytes | None:
        return acc.SummaryMetadata(tag).plugin_data.content if tag in tags["tensors"] else None

    start = plugin_data(metadata.SESSION_START_INFO_TAG)
    hparams = {}
    if start is not None:
        info = metadata.parse_session_start_info_plugin_data(start)
        hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}
    end = plugin_data(metadata.SESSION_END_INFO_TAG)
    status = api_pb2.Status.Name(metadata.parse_session_end_info_plugin_data(end).status) if end else None
    experiment = plugin_data(metadata.EXPERIMENT_TAG)
    return Run(scalars, hparams, status,
               metadata.parse_experiment_plugin_data(experiment) if experiment is not None else None)
