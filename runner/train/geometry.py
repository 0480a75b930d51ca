"""A trained model's loss over weight space: along paths between solutions (linear or a fitted
quadratic Bezier curve), on the plane of a trajectory's principal components, and along random
filter-normalised directions (Li et al. 2018).

Weights travel as float64 arrays by parameter name (runner.train.alignment's form); the loss of a
point is the job's own loss on a fixed evaluation set, computed by writing the point into the
model's parameters (no_grad), as the landscape grabs do.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .alignment import Weights, as_tensors
from .optim import LOSSES, accuracy

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Evaluator:
    """The loss (and accuracy, for a classification loss) of a model at given weights on one batch."""

    model: nn.Module
    loss: str
    X: torch.Tensor
    y: torch.Tensor

    def __call__(self, weights: Mapping[str, np.ndarray]) -> tuple[float, float | None]:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in as_tensors(weights, self.model).items():
                params[name].copy_(value)
            out = self.model(self.X)
            acc = accuracy(self.loss, out, self.y)
            return float(LOSSES[self.loss](out, self.y)), None if acc is None else float(acc)

    def along(self, points: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """{"loss": [n], "accuracy": [n] (classification only)} at each point."""
        values = [self(p) for p in points]
        out = {"loss": np.array([v[0] for v in values])}
        if values and values[0][1] is not None:
            out["accuracy"] = np.array([v[1] for v in values])
        return out


def lerp(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], t: float) -> Weights:
    """(1 - t) a + t b, exact at t = 0 and t = 1."""
    return {k: (1.0 - t) * a[k] + t * b[k] for k in a}


def bezier(a: Mapping[str, np.ndarray], bend: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray],
           t: float) -> Weights:
    """The quadratic Bezier curve through a (t = 0) and b (t = 1) with control point `bend`."""
    return {k: (1 - t) ** 2 * a[k] + 2 * t * (1 - t) * bend[k] + t ** 2 * b[k] for k in a}


def barrier(loss: np.ndarray) -> float:
    """The path's loss barrier: its highest loss minus the mean of its two end points' losses."""
    return float(np.max(loss) - (loss[0] + loss[-1]) / 2)


def fit_bezier(model: nn.Module, loss: str, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray],
               batches: Callable[[int], Batch], steps: int, lr: float, seed: int = 0) -> Weights:
    """The control point of a low-loss quadratic Bezier curve from a to b (Garipov et al. 2018): it
    starts at the midpoint and follows Adam on the loss at a uniformly drawn t of each step's batch."""
    if steps < 0 or not lr > 0:
        raise ValueError(f"fitting a Bezier curve needs steps >= 0 and lr > 0 (got {steps}, {lr})")
    ta, tb = as_tensors(a, model), as_tensors(b, model)
    bend = {k: ((ta[k] + tb[k]) / 2).clone().requires_grad_(True) for k in ta}
    optimizer = torch.optim.Adam(bend.values(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = LOSSES[loss]
    was_training = model.training
    model.train(False)
    for step in range(steps):
        t = float(torch.rand((), generator=gen))
        point = {k: (1 - t) ** 2 * ta[k] + 2 * t * (1 - t) * bend[k] + t ** 2 * tb[k] for k in ta}
        X, y = batches(step)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(torch.func.functional_call(model, point, (X,)), y).backward()
        optimizer.step()
    model.train(was_training)
    return {k: v.detach().double().cpu().numpy() for k, v in bend.items()}


@dataclass
class Trajectory:
    """PCA of a run's weights over time, centred on its final point (Li et al. 2018)."""

    steps: list[int]
    directions: np.ndarray           # [components, parameters], unit rows
    explained_variance_ratio: np.ndarray
    coords: np.ndarray               # [steps, components]: each point's offset from the final one


def trajectory_pca(points: Sequence[Mapping[str, np.ndarray]], steps: Sequence[int], components: int = 2
                   ) -> Trajectory:
    """The principal directions of the offsets of every point from the last one (centred, as PCA is),
    their share of the variance, and each point's coordinates along them."""
    if len(points) < 2:
        raise ValueError(f"a trajectory needs the weights of at least two steps, got {len(points)}")
    flat = np.stack([flatten(p) for p in points])
    offsets = flat - flat[-1]
    centred = offsets - offsets.mean(0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular ** 2
    total = variance.sum()
    k = min(components, len(variance))
    ratio = variance[:k] / total if total > 0 else np.zeros(k)
    directions = vt[:k]
    return Trajectory(list(steps), directions, ratio, offsets @ directions.T)


def flatten(weights: Mapping[str, np.ndarray]) -> np.ndarray:
    """One vector of every parameter, in the mapping's order."""
    return np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in weights.values()])


def unflatten(vector: np.ndarray, like: Mapping[str, np.ndarray]) -> Weights:
    """A vector back into arrays shaped as `like`'s."""
    out, at = {}, 0
    for k, v in like.items():
        n = int(np.prod(np.shape(v), dtype=np.int64))
        out[k] = vector[at:at + n].reshape(np.shape(v))
        at += n
    return out


def plane(centre: Mapping[str, np.ndarray], d1: Mapping[str, np.ndarray], d2: Mapping[str, np.ndarray] | None,
          alphas: np.ndarray, betas: np.ndarray | None) -> list[list[Weights]]:
    """The points centre + alpha d1 (+ beta d2): a row per beta (one row without d2), a column per alpha."""
    rows = [0.0] if d2 is None or betas is None else list(betas)
    return [[{k: centre[k] + a * d1[k] + (beta * d2[k] if d2 is not None else 0.0) for k in centre}
             for a in alphas] for beta in rows]


def filter_normalised_direction(weights: Mapping[str, np.ndarray], rng: np.random.Generator) -> Weights:
    """A Gaussian direction scaled filter by filter to the weights' norms (Li et al. 2018): each row
    of a weight matrix (one unit's incoming weights) gets the norm of that row of the weights; vectors
    (biases) get zero, as the paper leaves biases and normalisation parameters out."""
    out = {}
    for k, w in weights.items():
        w = np.asarray(w, dtype=np.float64)
        if w.ndim < 2:
            out[k] = np.zeros_like(w)
            continue
        d = rng.standard_normal(w.shape)
        rows_w = w.reshape(w.shape[0], -1)
        rows_d = d.reshape(d.shape[0], -1)
        scale = np.linalg.norm(rows_w, axis=1) / np.maximum(np.linalg.norm(rows_d, axis=1), 1e-12)
        out[k] = (rows_d * scale[:, None]).reshape(w.shape)
    return out
