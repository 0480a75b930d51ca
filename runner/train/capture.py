"""Step capture: one training step recorded as a CUDA graph and replayed, for launch-bound jobs.

A small network's eager step is mostly kernel-launch overhead: the GPU waits on Python. A
replayed graph launches the whole step (forward, backward, optimizer step, and the batch itself
when the batch function says it can be captured) with one call. The first steps run eagerly (they
create the optimizer's lazy state and warm cuBLAS), then the step is captured, and every later
step replays it. Anything that changes what a step does (a new batch size, a new learning rate)
drops the graph; the next steps run eagerly again and the step is captured anew. Evaluation,
grabs and threshold reads stay outside the graph at their own cadence.
"""
from __future__ import annotations

import gc
import threading
from typing import Any, Callable, TypeVar

import torch

from .options import TrainOptions

WARMUP_STEPS = 2  # eager steps before the first capture; 1 before a re-capture

T = TypeVar("T")


def capture_blocker(options: TrainOptions, device: torch.device, lr_is_a_tensor: bool = False) -> str | None:
    """Why this job's steps cannot be captured (None: they can). lr_is_a_tensor: the step reads its
    learning rate from a tensor (a fused group's), so a schedule changing it every step is no bar."""
    if not options.capture:
        return "capture: false in the config"
    if device.type != "cuda":
        return f"device {device.type} (graphs need CUDA)"
    if options.schedule == "cosine" and not lr_is_a_tensor:
        return "the cosine schedule changes the lr every step"
    return None


def batch_is_capturable(batch: Callable[[int], Any]) -> bool:
    """A batch function declares, with `batch.capturable = True`, that `batch(step)` ignores
    `step`, draws only from the generator it was given and never reads a value back to the host."""
    return bool(getattr(batch, "capturable", False))


_SIDE_STREAMS: dict[tuple[torch.device, int], torch.cuda.Stream] = {}


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    """One stream per thread and device for warm-up steps and captures (the pattern PyTorch's
    CUDA-graph notes prescribe); creating one per job would cycle through PyTorch's stream pool."""
    key = (device, threading.get_ident())
    if key not in _SIDE_STREAMS:
        _SIDE_STREAMS[key] = torch.cuda.Stream(device)
    return _SIDE_STREAMS[key]


def _one_line(exc: BaseException) -> str:
    """The first line of the error that started it all (a failed capture's exit raises its own
    "operation failed due to a previous error during capture" over the real cause)."""
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def record(graph: torch.cuda.CUDAGraph, stream: torch.cuda.Stream, fn: Callable[[], T]) -> tuple[T | None, str | None]:
    """Capture `fn()` into `graph` on `stream`: (its result, None), or (None, why it failed) with the
    process left as it was, so that a failed capture never spoils the captures of later jobs.

    Two things used to leak from a failed capture in a long-lived worker. The garbage collector could
    free a dead graph (a failed one sits in a reference cycle with its traceback) in the middle of a
    later capture, and freeing a graph is an operation CUDA forbids while a stream captures: that later
    capture failed too ("operation not permitted when stream is capturing"). So the collector is off
    while capturing and runs once after a failure. And `torch.cuda.graph` does not restore the current
    stream when its capture fails to end: the thread kept issuing work on the capture stream.
    """
    previous = torch.cuda.current_stream(stream.device)
    collecting = gc.isenabled()
    gc.disable()
    try:
        with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
            return fn(), None
    except Exception as exc:  # a function that reads values back, an op graphs refuse, an allocation failure
        reason = _one_line(exc)
        torch.cuda.set_stream(previous)
    finally:
        if collecting:
            gc.enable()
    gc.collect()  # the failed capture's cycles go now, between captures, where freeing a graph is allowed
    return None, reason


