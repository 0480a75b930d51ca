"""Teacher-student regression tasks: a linear teacher on Gaussian inputs (`linear_teacher`) and
sums of parities on the hypercube (`hypercube_sumprod`)."""
from __future__ import annotations

import math
from typing import Any, Literal

import torch

from runner.registry import batchfn

from ._common import Batch, check_float, check_int, check_weights, coordinate

TEACHERS = ("diagonal", "random_normal")


@batchfn("linear_teacher")
def linear_teacher(d: int, batch_size: int, out_dim: int = 1,
                   teacher: Literal["random_normal", "diagonal"] = "random_normal", teacher_scale: float = 1.0,
                   noise: float = 0.0, *, gen: torch.Generator, device: torch.device) -> Batch:
    """x ~ N(0, I_d); y = W* x + noise * N(0, I_out_dim), W* of shape (out_dim, d):
    'diagonal': W* = teacher_scale * I (rectangular: W*_ii = teacher_scale for i < min(out_dim, d), else 0);
    'random_normal': W*_ij ~ N(0, teacher_scale^2 / d), drawn in the factory body (so E[y_j^2] = teacher_scale^2).

    Targets have shape (batch, out_dim); the batch function carries `teacher_weights` (W*)."""
    fn = "linear_teacher"
    d = check_int("d", d, low=1, fn=fn)
    out_dim = check_int("out_dim", out_dim, low=1, fn=fn)
    teacher_scale = check_float("teacher_scale", teacher_scale, fn=fn)
    noise = check_float("noise", noise, low=0.0, fn=fn)
    if teacher == "diagonal":
        W = teacher_scale * torch.eye(out_dim, d, device=device)
    elif teacher == "random_normal":
        W = torch.randn(out_dim, d, generator=gen, device=device) * (teacher_scale / math.sqrt(d))
    else:
        raise ValueError(f"{fn}: teacher must be one of {', '.join(TEACHERS)}, got {teacher!r}")
    W_t = W.T.contiguous()

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        X = torch.randn(batch_size, d, generator=gen, device=device)
        y = X @ W_t
        if noise:
            y = y + noise * torch.randn(batch_size, out_dim, generator=gen, device=device)
        return X, y

    batch.capturable = True  # type: ignore[attr-defined]  # device ops on gen only: may run inside a CUDA graph
    batch.teacher_weights = W  # type: ignore[attr-defined]
    return batch


def _parse_indices(indices: Any, d: int, fn: str) -> list[list[int]]:
    if not isinstance(indices, (list, tuple)) or not indices:
        raise ValueError(f"{fn}: indices must be a non-empty list of lists of coordinates, e.g. [[0], [1, 2]], got {indices!r}")
    out: list[list[int]] = []
    seen: dict[frozenset[int], int] = {}
    for g, group in enumerate(indices):
        where = f"indices[{g}]"
        if isinstance(group, int) and not isinstance(group, bool):
            group = [group]  # a bare coordinate is a group of one
        if not isinstance(group, (list, tuple)) or not group:
            raise ValueError(f"{fn}: {where} must be a non-empty list of coordinates, got {group!r}")
        coords = [coordinate(i, d, where, fn) for i in group]
        if len(set(coords)) != len(coords):
            raise ValueError(f"{fn}: {where} = {group!r} repeats a coordinate (x_i^2 = 1 on the hypercube); list each once")
        key = frozenset(coords)
        if key in seen:
            raise ValueError(f"{fn}: {where} is the same set as indices[{seen[key]}]; list it once and add the weights")
        seen[key] = g
        out.append(coords)
    return out


@batchfn("hypercube_sumprod")
def hypercube_sumprod(d: int, indices: list, batch_size: int, weights: list | None = None, normalise: bool = False,
                      noise_mean: float = 0.0, noise_std: float = 0.0, *, gen: torch.Generator, device: torch.device) -> Batch:
    """x uniform on {-1, 1}^d; y = c * sum_g weights[g] prod_{i in indices[g]} x_i + noise_mean + noise_std * N(0, 1),
    c = 1 / sqrt(sum_g weights[g]^2) if normalise else 1.

    Coordinates are 0-based; the groups are distinct non-empty sets, so the parities are
    orthonormal and Var(c * sum) = c^2 sum(weights^2) (1 with normalise). Targets (batch, 1)."""
    fn = "hypercube_sumprod"
    d = check_int("d", d, low=1, fn=fn)
    groups = _parse_indices(indices, d, fn)
    w = check_weights(weights, len(groups), "group", fn)
    noise_mean = check_float("noise_mean", noise_mean, fn=fn)
    noise_std = check_float("noise_std", noise_std, low=0.0, fn=fn)
    if normalise:
        norm = math.sqrt(sum(v * v for v in w))
        if norm == 0:
            raise ValueError(f"{fn}: normalise needs a non-zero weight")
        w = [v / norm for v in w]
    width = max(len(g) for g in groups)
    # column d of the extended input is a constant 1 that pads short groups
    idx = torch.tensor([g + [d] * (width - len(g)) for g in groups], dtype=torch.long, device=device).reshape(-1)
    coefs = torch.tensor(w, dtype=torch.float32, device=device)
    n_groups = len(groups)
    ones = torch.ones(batch_size, 1, device=device)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        X = torch.randint(0, 2, (batch_size, d), generator=gen, device=device).float().mul_(2).sub_(1)
        parities = torch.cat([X, ones], 1).index_select(1, idx).reshape(batch_size, n_groups, width).prod(-1)
        y = parities @ coefs
        if noise_std:
            y = y + noise_std * torch.randn(batch_size, generator=gen, device=device)
        if noise_mean:
            y = y + noise_mean
        return X, y.unsqueeze(1)

    batch.capturable = True  # type: ignore[attr-defined]  # device ops on gen only: may run inside a CUDA graph
    batch.indices = groups  # type: ignore[attr-defined]
    batch.weights = w  # type: ignore[attr-defined]
    return batch
