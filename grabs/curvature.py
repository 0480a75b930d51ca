"""Curvature of the training loss: top Hessian eigenvalues (Lanczos) and the Hessian trace
(Hutchinson), both from Hessian-vector products by double backward.

Gradients are taken with torch.autograd.grad, which returns them and never writes `.grad`, so
the last step's gradients (what grad_norm reads) stay as they were.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from runner.registry import grab

from ._common import (
    flat,
    generator,
    loss_data,
    loss_fn_of,
    measuring,
    trainable,
    unflat,
)

HVP = Callable[[torch.Tensor], torch.Tensor]


def _hvp_operator(model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss_fn: Any) -> tuple[HVP, int]:
    """v -> H v for the loss on (X, y), H the Hessian over the trainable parameters (flattened).

    The gradient graph is built once; every product is one more backward pass through it:
    H v = d/d theta <g(theta), v>, summed over the gradient blocks that depend on theta (a
    gradient block that is constant contributes nothing)."""
    params = [p for _, p in trainable(model)]
    size = sum(p.numel() for p in params)
    loss = loss_fn(model(X), y)
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]

    def hvp(v: torch.Tensor) -> torch.Tensor:
        if not live:
            return torch.zeros_like(v)
        parts = unflat(v, params)
        hv = torch.autograd.grad([grads[i] for i in live], params, grad_outputs=[parts[i] for i in live],
                                 retain_graph=True, allow_unused=True)
        return flat([torch.zeros_like(p) if h is None else h for p, h in zip(params, hv)]).detach()

    return hvp, size


def lanczos(hvp: HVP, size: int, k: int, iters: int, tol: float, gen: torch.Generator,
            dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> list[float]:
    """The k largest (algebraic) Ritz values of a symmetric operator after at most `iters` Lanczos
    steps with full reorthogonalisation, from a random start drawn from `gen`.

    Stops early when every one of the k Ritz pairs has residual ||H y - t y|| = beta_m |s_mi| <=
    tol * max|t| (the standard Lanczos bound). When the Krylov space becomes invariant (beta below
    sqrt(machine eps) * max|t|) it goes on from a fresh random vector orthogonal to it, so a repeated
    eigenvalue shows up as often as it occurs (given enough steps). Ritz values interlace the
    spectrum: the largest is a lower bound on lambda_max, exact once converged."""
    m_max = max(1, min(iters, size))
    breakdown = float(torch.finfo(dtype).eps) ** 0.5
    Q = torch.zeros(m_max, size, dtype=dtype, device=device)

    def fresh(j: int) -> torch.Tensor:
        """A random unit vector orthogonal to the first j Lanczos vectors."""
        v = torch.randn(size, generator=gen, dtype=dtype).to(device)
        for _ in range(2):
            v = v - Q[:j].T @ (Q[:j] @ v) if j else v
        return v / v.norm()

    alphas: list[float] = []
    betas: list[float] = []  # off-diagonal of T (0 where the recurrence was restarted)
    q, values = fresh(0), []
    for j in range(m_max):
        Q[j] = q
        w = hvp(q)
        alpha = float(w @ q)
        w = w - alpha * q - (betas[-1] * Q[j - 1] if j > 0 else 0)
        for _ in range(2):  # full reorthogonalisation, twice is enough
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        beta = float(w.norm())
        alphas.append(alpha)
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if j > 0:
            off = torch.tensor(betas, dtype=torch.float64)
            T += torch.diag(off, 1) + torch.diag(off, -1)
        theta, S = torch.linalg.eigh(T)
        order = torch.argsort(theta, descending=True)[:k]
        values = theta[order].tolist()
        scale = float(theta.abs().max())
        if j + 1 == m_max:
            break
        if beta <= breakdown * scale or beta == 0.0:  # an invariant subspace: restart orthogonally to it
            betas.append(0.0)
            q = fresh(j + 1)
            continue
        residuals = (beta * S[-1, order].abs()).tolist()
        if len(values) >= k and all(r <= tol * scale for r in residuals):
            break
        betas.append(beta)
        q = w / beta
    return values


def _hessian_of_loss(model: nn.Module, ctx: dict[str, Any], max_n: int) -> Callable[[], tuple[HVP, int, torch.Tensor]] | None:
    """None when there is nothing to measure; else a function (to call while measuring, with grad
    enabled) giving the Hessian-vector product of the loss, the parameter count and a parameter."""
    data = loss_data(ctx, max_n)
    if data is None or not trainable(model):
        return None

    def setup() -> tuple[HVP, int, torch.Tensor]:
        hvp, size = _hvp_operator(model, *data, loss_fn_of(ctx))
        return hvp, size, next(p for _, p in trainable(model))

    return setup


@grab("hessian_top")
def hessian_top(model: nn.Module, hessian_k: int = 1, hessian_iters: int = 30, hessian_tol: float = 1e-3,
                hessian_max_n: int = 1024, **ctx: Any) -> dict[str, float] | None:
    """Top-k eigenvalues of the training-loss Hessian, by Lanczos on Hessian-vector products.

    H = d^2 L / d theta^2 on the training set (else the last batch, else the test set; first
    hessian_max_n samples); returns {"0": lambda_1 >= "1": lambda_2 >= ...} (largest algebraic)."""
    if hessian_k < 1 or hessian_iters < hessian_k or hessian_tol < 0:
        raise ValueError(f"hessian_top needs hessian_k >= 1, hessian_iters >= hessian_k and hessian_tol >= 0 "
                         f"(got {hessian_k}, {hessian_iters}, {hessian_tol})")
    setup = _hessian_of_loss(model, ctx, hessian_max_n)
    if setup is None:
        return None
    with measuring(model), torch.enable_grad():
        hvp, size, like = setup()
        values = lanczos(hvp, size, hessian_k, hessian_iters, hessian_tol, generator(ctx, "hessian_top"), like.dtype, like.device)
    return {str(i): v for i, v in enumerate(values)}


@grab("hessian_trace")
def hessian_trace(model: nn.Module, hutchinson_probes: int = 16, hessian_max_n: int = 1024, **ctx: Any) -> float | None:
    """Hutchinson estimate of the trace of the training-loss Hessian (data as for hessian_top).

    tr(H) ~= (1/m) sum_i v_i^T H v_i, v_i Rademacher (+-1) vectors from a generator seeded by (seed, step)."""
    if hutchinson_probes < 1:
        raise ValueError(f"hutchinson_probes must be >= 1, got {hutchinson_probes}")
    setup = _hessian_of_loss(model, ctx, hessian_max_n)
    if setup is None:
        return None
    with measuring(model), torch.enable_grad():
        hvp, size, like = setup()
        gen = generator(ctx, "hessian_trace")
        total = torch.zeros((), dtype=torch.float64, device=like.device)
        for _ in range(hutchinson_probes):
            v = (torch.randint(0, 2, (size,), generator=gen) * 2 - 1).to(dtype=like.dtype, device=like.device)
            total += (v @ hvp(v)).double()
    return float(total) / hutchinson_probes
