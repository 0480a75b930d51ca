"""A job's data: the test set, the training set or stream, minibatch order and scheduled batch sizes.

The batch function's factory is called with its config keys and `BatchfnInjected` (gen, device,
batch_size); what it returns, `batch(step) -> (X, y)`, is either the online stream or, offline,
drawn once as the fixed training set. Every draw comes from a generator of its own derived seed,
so the data never depends on the global RNG, and `state()` holds all that a resume needs.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..errors import setup_error
from .plan import BatchfnInjected, JobPlan

Batch = tuple[torch.Tensor, torch.Tensor]
BatchFn = Callable[[int], Batch]


class JobData:
    """The data side of one job; the loop asks `next_batch(step)` for each step's batch."""

    def __init__(self, plan: JobPlan, device: torch.device, seeds: dict[str, int]):
        o = plan.options
        self.plan, self.o, self.device, self.seeds = plan, o, device, seeds
        self.X_test: torch.Tensor | None = None
        self.y_test: torch.Tensor | None = None
        self.X_train: torch.Tensor | None = None
        self.y_train: torch.Tensor | None = None
        self.data_gen: torch.Generator | None = None  # online: the stream's generator, saved in checkpoints
        self.sampler: _EpochSampler | None = None     # offline minibatches: epoch permutations
        self.online_batch_size = o.batch_size         # online: the stream's current batch size
        self.stream: BatchFn | None = None            # online: the batch function (of draw_ahead steps' rows)
        self.block: Batch | None = None               # online, draw_ahead > 1: the rows of the steps drawn ahead
        self.block_pos = 0                            # the next step's place in the block
        if o.n_test:
            # Same data seed as training, so whatever the factory draws up front (a teacher) is shared;
            # the samples themselves come from the test stream, which never overlaps training's.
            fn, gen = self._factory(o.n_test, seeds["data"])
            gen.manual_seed(seeds["test"])
            self.X_test, self.y_test = fn(0)
        # (the plan checked that online has batch_size and offline n_train)
        self.next_batch: BatchFn
        self.n_classes: int | None  # a classification batch function says how many classes it draws
        if o.online:
            self.stream, self.data_gen = self._factory(o.batch_size * o.draw_ahead, seeds["data"])  # type: ignore[operator]
            self.n_classes = getattr(self.stream, "n_classes", None)
            self.next_batch = self.stream if o.draw_ahead == 1 else self._from_block
        else:
            fn, _ = self._factory(o.n_train, seeds["data"])  # type: ignore[arg-type]
            self.n_classes = getattr(fn, "n_classes", None)
            self.X_train, self.y_train = fn(0)
            n, bs = o.n_train, o.batch_size
            self.next_batch = self._full_batch if bs is None or bs >= n else self._minibatches(bs)  # type: ignore[operator]

    def _factory(self, batch_size: int, seed: int) -> tuple[BatchFn, torch.Generator]:
        """A fresh batch function of `batch_size` on a fresh generator seeded `seed`."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        injected = BatchfnInjected(gen=gen, device=self.device, batch_size=batch_size)
        try:
            fn = self.plan.batchfn.fn(**self.plan.batchfn_kwargs, **injected._asdict())
        except Exception as exc:
            raise setup_error(f"batch function {self.plan.batchfn.ref}", exc) from exc
        return fn, gen

    def probe(self, seed: int) -> Batch:
        """A batch to read the model's input and output sizes from: the training set, else the test
        set, else (online without a test set) one drawn on a generator of its own seeded `seed`."""
        if self.X_train is not None:
            return self.X_train, self.y_train  # type: ignore[return-value]
        if self.X_test is not None:
            return self.X_test, self.y_test  # type: ignore[return-value]
        probe, _ = self._factory(min(self.o.batch_size, 1024), seed)  # type: ignore[type-var]
        return probe(0)

    def _from_block(self, step: int) -> Batch:
        """Online with draw_ahead M: this step's rows of the block, drawn every M steps in one call."""
        if self.block is None or self.block_pos >= self.o.draw_ahead:
            self.refill_block(step)
        X, y = self.block  # type: ignore[misc]
        bs, i = self.online_batch_size, self.block_pos
        self.block_pos += 1
        return X[i * bs:(i + 1) * bs], y[i * bs:(i + 1) * bs]

    def refill_block(self, step: int) -> None:
        """Draw the next draw_ahead steps' rows in one call of the batch function."""
        self.block, self.block_pos = self.stream(step), 0  # type: ignore[misc]

    def sampler_batch_size(self) -> int | None:
        """Offline: the minibatch size, or None for the full batch (online: None)."""
        if self.X_train is None or self.sampler is None or self.next_batch == self._full_batch:
            return None
        return self.sampler.bs

    def _full_batch(self, step: int) -> Batch:
        """Offline without minibatches: the whole training set every step."""
        return self.X_train, self.y_train  # type: ignore[return-value]

    _full_batch.capturable = True  # type: ignore[attr-defined]  # the same tensors every step

    def _minibatches(self, batch_size: int) -> BatchFn:
        """Offline minibatches of batch_size from the training set (the sampler is made once)."""
        if self.sampler is None:
            gen = torch.Generator(device=self.device).manual_seed(self.seeds["sample"])
            self.sampler = _EpochSampler(self.o.n_train, batch_size, gen)  # type: ignore[arg-type]
        self.sampler.bs = batch_size
        return lambda step: self.sampler.batch(self.X_train, self.y_train)  # type: ignore[union-attr, arg-type]

    def set_batch_size(self, batch_size: int, stream_state: torch.Tensor | None = None) -> None:
        """A scheduled batch-size change: online, the same data stream continues in batches of the
        new size (same teacher, generator state carried over, or `stream_state`); offline,
        minibatches of the new size. The caller hands the new `next_batch` to step capture."""
        if self.o.online:
            fn, gen = self._factory(batch_size * self.o.draw_ahead, self.seeds["data"])  # same seed: the same teacher
            gen.set_state(self.data_gen.get_state() if stream_state is None else stream_state)  # type: ignore[union-attr]
            self.stream, self.data_gen, self.online_batch_size = fn, gen, batch_size
            self.next_batch = fn if self.o.draw_ahead == 1 else self._from_block
            self.block = None  # the rows drawn ahead at the old size are dropped; the stream carries on
        elif batch_size >= self.o.n_train:  # type: ignore[operator]
            self.next_batch = self._full_batch
        else:
            self.next_batch = self._minibatches(batch_size)

    def current_batch_size(self) -> int:
        """The batch size in effect now (scheduled changes included); offline full batch: n_train."""
        if self.o.online:
            return self.online_batch_size  # type: ignore[return-value]
        return self.o.n_train if self.sampler_batch_size() is None else self.sampler_batch_size()  # type: ignore[return-value]

    def mark(self) -> dict[str, Any]:
        """Where the data is now, for `rewind` within this run: generator states, sampler position,
        block and batch size (tensors by reference: a new epoch or block replaces them, never edits)."""
        sampler = self.sampler
        return {"data_gen": None if self.data_gen is None else self.data_gen.get_state(),
                "sampler": None if sampler is None else {"gen": sampler.gen.get_state(), "perm": sampler.perm,
                                                         "pos": sampler.pos, "batch_size": sampler.bs},
                "block": self.block, "block_pos": self.block_pos, "batch_size": self.current_batch_size()}

    def rewind(self, mark: dict[str, Any], fresh_stream: bool) -> None:
        """Back to a `mark()` of this run. fresh_stream: the online stream continues on a new generator
        (a job's step graph holds the old one); else the generator itself is set back."""
        if mark["batch_size"] != self.current_batch_size():
            self.set_batch_size(mark["batch_size"])  # a scheduled change came after the mark
        if mark["data_gen"] is not None:
            if fresh_stream:
                self.restart_stream(mark["data_gen"])
            else:
                self.data_gen.set_state(mark["data_gen"])  # type: ignore[union-attr]
        if mark["sampler"] is not None and self.sampler is not None:
            self.sampler.restore(mark["sampler"], self.device)
        self.block, self.block_pos = mark["block"], mark["block_pos"]

    def restart_stream(self, stream_state: torch.Tensor) -> None:
        """The online stream rebuilt on a fresh generator set to `stream_state`, at the current batch
        size (a generator registered with a failed CUDA-graph capture cannot be used again)."""
        self.set_batch_size(self.online_batch_size, stream_state)  # type: ignore[arg-type]

    def apply_changes(self, step: int, upto: bool = False) -> None:
        """Batch-size changes due at `step` (with upto, every change at or before it: a resume)."""
        for change in self.o.changes:
            if change.batch_size is not None and (change.at <= step if upto else change.at == step):
                self.set_batch_size(change.batch_size)

    def state(self) -> dict[str, Any]:
        """The stream's generator and the sampler's position: with the step, all a resume needs."""
        return {"data_gen": None if self.data_gen is None else self.data_gen.get_state(),
                "sampler": None if self.sampler is None else self.sampler.state(),
                "block": None if self.block is None else [t.cpu() for t in self.block], "block_pos": self.block_pos}

    def restore(self, state: dict[str, Any], step: int) -> None:
        """Continue at `step` from `state()`: the batch-size changes up to it replayed (the data
        pipeline as it was at that step), then the generator and sampler set back."""
        self.apply_changes(step, upto=True)
        if state["data_gen"] is not None and self.data_gen is not None:
            self.data_gen.set_state(state["data_gen"])
        if state["sampler"] is not None and self.sampler is not None:
            self.sampler.restore(state["sampler"], self.device)
        if state.get("block") is not None:
            self.block = tuple(t.to(self.device) for t in state["block"])  # type: ignore[assignment]
            self.block_pos = int(state["block_pos"])


class _EpochSampler:
    """Offline minibatches: a fresh permutation of the training set whenever the current one has
    fewer than batch_size samples left (so a batch-size change mid-epoch just carries on)."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator):
        self.n, self.bs, self.gen = n, batch_size, gen
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def batch(self, X: torch.Tensor, y: torch.Tensor) -> Batch:
        if self.perm is None or self.pos + self.bs > self.n:
            self.new_epoch(X.device)
        idx = self.perm[self.pos:self.pos + self.bs]
        self.pos += self.bs
        return X[idx], y[idx]

    def new_epoch(self, device: torch.device) -> None:
        """A fresh permutation from this sampler's generator, read from its start."""
        self.perm, self.pos = torch.randperm(self.n, generator=self.gen, device=device), 0

    def state(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "perm": None if self.perm is None else self.perm.cpu(),
                "pos": self.pos, "batch_size": self.bs}

    def restore(self, state: dict[str, Any], device: torch.device) -> None:
        self.gen.set_state(state["gen"])
        self.perm = None if state["perm"] is None else state["perm"].to(device)
        self.pos, self.bs = int(state["pos"]), int(state["batch_size"])
