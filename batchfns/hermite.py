"""Gaussian inputs with a power-law covariance spectrum and targets made of normalised Hermite
monomials of the whitened principal coordinates (`powerlaw_hermite`)."""
from __future__ import annotations

import math
from typing import Any

import torch

from runner.registry import batchfn

from ._common import Batch, check_float, check_int, check_weights, coordinate

_FN = "powerlaw_hermite"


def hermite_table(z: torch.Tensor, max_degree: int) -> torch.Tensor:
    """Probabilists' Hermite polynomials He_0..He_max_degree of z, stacked on a new last axis.

    He_0 = 1, He_1 = z, He_{n+1} = z He_n - n He_{n-1} (not normalised: divide He_n by sqrt(n!))."""
    out = [torch.ones_like(z)]
    if max_degree >= 1:
        out.append(z)
    for n in range(1, max_degree):
        out.append(z * out[n] - n * out[n - 1])
    return torch.stack(out, dim=-1)


def parse_monomials(monomials: Any, d: int, fn: str = _FN) -> list[dict[int, int]]:
    """Monomials as a list of {coordinate: degree} with int keys, sorted by coordinate.

    Each entry is a mapping {coordinate: degree} (int keys as from YAML/Python, or digit strings
    as after a JSON round trip) or a list of coordinates where repetition raises the degree
    ([0, 0, 3] is {0: 2, 3: 1}). Coordinates are 0-based, degrees >= 1; repeats are refused."""
    if not isinstance(monomials, (list, tuple)) or not monomials:
        raise ValueError(f"{fn}: monomials must be a non-empty list such as [{{0: 1}}, {{0: 2}}, {{1: 1, 2: 1}}], got {monomials!r}")
    out: list[dict[int, int]] = []
    seen: dict[tuple[tuple[int, int], ...], int] = {}
    for m, entry in enumerate(monomials):
        where = f"monomials[{m}]"
        powers: dict[int, int] = {}
        if isinstance(entry, dict):
            for key, degree in entry.items():
                i = coordinate(key, d, where, fn)
                if i in powers:
                    raise ValueError(f"{fn}: {where}: coordinate {i} appears twice (as {key!r}); give it once with its total degree")
                powers[i] = check_int(f"{where} degree of coordinate {i}", degree, low=1, fn=fn)
        elif isinstance(entry, (list, tuple)):
            for key in entry:
                i = coordinate(key, d, where, fn)
                powers[i] = powers.get(i, 0) + 1
        else:
            raise ValueError(f"{fn}: {where} must be a mapping {{coordinate: degree}} or a list of coordinates, got {entry!r}")
        if not powers:
            raise ValueError(f"{fn}: {where} is empty: a monomial needs at least one coordinate of degree >= 1")
        key_ = tuple(sorted(powers.items()))
        if key_ in seen:
            raise ValueError(f"{fn}: {where} repeats monomials[{seen[key_]}] ({dict(key_)}); list it once and add the weights")
        seen[key_] = m
        out.append(dict(key_))
    return out


def powerlaw_spectrum(d: int, alpha: float, offset: float, normalise: bool) -> torch.Tensor:
    """lambda_i = (i + offset)^(-alpha) for i = 1..d (float64), divided by its sum when normalise."""
    i = torch.arange(1, d + 1, dtype=torch.float64)
    lam = (i + offset).pow(-alpha)
    return lam / lam.sum() if normalise else lam


@batchfn("powerlaw_hermite")
def powerlaw_hermite(d: int, monomials: list, batch_size: int, alpha: float = 1.0, offset: float = 0.0,
                     weights: list | None = None, noise: float = 0.0, normalise_spectrum: bool = True,
                     random_rotation: bool = False, *, gen: torch.Generator, device: torch.device) -> Batch:
    """x = sum_i sqrt(lambda_i) z_i e_i, z ~ N(0, I_d), lambda_i = (i + offset)^-alpha (i = 1..d, / sum if normalise_spectrum);
    y = sum_m weights[m] prod_{(i, k) in monomials[m]} He_k(z_i) / sqrt(k!) + noise * N(0, 1).

    Principal directions e_i: the standard basis, or (random_rotation) the columns of a Haar-random
    orthogonal matrix drawn in the factory body, shared by train and test. Coordinates in
    `monomials` are 0-based (coordinate 0 has the largest variance lambda_1). Distinct monomials
    are orthonormal under N(0, I), so Var(y) = sum(weights^2) + noise^2 and E[y] = 0.
    The batch function carries `spectrum` (lambda, float32), `rotation` (d x d or None),
    `monomials` and `weights`; the whitened coordinates are z = (x @ rotation) / sqrt(spectrum)."""
    d = check_int("d", d, low=1, fn=_FN)
    alpha = check_float("alpha", alpha, low=0.0, fn=_FN)
    offset = check_float("offset", offset, fn=_FN)
    if offset <= -1:
        raise ValueError(f"{_FN}: offset must be > -1 so that i + offset > 0 for i = 1, got {offset}")
    noise = check_float("noise", noise, low=0.0, fn=_FN)
    monos = parse_monomials(monomials, d)
    w = check_weights(weights, len(monos), "monomial", _FN)

    lam = powerlaw_spectrum(d, alpha, offset, bool(normalise_spectrum))
    sqrt_lam = lam.sqrt().to(device=device, dtype=torch.float32)
    rotation = None
    if random_rotation:
        G = torch.randn(d, d, generator=gen, device=device, dtype=torch.float32)
        Q, R = torch.linalg.qr(G.double())
        rotation = (Q * torch.sign(torch.diagonal(R)).masked_fill(torch.diagonal(R) == 0, 1.0)).float()
        rotation_t = rotation.T.contiguous()

    # Gather plan: the Hermite table of the coordinates used, flattened to (batch, n_used * (K + 1));
    # monomial m multiplies the columns flat[m, :] (padded with He_0 = 1).
    used = sorted({i for mono in monos for i in mono})
    col = {i: c for c, i in enumerate(used)}
    max_deg = max(k for mono in monos for k in mono.values())
    width = max(len(mono) for mono in monos)
    flat = [[col[i] * (max_deg + 1) + k for i, k in mono.items()] + [0] * (width - len(mono)) for mono in monos]
    flat_idx = torch.tensor(flat, dtype=torch.long, device=device).reshape(-1)
    used_idx = torch.tensor(used, dtype=torch.long, device=device)
    coefs = torch.tensor([wm / math.sqrt(math.prod(math.factorial(k) for k in mono.values())) for wm, mono in zip(w, monos)],
                         dtype=torch.float32, device=device)
    n_mono = len(monos)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(batch_size, d, generator=gen, device=device)
        X = z * sqrt_lam
        if rotation is not None:
            X = X @ rotation_t
        H = hermite_table(z.index_select(1, used_idx), max_deg).reshape(batch_size, -1)
        y = H.index_select(1, flat_idx).reshape(batch_size, n_mono, width).prod(-1) @ coefs
        if noise:
            y = y + noise * torch.randn(batch_size, generator=gen, device=device)
        return X, y.unsqueeze(1)

    batch.capturable = True  # type: ignore[attr-defined]  # device ops on gen only: may run inside a CUDA graph
    batch.spectrum = lam.to(device=device, dtype=torch.float32)  # type: ignore[attr-defined]
    batch.rotation = rotation  # type: ignore[attr-defined]
    batch.monomials = monos  # type: ignore[attr-defined]
    batch.weights = w  # type: ignore[attr-defined]
    return batch
