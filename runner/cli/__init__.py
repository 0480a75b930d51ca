"""The `runner` command line. Every user mistake ends in one line on stderr and exit code 2.

    common    the main group, the --db and --sweep options, one-line user errors
    queue     submit, workers, cancel, retry, db upgrade: filling and working the queue
    reading   status, jobs, show, results: reading it in the terminal
    plots     plot curves|heatmap|scaling, report: figures and a markdown report of a sweep
    run       run: submit, work the sweep locally, print its results (and runner.run from Python)
    export    export tensorboard: a sweep as TensorBoard runs (tensorboard is an optional extra)

Importing the package registers every command on `main`, the console script (`runner.cli:main`)
and `python -m runner.cli`. Heavy imports (the store, pandas, matplotlib, torch) happen inside the
commands when they run, so `runner --help` stays quick.

May import: every part (results, pool, queue, train) and the base modules; nothing imports cli.
"""
from __future__ import annotations

from . import export, plots, queue, reading, run  # noqa: F401  (importing them registers their commands on main)
from .common import main

__all__ = ["main"]
