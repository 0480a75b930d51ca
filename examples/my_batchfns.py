"""A user's own plug-ins, kept in a module next to the grid file (or the notebook).

Workers import this module by name, so run runner from this folder (or put it on PYTHONPATH)
and refer to its functions as 'my_batchfns:<name>'. Functions defined in a notebook itself
(__main__) cannot reach spawned workers; a module like this one can.
"""
from __future__ import annotations

import math

import torch


def sine_teacher(d: int, batch_size: int, freq: float = 2.0, noise: float = 0.0, *, gen: torch.Generator, device: torch.device):
    """y = sin(freq * <u, x>) for a random unit direction u: a single-index target."""
    u = torch.randn(d, generator=gen, device=device)
    u = u / u.norm()

    def batch(step: int):
        X = torch.randn(batch_size, d, generator=gen, device=device)
        y = torch.sin(freq * (X @ u))
        if noise:
            y = y + noise * torch.randn(batch_size, generator=gen, device=device)
        return X, y.unsqueeze(1)

    return batch


def output_scale(model: torch.nn.Module, X_test: torch.Tensor, **ctx) -> float:
    """RMS of the network's output on the test inputs: a grab reading the context."""
    with torch.no_grad():
        return float(model(X_test).pow(2).mean().sqrt())


def cosine_to_init(model: torch.nn.Module, init_params, **ctx) -> float:
    """Cosine similarity between current and initial parameters (all layers flattened)."""
    now = torch.cat([p.detach().flatten() for p in model.parameters()])
    then = torch.cat([p.flatten() for p in init_params])
    return float(now @ then / (now.norm() * then.norm() + 1e-12)) if math.isfinite(float(now.norm())) else float("nan")
