"""Built-in batch functions. Each is a factory: its parameters come from the job config, `gen`
(a torch.Generator on the job's device) and `device` are injected, and it returns
`batch(step) -> (X, y)`. Anything drawn in the factory body (a teacher) must not depend on
batch_size, so that train and test sets share it.

Modules: hermite (powerlaw_hermite), teachers (linear_teacher, hypercube_sumprod), classification
(moons, circles, gaussian_clusters, xor), synthetic (synthetic_regression, synthetic_binary); all
are imported here so that importing `batchfns` registers every built-in."""
from __future__ import annotations

import math
from typing import Callable

import torch

from runner.registry import batchfn

Batch = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


@batchfn("gaussian_teacher")
def gaussian_teacher(d: int, batch_size: int, k: int = 8, noise: float = 0.0, *, gen: torch.Generator, device: torch.device) -> Batch:
    """x ~ N(0, I_d); y = sum_j a_j relu(w_j . x / sqrt(d)) / sqrt(k) + noise, a random two-layer teacher."""
    w = torch.randn(k, d, generator=gen, device=device)
    a = torch.randn(k, generator=gen, device=device)
    scale_in, scale_out = 1.0 / math.sqrt(d), 1.0 / math.sqrt(k)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        X = torch.randn(batch_size, d, generator=gen, device=device)
        y = torch.relu(X @ w.T * scale_in) @ a * scale_out
        if noise:
            y = y + noise * torch.randn(batch_size, generator=gen, device=device)
        return X, y.unsqueeze(1)

    batch.capturable = True  # type: ignore[attr-defined]  # device ops on gen only: may run inside a CUDA graph
    return batch


# Imported for their registration side effect (and re-exported).
from .classification import circles, gaussian_clusters, moons, xor
from .hermite import powerlaw_hermite
from .synthetic import synthetic_binary, synthetic_regression
from .teachers import hypercube_sumprod, linear_teacher

__all__ = [
    "Batch", "gaussian_teacher", "powerlaw_hermite", "linear_teacher", "hypercube_sumprod",
    "moons", "circles", "gaussian_clusters", "xor", "synthetic_regression", "synthetic_binary",
]
