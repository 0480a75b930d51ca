"""runner: hyperparameter sweeps of small networks, from a YAML grid to a DataFrame.

    runner.submit("grid.yaml")                 # grid -> jobs in jobs.db
    df = runner.results("jobs.db", sweep="x")  # one row per job
    g = runner.grid_array("jobs.db", sweep="x", axes=["lr", "seed"])  # masked array on the grid
    out = runner.train({...})                  # one job inline, no queue

Importing runner does not import torch: spawned workers must set CUDA_VISIBLE_DEVICES first.
"""
from __future__ import annotations

from typing import Any

from .errors import RunnerError, UserError
from .registry import batchfn, grab, model

__all__ = ["submit", "results", "curves", "grid_array", "GridArray", "arrays", "train", "batchfn", "grab", "model",
           "RunnerError", "UserError"]
__version__ = "0.1.0"

_LAZY = {
    "submit": ("runner.submission", "submit"),
    "results": ("runner.reading", "results"),
    "curves": ("runner.reading", "curves"),
    "arrays": ("runner.reading", "arrays"),
    "grid_array": ("runner.reading", "grid_array"),
    "GridArray": ("runner.reading", "GridArray"),
    "train": ("runner.trainloop", "train"),
    "TrainResult": ("runner.trainloop", "TrainResult"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'runner' has no attribute {name!r}")
