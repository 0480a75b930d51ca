"""Built-in grabs: measurements taken inside the training loop every `grab_every` steps and at
the end. A grab returns a number, a dict of numbers, or an array; None records nothing."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from runner.registry import grab


@grab("weight_norm")
def weight_norm(model: nn.Module, **ctx: Any) -> dict[str, float]:
    """Frobenius norm of each parameter tensor, and of all of them together ('total')."""
    norms = {name: p.detach().norm() for name, p in model.named_parameters()}
    total = torch.stack([n.square() for n in norms.values()]).sum().sqrt()
    return {**{k: float(v) for k, v in norms.items()}, "total": float(total)}


@grab("grad_norm")
def grad_norm(model: nn.Module, **ctx: Any) -> float | None:
    """L2 norm of the gradient from the most recent training step (None before the first)."""
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    if not grads:
        return None
    return float(torch.stack([g.square().sum() for g in grads]).sum().sqrt())
