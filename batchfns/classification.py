"""Two-dimensional classification sets in the style of sklearn's make_moons, make_circles,
make_blobs and the XOR quadrants, written in torch (no sklearn) and drawn from `gen`.

Each returns float32 inputs of shape (batch, 2) and int64 labels of shape (batch,) for
`loss: cross_entropy` (0/1 labels of the two-class sets also work with `loss: bce`); the batch
function carries `n_classes`. Samples are i.i.d.: each label is drawn uniformly, then the point.

Standardisation (standardise: true, the default): features are shifted and scaled to zero mean
and unit std using statistics of a reference sample of REFERENCE_SAMPLES (10,000) points drawn
from `gen` in the factory body. The train and test factories are created with the same data seed,
so they draw the same reference sample and apply the same affine map; the statistics are those of
the (infinite) training distribution up to ~1% sampling error, not of the finite training set.
The reference sample is drawn whether or not standardise is on, so toggling it leaves the
samples themselves unchanged. The map is on the batch function as `feature_mean`, `feature_std`.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from runner.registry import batchfn

from ._common import Batch, check_float, check_int, standardiser

Sampler = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


def _standardised(sample: Sampler, batch_size: int, n_classes: int, standardise: bool, gen: torch.Generator,
                  key: tuple) -> Batch:
    """`sample` as a batch function of batch_size, standardised; `key`: the set and what shapes it
    (the reference sample of the same key and generator state is drawn once: see standardiser)."""
    mean, inv_std = standardiser(sample, bool(standardise), gen, key)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        X, y = sample(batch_size)
        return (X - mean) * inv_std, y

    batch.capturable = True  # type: ignore[attr-defined]  # device ops on gen only: may run inside a CUDA graph
    batch.n_classes = n_classes  # type: ignore[attr-defined]
    batch.feature_mean = mean  # type: ignore[attr-defined]
    batch.feature_std = 1.0 / inv_std  # type: ignore[attr-defined]
    return batch


def _labels(n: int, n_classes: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(0, n_classes, (n,), generator=gen, device=device)


@batchfn("moons")
def moons(batch_size: int, noise: float = 0.1, standardise: bool = True, *, gen: torch.Generator, device: torch.device) -> Batch:
    """Two interleaving half circles: t ~ U[0, pi]; label 0: (cos t, sin t), label 1: (1 - cos t, 1/2 - sin t);
    plus noise * N(0, I_2), then standardised (see the module docstring). n_classes = 2."""
    noise = check_float("noise", noise, low=0.0, fn="moons")

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = _labels(n, 2, gen, device)
        t = math.pi * torch.rand(n, generator=gen, device=device)
        inner, cos, sin = y.bool(), t.cos(), t.sin()
        X = torch.stack([torch.where(inner, 1 - cos, cos), torch.where(inner, 0.5 - sin, sin)], 1)
        return X + noise * torch.randn(n, 2, generator=gen, device=device), y

    return _standardised(sample, batch_size, 2, standardise, gen, ("moons", noise))


@batchfn("circles")
def circles(batch_size: int, noise: float = 0.05, circle_factor: float = 0.5, standardise: bool = True, *,
            gen: torch.Generator, device: torch.device) -> Batch:
    """Two concentric circles: t ~ U[0, 2 pi]; label 0: (cos t, sin t), label 1: circle_factor * (cos t, sin t);
    plus noise * N(0, I_2), then standardised. n_classes = 2; circle_factor in (0, 1) is the inner radius."""
    noise = check_float("noise", noise, low=0.0, fn="circles")
    circle_factor = check_float("circle_factor", circle_factor, low=0.0, strict=True, fn="circles")
    if circle_factor >= 1:
        raise ValueError(f"circles: circle_factor (inner radius / outer radius) must be in (0, 1), got {circle_factor}")

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = _labels(n, 2, gen, device)
        t = 2 * math.pi * torch.rand(n, generator=gen, device=device)
        r = torch.where(y.bool(), circle_factor, 1.0)
        X = torch.stack([r * t.cos(), r * t.sin()], 1)
        return X + noise * torch.randn(n, 2, generator=gen, device=device), y

    return _standardised(sample, batch_size, 2, standardise, gen, ("circles", noise, circle_factor))


@batchfn("gaussian_clusters")
def gaussian_clusters(batch_size: int, n_clusters: int = 3, noise: float = 0.3, standardise: bool = True, *,
                      gen: torch.Generator, device: torch.device) -> Batch:
    """Blobs: label j ~ U{0..n_clusters-1}; x = c_j + noise * N(0, I_2), centres c_j = (cos 2 pi j/n, sin 2 pi j/n)
    evenly spaced on the unit circle (fixed, not random); then standardised. n_classes = n_clusters (2 to 4 intended)."""
    n_clusters = check_int("n_clusters", n_clusters, low=2, fn="gaussian_clusters")
    noise = check_float("noise", noise, low=0.0, fn="gaussian_clusters")
    angles = 2 * math.pi * torch.arange(n_clusters, device=device, dtype=torch.float32) / n_clusters
    centres = torch.stack([angles.cos(), angles.sin()], 1)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = _labels(n, n_clusters, gen, device)
        return centres[y] + noise * torch.randn(n, 2, generator=gen, device=device), y

    batch = _standardised(sample, batch_size, n_clusters, standardise, gen, ("gaussian_clusters", n_clusters, noise))
    batch.centres = centres  # type: ignore[attr-defined]
    return batch


@batchfn("xor")
def xor(batch_size: int, noise: float = 0.1, standardise: bool = True, *, gen: torch.Generator, device: torch.device) -> Batch:
    """XOR quadrants: s ~ U[-1, 1]^2, label = 1 if s_1 s_2 < 0 else 0 (quadrants II and IV are class 1);
    x = s + noise * N(0, I_2), then standardised. n_classes = 2."""
    noise = check_float("noise", noise, low=0.0, fn="xor")

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = 2 * torch.rand(n, 2, generator=gen, device=device) - 1
        y = (s[:, 0] * s[:, 1] < 0).long()
        return s + noise * torch.randn(n, 2, generator=gen, device=device), y

    return _standardised(sample, batch_size, 2, standardise, gen, ("xor", noise))
