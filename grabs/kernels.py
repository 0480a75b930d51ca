"""Kernels of the network: the empirical neural tangent kernel on a fixed probe set."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from runner.registry import grab

from ._common import measuring, probe_inputs, trainable


def _ntk_batched(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """All Jacobian rows from one vmapped backward pass (autograd.grad with is_grads_batched)."""
    params = [p for _, p in trainable(model)]
    with torch.enable_grad():
        out = model(X).reshape(len(X), -1)  # (n, d_out)
        rows = out.numel()
        eye = torch.eye(rows, dtype=out.dtype, device=out.device).reshape(rows, *out.shape)
        jac = torch.autograd.grad(out, params, grad_outputs=eye, is_grads_batched=True, allow_unused=True)
    n, d_out = out.shape
    K = torch.zeros(n, n, dtype=out.dtype, device=out.device)
    for J in jac:
        if J is not None:
            J = J.reshape(n, d_out, -1)
            K += torch.einsum("aop,bop->ab", J, J)
    return K.detach()


def _ntk_loop(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The same kernel from one backward pass per (sample, output): slower, works for any model."""
    params = [p for _, p in trainable(model)]
    with torch.enable_grad():
        out = model(X).reshape(len(X), -1)
        K = torch.zeros(len(X), len(X), dtype=out.dtype, device=out.device)
        for o in range(out.shape[1]):
            rows = []
            for i in range(len(X)):
                g = torch.autograd.grad(out[i, o], params, retain_graph=True, allow_unused=True)
                rows.append(torch.cat([(torch.zeros_like(p) if gi is None else gi).reshape(-1) for p, gi in zip(params, g)]))
            J = torch.stack(rows)
            K += J @ J.T
    return K.detach()


@grab("ntk")
def ntk(model: nn.Module, ntk_n: int = 32, **ctx: Any) -> torch.Tensor | None:
    """Empirical NTK on the first `ntk_n` probe points (test set, else training set, else last batch).

    K(x, x') = sum_o <d f_o(x)/d theta, d f_o(x')/d theta>, an (n x n) array: the trace over the
    d_out outputs (for one output, J(x) J(x')^T), theta the trainable parameters."""
    X = probe_inputs(ctx, ntk_n)
    if X is None or not trainable(model):
        return None
    with measuring(model):
        try:
            K = _ntk_batched(model, X)
        except Exception:  # noqa: BLE001 -- an op without a batching rule for its backward: one pass per row instead
            K = _ntk_loop(model, X)
    return K.cpu()
