"""The read side: a sweep's results as frames, arrays, terminal views, figures and reports.

    runner.results(db, sweep)   # one row per job: calls runner.results.reading.results

Lives here: the sweep opened once for reading (sweep), frames and arrays (reading), results shaped
for figures (tables), plain-text views for `runner jobs/show/status` (views), figures (plots),
markdown reports (report) and TensorBoard runs (tensorboard, written through tfevents).

May import: runner.queue (the store it reads through) and the base modules; never pool, train or
cli. Read-only: nothing here writes to the database.
"""
from __future__ import annotations

from .._callable import make_callable

make_callable(__name__, "runner.results.reading:results",
              "One row per job as a DataFrame (runner.results.reading.results).")
