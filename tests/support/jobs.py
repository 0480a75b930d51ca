"""Jobs shared by several tests: a slow job to catch mid-run, a stop after N steps, and the check that
two runs ended bit for bit alike."""
from __future__ import annotations

import numpy as np

SLOW = dict(batchfn="plugins_for_tests:slow_teacher", model="mlp", d=4, batch_size=8, width=8, n_test=16, eval_every=100)


class StopAfter:
    """should_stop that says yes after `n` steps (a SIGTERM arriving mid-run)."""

    def __init__(self, n: int, exc: type[BaseException] | None = None):
        self.n, self.calls, self.exc = n, 0, exc

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls >= self.n and self.exc is not None:
            raise self.exc(f"crash after {self.n} steps")
        return self.calls >= self.n


def same_results(a, b) -> None:
    """Bitwise-equal runs on one CPU process: same summary values, metric series and arrays."""
    skip = {"wall_s", "setup_s", "resumed_from_step"}  # timings and where it resumed
    assert {k: v for k, v in a.summary.items() if k not in skip} == {k: v for k, v in b.summary.items() if k not in skip}
    assert sorted(a.metrics) == sorted(b.metrics)
    assert [(n, s) for n, s, _ in a.arrays] == [(n, s) for n, s, _ in b.arrays]
    for (_, _, x), (_, _, y) in zip(a.arrays, b.arrays):
        np.testing.assert_array_equal(x, y)
