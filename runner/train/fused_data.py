"""A fused group's batches, stacked: every member's own data, drawn as it would be alone, handed to
the batched step as one [K, batch, ...] tensor per step with as few launches as the data allows.

Each member keeps its JobData (its generators, its training set, its sampler, its block of drawn
steps), which stays the authority for checkpoints; the group only reads it in bulk. Members whose
data is the same (one batch function with the same parameters and the same data seeds: a sweep's
learning rates at one seed) hold one JobData between them, drawn once for all of them (`unique`):

- offline, full batch: the members' training sets stacked once, the same tensors every step;
- offline, minibatches: each member's epoch permutation from its own generator (K launches an
  epoch), then one batched gather a step, X_k[perm_k[pos:pos + batch]] for every k at once;
- online with `draw_ahead` M > 1: each member draws M steps of rows in one call (K calls every M
  steps), the blocks stacked, each step a slice of them;
- online, one step at a time: each member's batch function every step, stacked (inside the CUDA
  graph where the batch functions can be captured). On a GPU the members' draws are spread over
  DRAW_STREAMS streams: each draw is a handful of small kernels, and run one after another they left
  the GPU idle (measured on an H200, per model-step of a captured group: moons width 32, K=1024,
  38.7 us on one stream, 19.1 on 4, 14.7 on 16, 13.7 on 32; standard workload width 256, K=256,
  46.5 us on one, about 37 on 4 or more, where the batched model's own step is 21).
"""
from __future__ import annotations

import threading
from typing import Sequence

import torch

from .data import Batch, JobData

DRAW_STREAMS = 16  # streams the members' per-step draws are spread over on a GPU
_STREAMS: dict[tuple[torch.device, int], list[torch.cuda.Stream]] = {}


def _draw_streams(device: torch.device) -> list[torch.cuda.Stream]:
    """The draw streams of this thread and device, made once (streams are not freed, so not made per group)."""
    key = (device, threading.get_ident())
    if key not in _STREAMS:
        _STREAMS[key] = [torch.cuda.Stream(device) for _ in range(DRAW_STREAMS)]
    return _STREAMS[key]


class GroupData:
    """The stacked batches of a group's members, step by step."""

    def __init__(self, data: Sequence[JobData]):
        self.data = list(data)
        self.unique = list({id(d): d for d in self.data}.values())  # what is drawn: a shared JobData once
        self.first = self.data[0]
        self.full: Batch | None = None         # offline: the stacked training sets
        self.tests: Batch | None = None        # the stacked test sets (what every evaluation reads)
        self.perms: torch.Tensor | None = None  # offline minibatches: the members' current permutations [K, n]
        self.block: Batch | None = None         # online draw_ahead: the members' stacked blocks
        self.rows = torch.arange(len(self.data), device=self.first.device)[:, None]
        self.behind = False  # online draw_ahead: only the first member's block position advanced (see sync)

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
            bs = self.first.sampler_batch_size()
            return self.train_set() if bs is None else self._minibatch(bs)  # type: ignore[return-value]
        if self.first.o.draw_ahead > 1:
            return self._from_blocks(step)
        return self.each(step)

    def train_set(self) -> Batch | None:
        """Offline: every member's training set, stacked once (None online)."""
        if self.full is None and self.first.X_train is not None:
            self.full = self._stacked("X_train", "y_train")
        return self.full

    def test_set(self) -> Batch | None:
        """Every member's test set, stacked once (None without one): evaluations read the stack, not
        K tensors stacked again each time."""
        if self.tests is None and self.first.X_test is not None:
            self.tests = self._stacked("X_test", "y_test")
        return self.tests

    def _stacked(self, x: str, y: str) -> Batch:
        """The members' tensors `x` and `y` stacked; each member's become views of its row of the
        stack, so the group holds one copy (grabs and checkpoints read the views as before)."""
        X, Y = torch.stack([getattr(d, x) for d in self.data]), torch.stack([getattr(d, y) for d in self.data])
        for i, d in enumerate(self.data):
            setattr(d, x, X[i])
            setattr(d, y, Y[i])
        return X, Y

    def sync(self) -> None:
        """Bring every member's block position up to the group's, before a member's data is read or
        saved on its own (a final evaluation, a checkpoint)."""
        if self.behind:
            for d in self.unique:
                d.block_pos = self.first.block_pos
            self.behind = False

    def each(self, step: int) -> Batch:
        """Every member's batch function called for this step, the batches stacked. On a GPU the calls
        go round-robin to the draw streams, forked from and joined back to the current stream (inside a
        CUDA graph too: the captured draws become parallel branches). Each member draws from its own
        generator, so which stream runs it changes no value."""
        if self.first.device.type != "cuda" or len(self.unique) < 2:
            drawn = {id(d): d.next_batch(step) for d in self.unique}
        else:
            current = torch.cuda.current_stream(self.first.device)
            streams = _draw_streams(self.first.device)
            for s in streams:
                s.wait_stream(current)  # also: last step's batches were read before their memory is reused
            drawn = {}
            for i, d in enumerate(self.unique):
                with torch.cuda.stream(streams[i % len(streams)]):
                    drawn[id(d)] = d.next_batch(step)
            for s in streams:
                current.wait_stream(s)
        batches = [drawn[id(d)] for d in self.data]
        return torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])

    def _minibatch(self, bs: int) -> Batch:
        first = self.first.sampler
        if first.perm is None or first.pos + bs > first.n:  # type: ignore[union-attr]
            for d in self.unique:  # a new epoch for all (one n, one batch size): each permutation from its own stream
                d.sampler.new_epoch(d.X_train.device)  # type: ignore[union-attr]
            self.perms = None
        if self.perms is None:  # (also after a resume: the members' restored permutations)
            self.perms = torch.stack([d.sampler.perm for d in self.data])  # type: ignore[union-attr, misc]
        pos = first.pos  # type: ignore[union-attr]
        for d in self.unique:
            d.sampler.pos = pos + bs  # type: ignore[union-attr]
        idx = self.perms[:, pos:pos + bs]
        X, y = self.train_set()  # type: ignore[misc]  # (a resume's first step comes before any evaluation)
        return X[self.rows, idx], y[self.rows, idx]

    def _from_blocks(self, step: int) -> Batch:
        first = self.first
        if first.block is None or first.block_pos >= first.o.draw_ahead:  # (None also after a batch-size change)
            self.behind = False  # every member's position restarts at 0
            for d in self.unique:
                d.refill_block(step)
            self.block = None
        if self.block is None:  # (also after a resume: the members' restored blocks)
            self.block = (torch.stack([d.block[0] for d in self.data]),  # type: ignore[index]
                          torch.stack([d.block[1] for d in self.data]))  # type: ignore[index]
        i, bs = first.block_pos, first.online_batch_size
        first.block_pos, self.behind = i + 1, True  # the others' follow in sync(): a thousand writes a step add up
        X, y = self.block
        return X[:, i * bs:(i + 1) * bs], y[:, i * bs:(i + 1) * bs]
