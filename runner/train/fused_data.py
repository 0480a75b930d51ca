"""A fused group's batches, stacked: every member's own data, drawn as it would be alone, handed to
the batched step as one [K, batch, ...] tensor per step with as few launches as the data allows.

Each member keeps its JobData (its generators, its training set, its sampler, its block of drawn
steps), which stays the authority for checkpoints; the group only reads it in bulk:

- offline, full batch: the members' training sets stacked once, the same tensors every step;
- offline, minibatches: each member's epoch permutation from its own generator (K launches an
  epoch), then one batched gather a step, X_k[perm_k[pos:pos + batch]] for every k at once;
- online with `draw_ahead` M > 1: each member draws M steps of rows in one call (K calls every M
  steps), the blocks stacked, each step a slice of them;
- online, one step at a time: each member's batch function every step, stacked (inside the CUDA
  graph where the batch functions can be captured).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .data import Batch, JobData


class GroupData:
    """The stacked batches of a group's members, step by step."""

    def __init__(self, data: Sequence[JobData]):
        self.data = list(data)
        self.first = self.data[0]
        self.full: Batch | None = None         # offline: the stacked training sets
        self.perms: torch.Tensor | None = None  # offline minibatches: the members' current permutations [K, n]
        self.block: Batch | None = None         # online draw_ahead: the members' stacked blocks
        self.rows = torch.arange(len(self.data), device=self.first.device)[:, None]

    @property
    def static(self) -> bool:
        """True when every step's batch is the same stacked tensors (offline, full batch)."""
        return self.first.X_train is not None and self.first.sampler_batch_size() is None

    @property
    def per_member_draws(self) -> bool:
        """True when each member's batch function runs every step (online, one step at a time)."""
        return self.first.X_train is None and self.first.o.draw_ahead == 1

    def next(self, step: int) -> Batch:
        """Every member's batch for `step`, stacked; each member's data advances as it would alone."""
        if self.first.X_train is not None:
            if self.full is None:
                self.full = (torch.stack([d.X_train for d in self.data]),  # type: ignore[misc]
                             torch.stack([d.y_train for d in self.data]))  # type: ignore[misc]
            bs = self.first.sampler_batch_size()
            return self.full if bs is None else self._minibatch(bs)
        if self.first.o.draw_ahead > 1:
            return self._from_blocks(step)
        return self.each(step)

    def each(self, step: int) -> Batch:
        """Every member's batch function called for this step, the batches stacked."""
        batches = [d.next_batch(step) for d in self.data]
        return torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])

    def _minibatch(self, bs: int) -> Batch:
        first = self.first.sampler
        if first.perm is None or first.pos + bs > first.n:  # type: ignore[union-attr]
            for d in self.data:  # a new epoch for all (one n, one batch size): each permutation from its own stream
                d.sampler.new_epoch(d.X_train.device)  # type: ignore[union-attr]
            self.perms = None
        if self.perms is None:  # (also after a resume: the members' restored permutations)
            self.perms = torch.stack([d.sampler.perm for d in self.data])  # type: ignore[union-attr, misc]
        pos = first.pos  # type: ignore[union-attr]
        for d in self.data:
            d.sampler.pos = pos + bs  # type: ignore[union-attr]
        idx = self.perms[:, pos:pos + bs]
        X, y = self.full  # type: ignore[misc]
        return X[self.rows, idx], y[self.rows, idx]

    def _from_blocks(self, step: int) -> Batch:
        first = self.first
        if first.block is None or first.block_pos >= first.o.draw_ahead:  # (None also after a batch-size change)
            for d in self.data:
                d.refill_block(step)
            self.block = None
        if self.block is None:  # (also after a resume: the members' restored blocks)
            self.block = (torch.stack([d.block[0] for d in self.data]),  # type: ignore[index]
                          torch.stack([d.block[1] for d in self.data]))  # type: ignore[index]
        i, bs = first.block_pos, first.online_batch_size
        for d in self.data:
            d.block_pos = i + 1
        X, y = self.block
        return X[:, i * bs:(i + 1) * bs], y[:, i * bs:(i + 1) * bs]
