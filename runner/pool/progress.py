"""Live progress of a worker pool: per device done, running, throughput, and the sweep's ETA."""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ..queue.states import JobStatus
from ..text import format_duration


class Progress:
    """Redraws a small table on a terminal; prints a line now and then when output is a file."""

    def __init__(self, store: Any, sweep: str | None, devices: list[str], *, enabled: bool = True, stream: TextIO | None = None):
        self.store, self.sweep, self.devices = store, sweep, devices
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.enabled = enabled
        self.interval = 1.0 if self.tty else 0.5
        self.print_every = 1.0 if self.tty else 30.0
        self.started = time.time()
        self.since: float | None = None  # the start on the database's clock, which finish times are on
        self.last_print = 0.0
        self.drawn = 0

    def lines(self) -> list[str]:
        now = time.time()
        elapsed = max(now - self.started, 1e-9)
        if self.since is None:
            self.since = self.store.clock() - (now - self.started)
        per_device = {row["device"]: row for row in self.store.device_counts(self.sweep, since=self.since)}
        totals: dict[str, int] = {}
        for counts in self.store.counts(self.sweep).values():
            for state, n in counts.items():
                totals[state] = totals.get(state, 0) + n
        finished_now = sum(r["finished_since"] for r in per_device.values())
        rate = finished_now / elapsed
        remaining = totals.get(JobStatus.PENDING.value, 0) + totals.get(JobStatus.RUNNING.value, 0)
        eta = remaining / rate if rate > 0 else None
        out = []
        for label in self.devices:
            row = per_device.get(label, {"done": 0, "running": 0, "finished_since": 0})
            dev_rate = row["finished_since"] / elapsed
            out.append(f"  {label:<8} done {row['done']:>6}  running {row['running']:>3}  {dev_rate * 3600:>9.0f} jobs/h")
        state = "  ".join(f"{s} {totals[s.value]}" for s in JobStatus if totals.get(s.value))
        out.append(f"  {state or 'no jobs'}   elapsed {format_duration(elapsed)}   ETA {format_duration(eta)}")
        return out

    def keep_above(self) -> None:
        """Something was just printed below the table (the stop message): the next redraw starts
        under it instead of moving the cursor back over it, so the message stays on the screen."""
        self.drawn = 0

    def update(self, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.time()
        if not final and now - self.last_print < self.print_every:
            return
        self.last_print = now
        try:
            lines = self.lines()
        except Exception:  # a busy database must never break the pool
            return
        if self.tty and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F")
        for line in lines:
            self.stream.write(("\x1b[2K" if self.tty else "") + line + "\n")
        self.stream.flush()
        self.drawn = len(lines) if self.tty else 0