class StepGraph:
    """Runs the training step of one job: eagerly while warming up, then by replaying a graph.

    `eager_step(step, batch)` is the loop's own step (drawing the batch when given None); the graph
    records that very function on static tensors, so a replayed step computes what an eager one would.
    """

    def __init__(self, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 eager_step: Callable[..., tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]],
                 device: torch.device, restart_stream: Callable[[torch.Tensor], None]):
        self.model, self.optimizer, self.eager_step, self.device = model, optimizer, eager_step, device
        # A generator registered with a capture that failed cannot be used again: this rebuilds the
        # batch function on a fresh generator set to the given state (it calls use_data).
        self.restart_stream = restart_stream
        self.side = _side_stream(device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warmup = WARMUP_STEPS
        self.captures = 0
        self.failure: str | None = None  # set when a capture failed: the job stays eager from then on
        self.next_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None
        self.data_gen: torch.Generator | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.loss: torch.Tensor | None = None
        self.grads: list[torch.Tensor | None] = []  # the gradient tensors the graph writes
        self.data_in_graph = False
        self.data_capturable = True  # cleared when drawing the batch inside the graph failed
        self.data_failure: str | None = None

    def use_data(self, next_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
                 data_gen: torch.Generator | None) -> None:
        """The batch source of the coming steps (set again after a batch-size change); drops the graph."""
        self.next_batch, self.data_gen = next_batch, data_gen
        self.reset()

    def reset(self) -> None:
        """Forget the graph (the step changed); the next step runs eagerly, the one after re-captures."""
        self.graph = self.static = self.loss = None
        self.data_in_graph = self.data_capturable and batch_is_capturable(self.next_batch) and (
            self.data_gen is None or hasattr(torch.cuda.CUDAGraph, "register_generator_state"))
        self.warmup = max(self.warmup, 1)

    def step(self, step: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One training step; returns (detached loss, the batch it trained on)."""
        if self.graph is None:
            if self.warmup > 0 or self.failure is not None:
                self.warmup = max(0, self.warmup - 1)
                return self._eager(step, None)
            batch = None if self.data_in_graph else self.next_batch(step)
            if not self._capture(step, batch):  # the static inputs already hold this step's batch
                return self._eager(step, batch)
        elif not self.data_in_graph:
            X, y = self.next_batch(step)
            self.static[0].copy_(X, non_blocking=True)
            self.static[1].copy_(y, non_blocking=True)
        self.graph.replay()
        return self.loss.clone(), self.static

    def _eager(self, step: int, batch: tuple[torch.Tensor, torch.Tensor] | None
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """An eager step on a side stream, as capture requires of the steps before it."""
        current = torch.cuda.current_stream(self.device)
        self.side.wait_stream(current)
        with torch.cuda.stream(self.side):
            out = self.eager_step(step, batch)
        current.wait_stream(self.side)
        return out

    def _capture(self, step: int, batch: tuple[torch.Tensor, torch.Tensor] | None) -> bool:
        """Record the step (on `batch`, or drawing it inside the graph); on failure note why and
        stay eager for the rest of the job (nothing of the step has run)."""
        opt = self.optimizer
        gen_state = self.data_gen.get_state() if self.data_in_graph and self.data_gen is not None else None
        graph = torch.cuda.CUDAGraph()
        if batch is not None:
            batch = (batch[0].clone(), batch[1].clone())  # the static inputs later steps copy into
        elif self.data_gen is not None:
            graph.register_generator_state(self.data_gen)
        # else: a batch function without randomness (the full training set) runs in the graph as is
        # The step drops the gradients first (set_to_none), so the graph owns the ones it writes.
        out, failure = record(graph, self.side, lambda: self.eager_step(step, batch))
        if out is None:  # a batch function or model that reads values back, an op graphs refuse
            opt.zero_grad(set_to_none=True)
            if batch is None:  # try again with the batch drawn eagerly, outside the graph
                self.data_capturable = False
                self.data_failure = failure
                if gen_state is not None:
                    self.restart_stream(gen_state)
                else:
                    self.reset()
                return False
            # the first error says why; a second capture after a failed one often only reports "previous error"
            self.failure = self.data_failure or failure
            return False
        self.graph, (self.loss, self.static) = graph, out
        self.grads = [p.grad for p in self.model.parameters()]
        self.captures += 1
        return True

    def check_grads(self) -> None:
        """After code outside the graph ran (a grab): if it replaced the gradient tensors, re-capture."""
        if self.graph is not None and any(p.grad is not g for p, g in zip(self.model.parameters(), self.grads)):
            self.reset()

    def describe(self) -> str:
        """For the job's summary: whether steps ran as a graph, and if not, why."""
        if self.failure is not None:
            return f"off: capture failed ({self.failure})"
        return "on" if self.captures else "off: the job ended before the first capture"
