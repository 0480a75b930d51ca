"""Generated regression and binary classification tasks in the style of sklearn's
make_regression and make_classification, simplified and written in torch."""
from __future__ import annotations

import torch

from runner.registry import batchfn

from ._common import Batch, check_float, check_int


@batchfn("synthetic_regression")
def synthetic_regression(n_features: int, batch_size: int, n_informative: int | None = None, n_targets: int = 1,
                         noise: float = 0.0, *, gen: torch.Generator, device: torch.device) -> Batch:
    """x ~ N(0, I_n_features); y = x[:, :n_informative] @ C + noise * N(0, I_n_targets), C of shape
    (n_informative, n_targets) with Gaussian columns scaled to unit norm, drawn in the factory body
    (so Var(y_j) = 1 + noise^2). The informative features are the first n_informative (default:
    min(10, n_features), as sklearn's default 10); the rest are pure noise features. Unlike sklearn,
    no bias, no feature shuffling and unit-variance targets. Targets (batch, n_targets); `coef` is C."""
    fn = "synthetic_regression"
    n_features = check_int("n_features", n_features, low=1, fn=fn)
    n_inf = min(10, n_features) if n_informative is None else check_int("n_informative", n_informative, low=1, fn=fn)
    if n_inf > n_features:
        raise ValueError(f"{fn}: n_informative ({n_inf}) must be <= n_features ({n_features})")
    n_targets = check_int("n_targets", n_targets, low=1, fn=fn)
    noise = check_float("noise", noise, low=0.0, fn=fn)
    coef = torch.randn(n_inf, n_targets, generator=gen, device=device)
    coef = coef / coef.norm(dim=0, keepdim=True)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        X = torch.randn(batch_size, n_features, generator=gen, device=device)
        y = X[:, :n_inf] @ coef
        if noise:
            y = y + noise * torch.randn(batch_size, n_targets, generator=gen, device=device)
        return X, y

    batch.capturable = True  # type: ignore[attr-defined]  # device ops on gen only: may run inside a CUDA graph
    batch.coef = coef  # type: ignore[attr-defined]
    return batch


def _distinct_vertices(m: int, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """m distinct random vertices of {-1, 1}^n (m <= 2^n), as a float32 (m, n) tensor."""
    if n <= 16:
        codes = torch.randperm(2 ** n, generator=gen, device=device)[:m]
        bits = (codes.unsqueeze(1) >> torch.arange(n, device=device)) & 1
        return bits.float() * 2 - 1
    while True:  # 2^n >= 131072 vertices: a repeat among a few is rare; draw again if it happens
        V = torch.randint(0, 2, (m, n), generator=gen, device=device).float() * 2 - 1
        if torch.unique(V, dim=0).shape[0] == m:
            return V


@batchfn("synthetic_binary")
def synthetic_binary(n_features: int, batch_size: int, n_informative: int = 2, clusters_per_class: int = 2,
                     class_sep: float = 1.0, flip_y: float = 0.0, *, gen: torch.Generator, device: torch.device) -> Batch:
    """label y ~ U{0, 1}, cluster j ~ U{0..clusters_per_class-1}; x[:, :n_informative] = class_sep * v_(2j+y) + N(0, I),
    x[:, n_informative:] ~ N(0, I) (noise features); v_c are 2 * clusters_per_class distinct random vertices of
    {-1, 1}^n_informative drawn in the factory body (as make_classification, without its random covariances,
    redundant/repeated features and shuffling); a fraction flip_y of labels is then replaced by 1 - y.

    Labels are float32 0/1 of shape (batch,), for `loss: bce` (d_out = 1); they also work with
    `loss: cross_entropy` (the loop casts them to long; n_classes = 2 gives d_out = 2). `vertices` holds v."""
    fn = "synthetic_binary"
    n_features = check_int("n_features", n_features, low=1, fn=fn)
    n_inf = check_int("n_informative", n_informative, low=1, fn=fn)
    if n_inf > n_features:
        raise ValueError(f"{fn}: n_informative ({n_inf}) must be <= n_features ({n_features})")
    cpc = check_int("clusters_per_class", clusters_per_class, low=1, fn=fn)
    if 2 * cpc > 2 ** min(n_inf, 62):
        raise ValueError(f"{fn}: 2 classes x {cpc} clusters_per_class need {2 * cpc} hypercube vertices but "
                         f"n_informative = {n_inf} has only {2 ** n_inf}; raise n_informative or lower clusters_per_class")
    class_sep = check_float("class_sep", class_sep, low=0.0, fn=fn)
    flip_y = check_float("flip_y", flip_y, low=0.0, fn=fn)
    if flip_y > 1:
        raise ValueError(f"{fn}: flip_y is a fraction of labels and must be in [0, 1], got {flip_y}")
    vertices = _distinct_vertices(2 * cpc, n_inf, gen, device)
    centres = class_sep * vertices  # cluster c belongs to class c % 2

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 2, (batch_size,), generator=gen, device=device)
        j = torch.randint(0, cpc, (batch_size,), generator=gen, device=device)
        X = torch.randn(batch_size, n_features, generator=gen, device=device)
        X[:, :n_inf] += centres[2 * j + y]
        if flip_y:
            flip = torch.rand(batch_size, generator=gen, device=device) < flip_y
            y = torch.where(flip, 1 - y, y)
        return X, y.float()

    batch.capturable = True  # type: ignore[attr-defined]  # device ops on gen only: may run inside a CUDA graph
    batch.n_classes = 2  # type: ignore[attr-defined]
    batch.vertices = vertices  # type: ignore[attr-defined]
    return batch
