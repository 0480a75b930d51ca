"""runner: hyperparameter sweeps of small networks, from a YAML grid to a DataFrame.

    df = runner.run("grid.yaml")               # submit, train on this machine's devices, the results
    runner.submit("grid.yaml")                 # grid -> jobs in jobs.db (wait=True: block, return the results)
    df = runner.results("jobs.db", sweep="x")  # one row per job
    g = runner.grid_array("jobs.db", sweep="x", axes=["lr", "seed"])  # masked array on the grid
    out = runner.train({...})                  # one job inline, no queue

Importing runner does not import torch: spawned workers must set CUDA_VISIBLE_DEVICES first.

Layout (imports point one way, checked by tests/unit/test_layout.py):

    runner.cli      the click commands                      -> api, results, pool, queue, train, base
    runner.api      entry points across layers (load_model, connectivity, trajectory, loss_slice) -> results, pool, queue, train, base
    runner.results  reading, tables, views, plots, reports  -> queue, base
    runner.pool     supervisor, worker entry, devices, MPS  -> queue, train, base
    runner.queue    grid files, submission, the store (SQL) -> train, base
    runner.train    the loop and its parts                  -> base
    base            errors, registry, plugin_policy, builtin_signatures, signing, hashing, npy, text (modules
                    directly in runner/): import no subpackage

`runner.train` and `runner.results` are packages that can be called like the functions they are named
after (runner/_callable.py).
"""
from __future__ import annotations

from typing import Any

from .errors import RunnerError, UserError
from .registry import batchfn, grab, model

__all__ = ["submit", "run", "load_model", "connectivity", "trajectory", "loss_slice", "results", "curves", "grid_array", "GridArray", "arrays", "train", "batchfn", "grab", "model",
           "RunnerError", "UserError"]
__version__ = "0.1.0"

_LAZY = {  # name -> (module, attribute); attribute None: the module itself (a callable package)
    "submit": ("runner.results.waiting", "submit"),
    "run": ("runner.cli.run", "run"),
    "load_model": ("runner.api.models", "load_model"),
    "connectivity": ("runner.api.landscape", "connectivity"),
    "trajectory": ("runner.api.landscape", "trajectory"),
    "loss_slice": ("runner.api.landscape", "loss_slice"),
    "results": ("runner.results", None),
    "curves": ("runner.results.reading", "curves"),
    "arrays": ("runner.results.reading", "arrays"),
    "grid_array": ("runner.results.reading", "grid_array"),
    "GridArray": ("runner.results.reading", "GridArray"),
    "train": ("runner.train", None),
    "TrainResult": ("runner.train.loop", "TrainResult"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = importlib.import_module(module)
        value = value if attr is None else getattr(value, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'runner' has no attribute {name!r}")
