"""When things happen: the "every N steps" test and the learning rate at every step."""
from __future__ import annotations

import math

import torch

from .options import TrainOptions


def every(n: int | None, step: int) -> bool:
    """True on the steps that are multiples of `n`; never when `n` is 0 (or unset: None)."""
    return n is not None and n > 0 and step % n == 0


class LrPlan:
    """The learning rate at every step: the config's lr, replaced by scheduled changes, times the
    schedule (constant, step decay, cosine to min_lr). Applied as a factor on each parameter
    group's own initial lr, so muP optimizers keep their per-group width scaling."""

    def __init__(self, o: TrainOptions, optimizer: torch.optim.Optimizer | None = None):
        self.o, self.optimizer = o, optimizer  # no optimizer: lr(step) only (a fused group sets its own)
        self.initial = [g["lr"] for g in optimizer.param_groups] if optimizer is not None else []
        self.changes = [(c.at, c.lr) for c in o.changes if c.lr is not None]
        step_size = o.step_size if o.schedule == "step" else None
        self.every_step = o.schedule == "cosine"
        self.steps = {at for at, _ in self.changes} | (set(range(step_size, o.steps, step_size)) if step_size else set())

    @property
    def varies(self) -> bool:
        return self.every_step or bool(self.steps)

    def lr(self, step: int) -> float:
        o = self.o
        base = o.lr
        for at, lr in self.changes:
            if at <= step:
                base = lr
        if o.schedule == "step":
            return base * o.step_gamma ** (step // o.step_size)  # type: ignore[operator]  # plan checks step_size
        if o.schedule == "cosine":
            return o.min_lr + (base - o.min_lr) * 0.5 * (1 + math.cos(math.pi * step / max(1, o.steps)))
        return base

    def apply(self, step: int) -> None:
        assert self.optimizer is not None, "an LrPlan without an optimizer only computes lr(step)"
        factor = self.lr(step) / self.o.lr
        for group, initial in zip(self.optimizer.param_groups, self.initial):
            group["lr"] = initial * factor
