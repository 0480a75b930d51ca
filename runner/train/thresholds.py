"""Loss bookkeeping done on the host, one chunk of per-step losses at a time.

The trainloop never reads a loss per step (that would synchronise with the GPU every step);
it hands chunks of losses here, and the result is exactly what a step-by-step reading gives.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def threshold_column(threshold: float) -> str:
    """Summary column for a threshold: step_at_0.01, step_at_1e-05."""
    return f"step_at_{threshold:g}"


class LossTracker:
    """Smoothed train loss (EMA), first crossing step of each threshold, first non-finite step."""

    def __init__(self, thresholds: Sequence[float], ema: float):
        self.thresholds = list(thresholds)
        self.ema = ema
        self.smoothed: float | None = None
        self.crossed: dict[float, int | None] = {t: None for t in self.thresholds}
        self.nonfinite_at: int | None = None

    @property
    def all_crossed(self) -> bool:
        return bool(self.thresholds) and all(s is not None for s in self.crossed.values())

    def update(self, losses: np.ndarray, first_step: int) -> None:
        """Feed the losses of steps first_step, first_step+1, ... (stops at a non-finite one)."""
        finite = np.isfinite(losses)
        if not finite.all():
            bad = int(np.argmin(finite))
            self.nonfinite_at = first_step + bad
            losses = losses[:bad]
        if not self.thresholds:
            return
        open_ = [t for t in self.thresholds if self.crossed[t] is None]
        if not open_:
            return
        s, beta = self.smoothed, self.ema
        highest = max(open_)
        for i, loss in enumerate(losses.tolist()):
            s = loss if s is None else beta * s + (1.0 - beta) * loss
            if s < highest:
                for t in [t for t in open_ if s < t]:
                    self.crossed[t] = first_step + i
                open_ = [t for t in open_ if self.crossed[t] is None]
                if open_:
                    highest = max(open_)
                else:
                    # keep smoothing the rest so `smoothed` stays exact
                    for rest in losses[i + 1 :].tolist():
                        s = beta * s + (1.0 - beta) * rest
                    break
        self.smoothed = s

    def state(self) -> dict[str, object]:
        """Plain values to continue tracking after a resume (stored in checkpoints)."""
        return {"smoothed": self.smoothed, "crossed": [[t, s] for t, s in self.crossed.items()],
                "nonfinite_at": self.nonfinite_at}

    def restore(self, state: dict[str, object]) -> None:
        self.smoothed = state["smoothed"]  # type: ignore[assignment]
        self.crossed.update({float(t): s for t, s in state["crossed"]})  # type: ignore[union-attr]
        self.nonfinite_at = state["nonfinite_at"]  # type: ignore[assignment]

    def summary(self) -> dict[str, int | None]:
        return {threshold_column(t): step for t, step in self.crossed.items()}


def crossings_since(tracker: LossTracker, first: int) -> tuple[list[int], int | None]:
    """After a chunk from step `first` was tracked: the steps in it at which a threshold was first
    crossed, and the step the last one was crossed if that is in it (where stop_on_thresholds ends)."""
    steps = sorted({s for s in tracker.crossed.values() if s is not None and s >= first})
    last = max(tracker.crossed.values()) if tracker.all_crossed else None  # type: ignore[type-var]
    return steps, last if last is not None and last >= first else None


def finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None
