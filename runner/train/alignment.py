"""Aligning two networks' hidden units by permutation (weight matching, Ainsworth et al. 2022).

Two trained MLPs that compute the same function up to a reordering of hidden units sit far apart in
weight space; the straight path between them crosses a loss barrier that says nothing about their
solutions. Weight matching reorders the second network's hidden units to maximise the inner product
of matching weights, layer by layer (coordinate descent, each layer an assignment problem), without
changing the function it computes. It applies to a chain of linear layers with elementwise
activations between them: the built-in `mlp` (sp) and `dln`.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ..errors import UserError

Weights = dict[str, np.ndarray]


def linear_assignment(cost: np.ndarray) -> np.ndarray:
    """The permutation `perm` minimising sum_i cost[i, perm[i]] (a square matrix): the Hungarian
    method with potentials, O(n^3), each augmenting path's scan vectorised over columns."""
    cost = np.asarray(cost, dtype=np.float64)
    n = cost.shape[0]
    if cost.shape != (n, n):
        raise ValueError(f"linear_assignment needs a square matrix, got shape {cost.shape}")
    u, v = np.zeros(n + 1), np.zeros(n + 1)
    owner = np.zeros(n + 1, dtype=np.int64)  # owner[j]: the row (1-based) holding column j; 0: free
    way = np.zeros(n + 1, dtype=np.int64)
    for row in range(1, n + 1):
        owner[0], col = row, 0
        slack = np.full(n + 1, np.inf)
        used = np.zeros(n + 1, dtype=bool)
        while True:
            used[col] = True
            r = owner[col]
            reduced = cost[r - 1] - u[r] - v[1:]
            free = ~used[1:]
            better = free & (reduced < slack[1:])
            slack[1:][better] = reduced[better]
            way[1:][better] = col
            candidates = np.where(free, slack[1:], np.inf)
            nxt = int(np.argmin(candidates)) + 1
            delta = candidates[nxt - 1]
            done = np.nonzero(used)[0]
            u[owner[done]] += delta
            v[done] -= delta
            slack[1:][free] -= delta
            col = nxt
            if owner[col] == 0:
                break
        while col:  # flip the augmenting path
            prev = way[col]
            owner[col] = owner[prev]
            col = prev
    perm = np.empty(n, dtype=np.int64)
    perm[owner[1:] - 1] = np.arange(n)
    return perm


def linear_chain(model: nn.Module) -> list[str]:
    """The parameter-name prefixes of the model's linear layers, input to output, when the model is a
    chain of them (each layer's outputs the next one's inputs, nothing else trainable); UserError
    naming why not otherwise (alignment would change what the model computes)."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    owned = {f"{name}.{p}" for name, m in linears for p, _ in m.named_parameters(recurse=False)}
    others = [n for n, _ in model.named_parameters() if n not in owned]
    if not linears or others:
        raise UserError(f"align: permutation needs a chain of linear layers (mlp, dln); {type(model).__name__} "
                        f"has {'other parameters: ' + ', '.join(others[:3]) if others else 'no linear layer'}")
    for (a, first), (b, second) in zip(linears, linears[1:]):
        if first.out_features != second.in_features:
            raise UserError(f"align: permutation needs a chain of linear layers: {a} has {first.out_features} "
                            f"outputs but {b} takes {second.in_features}")
    if any(hasattr(m, "width_mult") for _, m in linears):
        raise UserError("align: permutation does not apply to muP models (their readout scales by base shapes)")
    return [name for name, _ in linears]


def weight_matching(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], layers: list[str],
                    max_rounds: int = 100, seed: int = 0) -> Weights:
    """`b`'s weights with its hidden units permuted to match `a`'s (the same function as `b`).

    Each round visits the hidden layers in a random order and re-solves each one's permutation
    given the others: similarity[i, j] = <a's unit i, b's unit j> over its incoming weights, its bias
    and its outgoing weights. Stops when a round changes nothing (or after max_rounds)."""
    a64 = {k: np.asarray(v, dtype=np.float64) for k, v in a.items()}
    b64 = {k: np.asarray(v, dtype=np.float64) for k, v in b.items()}
    hidden = [a64[f"{name}.weight"].shape[0] for name in layers[:-1]]
    perms = [np.arange(n) for n in hidden]
    rng = np.random.default_rng(seed)
    for _ in range(max_rounds):
        changed = False
        for h in rng.permutation(len(hidden)):
            similarity = _unit_similarity(a64, b64, layers, perms, int(h))
            new = linear_assignment(-similarity)
            if not np.array_equal(new, perms[h]):
                perms[h], changed = new, True
        if not changed:
            break
    return permuted(b, layers, perms)


def _unit_similarity(a: Weights, b: Weights, layers: list[str], perms: list[np.ndarray], h: int) -> np.ndarray:
    """[n, n]: how well b's hidden unit j of layer h matches a's unit i, the other layers' permutations fixed."""
    into, out = layers[h], layers[h + 1]
    wa, wb = a[f"{into}.weight"], b[f"{into}.weight"]
    if h > 0:
        wb = wb[:, perms[h - 1]]  # b's inputs to this layer, in a's order of the previous layer's units
    similarity = wa @ wb.T
    if f"{into}.bias" in a:
        similarity += np.outer(a[f"{into}.bias"], b[f"{into}.bias"])
    va, vb = a[f"{out}.weight"], b[f"{out}.weight"]
    if h + 1 < len(perms):
        vb = vb[perms[h + 1]]  # b's next layer's outputs, in a's order
    return similarity + va.T @ vb


def permuted(weights: Mapping[str, np.ndarray], layers: list[str], perms: list[np.ndarray]) -> Weights:
    """The weights with hidden layer h's units reordered: new unit i is old unit perms[h][i]."""
    out = {k: np.array(v, copy=True) for k, v in weights.items()}
    for h, perm in enumerate(perms):
        into, nxt = layers[h], layers[h + 1]
        out[f"{into}.weight"] = out[f"{into}.weight"][perm]
        if f"{into}.bias" in out:
            out[f"{into}.bias"] = out[f"{into}.bias"][perm]
        out[f"{nxt}.weight"] = out[f"{nxt}.weight"][:, perm]
    return out


def as_arrays(model: nn.Module) -> Weights:
    """A model's parameters as float64 arrays by name (what alignment and paths work on)."""
    return {name: p.detach().double().cpu().numpy() for name, p in model.named_parameters()}


def as_tensors(weights: Mapping[str, np.ndarray], like: nn.Module) -> dict[str, torch.Tensor]:
    """Arrays back as tensors of the model's dtype and device, by parameter name."""
    params = dict(like.named_parameters())
    return {k: torch.as_tensor(np.asarray(weights[k])).to(dtype=p.dtype, device=p.device) for k, p in params.items()}
