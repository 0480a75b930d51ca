"""The loss landscape around the current parameters: epsilon-sharpness and the loss along the
straight line from the initialisation.

Perturbed losses are evaluated by writing the perturbed values into the parameters in place
(under no_grad) and copying the saved values back afterwards, bit for bit, also when the loss
raises. Writing in place rather than calling torch.func.functional_call keeps every module working,
mup's MuReadout included (it reads attributes that only the real parameter tensors carry).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from runner.registry import grab

from ._common import generator, loss_data, loss_fn_of, measuring, restored, trainable


@grab("sharpness")
def sharpness(model: nn.Module, sharpness_eps: float = 0.05, sharpness_samples: int = 10,
              sharpness_max_n: int = 4096, **ctx: Any) -> float | None:
    """Epsilon-sharpness over random layer-normalised perturbations of the trainable parameters.

    max_i L(theta + delta_i) - L(theta), delta_i per tensor W: eps ||W|| u / ||u||, u ~ N(0, I); data
    as for hessian_top (training set, else last batch, else test set; first sharpness_max_n samples)."""
    if sharpness_eps < 0 or sharpness_samples < 1:
        raise ValueError(f"sharpness needs sharpness_eps >= 0 and sharpness_samples >= 1 (got {sharpness_eps}, {sharpness_samples})")
    data = loss_data(ctx, sharpness_max_n)
    if data is None:
        return None
    X, y = data
    loss_fn = loss_fn_of(ctx)
    params = [p for _, p in trainable(model)]
    gen = generator(ctx, "sharpness")
    with measuring(model), torch.no_grad(), restored(params) as theta:
        base = loss_fn(model(X), y)
        radii = [sharpness_eps * t.norm() for t in theta]
        losses = []
        for _ in range(sharpness_samples):
            for p, t, r in zip(params, theta, radii):
                u = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
                p.copy_(t + (r / u.norm()) * u if u.numel() else t)
            losses.append(loss_fn(model(X), y))
        return float(torch.stack(losses).max() - base)


def interp_grid(interp_points: int, interp_margin: float) -> np.ndarray:
    """t = i / (interp_points - 1) for i = -m .. interp_points - 1 + m, m = ceil(margin * (points - 1)):
    interp_points values on [0, 1] (0 and 1 exactly), continued at the same spacing to the margin."""
    if interp_points < 2 or interp_margin < 0:
        raise ValueError(f"interpolation needs interp_points >= 2 and interp_margin >= 0 (got {interp_points}, {interp_margin})")
    steps = interp_points - 1
    extra = math.ceil(interp_margin * steps - 1e-9) if interp_margin > 0 else 0
    return np.array([i / steps for i in range(-extra, interp_points + extra)], dtype=np.float64)


@grab("interpolation")
def interpolation(model: nn.Module, init_params: list[torch.Tensor] | None = None, interp_points: int = 11,
                  interp_margin: float = 0.0, interp_max_n: int = 4096, **ctx: Any) -> dict[str, Any] | None:
    """Loss along the straight line from the initial to the current parameters.

    L((1 - t) theta_0 + t theta) for t on interp_grid; returns {"loss": array, "t": array, "barrier":
    max_{t in [0,1]} L(t) - max(L(0), L(1))} (0 for a loss that never rises above both endpoints)."""
    ts = interp_grid(interp_points, interp_margin)
    data = loss_data(ctx, interp_max_n)
    if data is None or init_params is None:
        return None
    X, y = data
    loss_fn = loss_fn_of(ctx)
    params = list(model.parameters())
    if len(params) != len(init_params):
        raise ValueError(f"init_params has {len(init_params)} tensors, the model {len(params)}")
    with measuring(model), torch.no_grad(), restored(params) as theta:
        start = [p0.to(p.device) for p, p0 in zip(params, init_params)]
        losses = []
        for t in ts.tolist():
            for p, a, b in zip(params, start, theta):
                p.copy_((1.0 - t) * a + t * b)  # exact at t = 0 and t = 1
            losses.append(loss_fn(model(X), y))
        values = torch.stack(losses).double().cpu().numpy()
    inside = values[(ts >= 0) & (ts <= 1)]
    ends = max(values[ts == 0][0], values[ts == 1][0])
    return {"loss": values, "t": ts, "barrier": float(inside.max() - ends)}
