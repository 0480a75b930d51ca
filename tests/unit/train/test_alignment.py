"""Permutation alignment (weight matching): the assignment solver against brute force, and a network
whose hidden units were shuffled is matched back to the original exactly, computing the same function."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from runner.errors import UserError
from runner.train.alignment import as_arrays, as_tensors, linear_assignment, linear_chain, permuted, weight_matching
from runner.train.models import MLP, DeepLinear


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_the_assignment_is_the_cheapest_of_all_permutations(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        cost = rng.normal(size=(n, n))
        if n > 2:
            cost[0, 1] = cost[1, 0] = cost[0, 0]  # ties
        perm = linear_assignment(cost)
        best = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))
        assert sorted(perm.tolist()) == list(range(n))
        assert cost[np.arange(n), perm].sum() == pytest.approx(best, abs=1e-12)


def test_a_large_assignment_finds_a_planted_permutation():
    rng = np.random.default_rng(0)
    planted = rng.permutation(200)
    cost = rng.uniform(1, 2, size=(200, 200))
    cost[np.arange(200), planted] = 0.0
    assert np.array_equal(linear_assignment(cost), planted)


def _shuffled(weights, layers, rng):
    perms = [rng.permutation(weights[f"{name}.weight"].shape[0]) for name in layers[:-1]]
    return permuted(weights, layers, perms)


@pytest.mark.parametrize("build", [
    lambda: MLP(d_in=5, d_out=3, hidden_dims=[16, 8, 12], activation="tanh"),
    lambda: MLP(d_in=2, d_out=2, width=32, depth=2),
    lambda: DeepLinear(d_in=4, d_out=2, width=10, depth=3),
], ids=["mlp-hidden-dims", "mlp", "dln"])
def test_a_network_with_shuffled_hidden_units_is_matched_back_exactly(build):
    torch.manual_seed(0)
    model = build()
    layers = linear_chain(model)
    a = as_arrays(model)
    b = _shuffled(a, layers, np.random.default_rng(1))
    assert any(not np.array_equal(a[k], b[k]) for k in a)
    X = torch.randn(50, next(model.parameters()).shape[1])
    with torch.no_grad():
        expected = model(X)
        for name, p in model.named_parameters():  # the shuffled network computes the same function
            p.copy_(as_tensors(b, model)[name])
        torch.testing.assert_close(model(X), expected, rtol=1e-5, atol=1e-6)
    matched = weight_matching(a, b, layers)
    for k in a:
        np.testing.assert_array_equal(matched[k], a[k])


def test_matching_two_different_networks_keeps_the_function_and_moves_nearer():
    torch.manual_seed(0)
    one, two = MLP(d_in=3, d_out=2, width=24, depth=2), MLP(d_in=3, d_out=2, width=24, depth=2)
    layers = linear_chain(one)
    a, b = as_arrays(one), as_arrays(two)
    matched = weight_matching(a, b, layers)
    distance = lambda x, y: sum(float(((x[k] - y[k]) ** 2).sum()) for k in x)  # noqa: E731
    assert distance(a, matched) < distance(a, b)
    X = torch.randn(40, 3)
    with torch.no_grad():
        expected = two(X)
        for name, p in two.named_parameters():
            p.copy_(as_tensors(matched, two)[name])
        torch.testing.assert_close(two(X), expected, rtol=1e-5, atol=1e-6)


def test_a_model_that_is_not_a_chain_of_linear_layers_is_refused_with_the_reason():
    with pytest.raises(UserError, match=r"chain of linear layers .*other parameters: 1.weight"):
        linear_chain(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 1)))
    with pytest.raises(UserError, match="has 4 outputs but"):
        linear_chain(nn.ModuleDict({"a": nn.Linear(3, 4), "b": nn.Linear(5, 1)}))
    with pytest.raises(UserError, match="no linear layer"):
        linear_chain(nn.Sequential(nn.ReLU()))
