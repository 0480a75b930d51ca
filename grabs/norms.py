"""Norm-like measurements of the parameters: weight and gradient norms, distance from the
initialisation, and the Gram matrix of the input layer."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from runner.registry import grab

from ._common import first_linear_weight


@grab("weight_norm")
def weight_norm(model: nn.Module, **ctx: Any) -> dict[str, float]:
    """Frobenius norm of each parameter tensor, and of all of them together ('total').

    ||W||_F = sqrt(sum_ij W_ij^2);  total = sqrt(sum over tensors ||W||_F^2)."""
    norms = {name: p.detach().norm() for name, p in model.named_parameters()}
    total = torch.stack([n.square() for n in norms.values()]).sum().sqrt()
    return {**{k: float(v) for k, v in norms.items()}, "total": float(total)}


@grab("grad_norm")
def grad_norm(model: nn.Module, **ctx: Any) -> float | None:
    """L2 norm of the gradient from the most recent training step (None before the first).

    ||g|| = sqrt(sum over parameters sum_i g_i^2), g the last step's minibatch gradient."""
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    if not grads:
        return None
    return float(torch.stack([g.square().sum() for g in grads]).sum().sqrt())


@grab("dist_from_init")
def dist_from_init(model: nn.Module, init_params: list[torch.Tensor] | None = None, **ctx: Any) -> dict[str, float] | None:
    """Distance of all parameters (flattened together) from their initial values.

    l2 = ||theta - theta0||, rel_l2 = l2 / ||theta0||, cosine = <theta, theta0> / (||theta|| ||theta0||);
    computed in float64. rel_l2 and cosine are NaN (dropped from the series) when a norm is zero."""
    if init_params is None:
        return None
    params = list(model.parameters())
    if len(params) != len(init_params):
        raise ValueError(f"init_params has {len(init_params)} tensors, the model {len(params)}")
    with torch.no_grad():
        dot = cur2 = init2 = diff2 = torch.zeros((), dtype=torch.float64, device=params[0].device if params else None)
        for p, p0 in zip(params, init_params):
            a, b = p.detach().double().reshape(-1), p0.detach().to(p.device).double().reshape(-1)
            dot = dot + a @ b
            cur2 = cur2 + a @ a
            init2 = init2 + b @ b
            diff2 = diff2 + (a - b).square().sum()
        l2, cur, init = float(diff2.sqrt()), float(cur2.sqrt()), float(init2.sqrt())
    nan = float("nan")
    return {
        "l2": l2,
        "rel_l2": l2 / init if init > 0 else nan,
        "cosine": float(dot) / (cur * init) if cur > 0 and init > 0 else nan,
    }


def _gram_side(gram_side: str) -> str:
    if gram_side not in ("in", "out"):
        raise ValueError(f"gram_side must be 'in' (diag of W^T W, d_in values) or 'out' (diag of W W^T), got {gram_side!r}")
    return gram_side


@grab("gram_diag")
def gram_diag(model: nn.Module, gram_side: str = "in", **ctx: Any) -> torch.Tensor:
    """Diagonal of the input layer's Gram matrix, W the first nn.Linear's weight (d_out x d_in).

    gram_side 'in': diag(W^T W)_j = sum_i W_ij^2 (d_in values); 'out': diag(W W^T)_i = sum_j W_ij^2."""
    side = _gram_side(gram_side)
    with torch.no_grad():
        W = first_linear_weight(model).detach()
        return W.square().sum(dim=0 if side == "in" else 1).cpu()


@grab("gram_trace")
def gram_trace(model: nn.Module, **ctx: Any) -> float:
    """Trace of the input layer's Gram matrix: tr(W^T W) = tr(W W^T) = ||W||_F^2, W the first nn.Linear's weight."""
    with torch.no_grad():
        return float(first_linear_weight(model).detach().square().sum())
