"""The fused step as one CUDA graph: the stacked batch (drawn inside where every member's batch
function can be captured, read directly where it is the same tensors every step, else copied in),
the batched forward and backward and the optimizer step, replayed with one launch.

Without it a fused group of K tiny models is bound by Python: K batch draws and a few hundred
kernel launches per step (measured on an H200, moons width 32, K=1024 eager: 290 ms a step, slower
per model-step than one captured job alone). The learning rates are tensors the graph reads, so a
schedule or a member's end (lr 0) needs no re-capture; a batch-size change does.
"""
from __future__ import annotations

from typing import Callable

import torch

from .capture import WARMUP_STEPS, _side_stream, batch_is_capturable, record
from .data import Batch
from .fused_data import GroupData

# (the stacked batch, or None: draw it inside) -> (losses [K], gradients by parameter name, the batch used)
StepFn = Callable[[Batch | None], tuple[torch.Tensor, dict[str, torch.Tensor], Batch]]


class FusedGraph:
    """Runs a fused group's step: eagerly while warming up, then by replaying a captured graph."""

    def __init__(self, step_fn: StepFn, data: GroupData, device: torch.device):
        self.step_fn, self.data, self.device = step_fn, data, device
        self.side = _side_stream(device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warmup = WARMUP_STEPS
        self.captures = 0
        self.failure: str | None = None
        self.static_losses: torch.Tensor | None = None
        self.static_grads: dict[str, torch.Tensor] = {}
        self.static_batch: Batch | None = None
        self.static_input: Batch | None = None  # a batch drawn outside the graph is copied in here
        self.data_in_graph = False
        self.draws_in_graph = False  # the members' generators are registered with the graph

    def reset(self) -> None:
        """Forget the graph (a batch size changed); the next step runs eagerly, the one after re-captures."""
        self.graph = None
        self.warmup = max(self.warmup, 1)

    def step(self, draw: Callable[[], Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor], Batch]:
        """One fused step; `draw()` gives the stacked batch when it is drawn outside the graph.
        Returns (losses, gradients, batch), the graph's own tensors after a replay."""
        if self.graph is None:
            if self.warmup > 0 or self.failure is not None:
                self.warmup = max(0, self.warmup - 1)
                return self._eager(draw())
            if not self._capture(draw):
                return self._eager(draw())
        elif not self.data_in_graph:
            X, y = draw()
            self.static_input[0].copy_(X, non_blocking=True)  # type: ignore[index]
            self.static_input[1].copy_(y, non_blocking=True)  # type: ignore[index]
        self.graph.replay()  # type: ignore[union-attr]
        return self.static_losses.clone(), self.static_grads, self.static_batch  # type: ignore[union-attr, return-value]

    def _eager(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor], Batch]:
        """An eager step on the side stream, as the steps before a capture must run."""
        current = torch.cuda.current_stream(self.device)
        self.side.wait_stream(current)
        with torch.cuda.stream(self.side):
            out = self.step_fn(batch)
        current.wait_stream(self.side)
        return out

    def _capture(self, draw: Callable[[], Batch]) -> bool:
        """Record the step: the batch drawn inside the graph when every member's batch function can be
        captured, read inside when it is the same tensors every step, else copied in; on failure note
        why and stay eager (nothing of the step has run)."""
        members = self.data.unique  # a JobData that members share draws (and registers its generator) once
        self.draws_in_graph = self.data.per_member_draws and all(batch_is_capturable(d.next_batch) for d in members) \
            and hasattr(torch.cuda.CUDAGraph, "register_generator_state")
        self.data_in_graph = self.draws_in_graph or self.data.static
        states = [d.data_gen.get_state() if d.data_gen is not None else None for d in members]
        inputs = None if self.data_in_graph else tuple(t.clone() for t in draw())
        graph = torch.cuda.CUDAGraph()
        if self.draws_in_graph:
            for d in members:
                if d.data_gen is not None:
                    graph.register_generator_state(d.data_gen)
        out, failure = record(graph, self.side, lambda: self.step_fn(inputs))  # type: ignore[arg-type]
        if out is None:  # a batch function or model that reads back, an op graphs refuse
            self.failure = failure
            if self.draws_in_graph:  # a generator registered with a failed capture cannot be used again
                for d, state in zip(members, states):
                    if state is not None:
                        d.restart_stream(state)
            return False
        losses, grads, batch = out
        self.graph, self.static_losses, self.static_grads = graph, losses, grads
        self.static_batch, self.static_input = batch, inputs  # type: ignore[assignment]
        self.captures += 1
        return True  # recorded, not run: the caller replays it (the inputs already hold this step's batches)

    def describe(self) -> str:
        """For the members' summaries: whether the fused step ran as a graph, and if not, why."""
        if self.failure is not None:
            return f"off: capture failed ({self.failure})"
        return "on" if self.captures else "off: the group ended before the first capture"
