"""A job's recorded series: metric points, arrays, and the device scalars awaiting the next host read.

Losses and evaluations stay on the device as they are made; `flush` brings a whole chunk of them
to the host in one read, so the loop synchronises with the GPU once per chunk, not per step.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _due(first: int, n: int, eval_every: int) -> list[int]:
    """The steps of first .. first + n - 1 at the evaluation cadence (and step 0), in order."""
    due = [0] if first == 0 and n else []
    if eval_every and eval_every > 0:
        start = -(-max(first, 1) // eval_every) * eval_every  # the first multiple after step 0
        due += list(range(start, first + n, eval_every))
    return due


class Records:
    """Metrics as (step, name, value), arrays as (name, step, array), pending device scalars."""

    def __init__(self, eval_every: int):
        self.eval_every = eval_every  # batch_loss is kept at the evaluation cadence (and step 0)
        self.metrics: list[tuple[int, str, float]] = []
        self.arrays: list[tuple[str, int, np.ndarray]] = []
        self.pending: list[tuple[int, str, torch.Tensor]] = []  # device scalars awaiting the next host read

    def metric(self, step: int, name: str, value: float) -> None:
        """A value already on the host."""
        self.metrics.append((step, name, value))

    def scalar(self, step: int, name: str, value: torch.Tensor) -> None:
        """A device scalar, read with the next flush."""
        self.pending.append((step, name, value))

    def weights(self, step: int, model: torch.nn.Module) -> None:
        """The weights at this step, one array per parameter (weights.<name>), stored with the results."""
        for name, p in model.named_parameters():
            self.arrays.append((f"weights.{name}", step, p.detach().float().cpu().numpy().copy()))

    def record(self, name: str, step: int, value: Any) -> None:
        """Store a grab's return: numbers become metric points, arrays stay arrays, dicts nest names."""
        if value is None:
            return
        if isinstance(value, dict):
            for key, sub in value.items():
                self.record(f"{name}.{key}", step, sub)
            return
        if isinstance(value, torch.Tensor):
            value = value.detach().float().cpu().numpy() if value.dtype in (torch.bfloat16, torch.float16) else value.detach().cpu().numpy()
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        if isinstance(value, np.ndarray):
            self.arrays.append((name, step, value))
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            self.metrics.append((step, name, float(value)))
        else:
            raise TypeError(f"grab {name} returned {type(value).__name__}; return a number, a dict of numbers or an array")

    def flush(self, losses: list[torch.Tensor], first_step: int) -> np.ndarray:
        """The one host read per chunk: losses and pending evaluations come over together. Returns
        the losses of steps first_step, first_step+1, ... on the host (for the loss tracker)."""
        scalars = self.pending_values()
        # this is a CPU-GPU sync point: .cpu() waits for every queued step of the chunk
        merged = torch.stack([*losses, *scalars]).float().cpu().numpy() if (losses or scalars) else np.zeros(0)
        chunk = merged[: len(losses)]
        self.absorb(chunk, first_step, merged[len(losses):])
        return chunk

    def pending_values(self) -> list[torch.Tensor]:
        """The device scalars awaiting the host read, in order (a fused group reads many at once)."""
        return [t for _, _, t in self.pending]

    def absorb(self, chunk: np.ndarray, first_step: int, evals: np.ndarray) -> None:
        """Keep what a host read brought: the chunk's train losses (batch_loss at the evaluation
        cadence) and the pending values, in the order pending_values gave them."""
        for s in _due(first_step, len(chunk), self.eval_every):
            self.metrics.append((s, "batch_loss", float(chunk[s - first_step])))
        self.metrics.extend((s, n, v) for (s, n, _), v in zip(self.pending, evals.tolist()))
        self.pending.clear()

    def end_at(self, step: int) -> None:
        """The run ends at `step` after it recorded beyond it (stop_on_thresholds rewound to the
        crossing): drop what was recorded after it, and at it all but the step's training loss (the
        final measurements there follow)."""
        self.metrics = [m for m in self.metrics if m[0] < step or (m[0] == step and m[1] == "batch_loss")]
        self.arrays = [a for a in self.arrays if a[1] < step]

    def state(self) -> dict[str, Any]:
        """The series so far, as checkpoint-safe lists and tensors (nothing is pending at a checkpoint)."""
        return {"metrics": [[s, n, v] for s, n, v in self.metrics],
                "arrays": [[n, s, torch.from_numpy(np.ascontiguousarray(a))] for n, s, a in self.arrays]}

    def restore(self, state: dict[str, Any]) -> None:
        self.metrics = [(int(s), str(n), float(v)) for s, n, v in state["metrics"]]
        self.arrays = [(str(n), int(s), t.numpy()) for n, s, t in state["arrays"]]
