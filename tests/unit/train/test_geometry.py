"""Weight-space geometry with known answers: a straight trajectory has one principal component with all
the variance, paths are exact at their ends, filter-normalised directions take each row's norm, the
barrier is the path's peak over the mean of its ends, and a fitted Bezier curve lowers the midpoint."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from runner.train.alignment import as_arrays
from runner.train.geometry import (
    Evaluator,
    barrier,
    bezier,
    filter_normalised_direction,
    fit_bezier,
    flatten,
    lerp,
    plane,
    trajectory_pca,
    unflatten,
)
from runner.train.models import MLP


def _weights(rng, shapes=(("w", (4, 3)), ("b", (4,)))):
    return {k: rng.normal(size=s) for k, s in shapes}


def test_a_straight_trajectory_has_one_component_with_all_the_variance():
    rng = np.random.default_rng(0)
    start, direction = _weights(rng), _weights(rng)
    points = [{k: start[k] + s * direction[k] for k in start} for s in (0.0, 0.3, 0.5, 1.2, 2.0)]
    pca = trajectory_pca(points, [0, 10, 20, 30, 40])
    assert pca.explained_variance_ratio[0] == pytest.approx(1.0)
    assert pca.explained_variance_ratio[1] == pytest.approx(0.0, abs=1e-12)
    unit = flatten(direction) / np.linalg.norm(flatten(direction))
    assert abs(pca.directions[0] @ unit) == pytest.approx(1.0)
    np.testing.assert_allclose(pca.coords[-1], 0.0, atol=1e-12)  # centred on the final point
    spacing = np.abs(np.diff(pca.coords[:, 0]))
    np.testing.assert_allclose(spacing / np.linalg.norm(flatten(direction)), [0.3, 0.2, 0.7, 0.8])


def test_a_trajectory_in_a_plane_is_explained_by_two_components():
    rng = np.random.default_rng(1)
    origin, u, v = _weights(rng), _weights(rng), _weights(rng)
    points = [{k: origin[k] + np.cos(t) * u[k] + np.sin(2 * t) * v[k] for k in origin} for t in np.linspace(0, 3, 9)]
    ratio = trajectory_pca(points, list(range(9)), components=3).explained_variance_ratio
    assert ratio[:2].sum() == pytest.approx(1.0)
    assert ratio[2] == pytest.approx(0.0, abs=1e-12)


def test_paths_are_exact_at_their_ends_and_flattening_round_trips():
    rng = np.random.default_rng(2)
    a, b, bend = _weights(rng), _weights(rng), _weights(rng)
    for path in (lambda t: lerp(a, b, t), lambda t: bezier(a, bend, b, t)):
        for k in a:
            np.testing.assert_array_equal(path(0.0)[k], a[k])
            np.testing.assert_array_equal(path(1.0)[k], b[k])
    back = unflatten(flatten(a), a)
    assert all(np.array_equal(back[k], a[k]) for k in a)
    grid = plane(a, b, bend, np.array([0.0, 1.0]), np.array([0.0, 2.0]))
    np.testing.assert_allclose(grid[1][1]["w"], a["w"] + b["w"] + 2 * bend["w"])
    assert barrier(np.array([1.0, 3.0, 2.0])) == pytest.approx(1.5)
    assert barrier(np.array([1.0, 0.5, 1.0])) == pytest.approx(0.0)


def test_filter_normalised_directions_take_each_rows_norm_and_leave_biases_out():
    rng = np.random.default_rng(3)
    weights = _weights(rng)
    d = filter_normalised_direction(weights, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.norm(d["w"], axis=1), np.linalg.norm(weights["w"], axis=1))
    np.testing.assert_array_equal(d["b"], 0.0)
    again = filter_normalised_direction(weights, np.random.default_rng(0))
    np.testing.assert_array_equal(again["w"], d["w"])


def test_a_fitted_bezier_curve_passes_lower_than_the_straight_line():
    torch.manual_seed(0)
    X = torch.randn(256, 2)
    y = (X[:, 0] * X[:, 1] > 0).long()
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = MLP(d_in=2, d_out=2, width=16, depth=2)
        opt = torch.optim.Adam(model.parameters(), lr=0.02)
        for _ in range(300):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X), y).backward()
            opt.step()
        models.append(model)
    a, b = as_arrays(models[0]), as_arrays(models[1])
    evaluate = Evaluator(models[0], "cross_entropy", X, y)
    straight = evaluate(lerp(a, b, 0.5))[0]
    bend = fit_bezier(models[0], "cross_entropy", a, b, lambda step: (X, y), steps=200, lr=0.01)
    curved = evaluate(bezier(a, bend, b, 0.5))[0]
    assert curved < straight / 2
    loss, acc = evaluate(a)
    assert 0 <= acc <= 1 and loss < straight
