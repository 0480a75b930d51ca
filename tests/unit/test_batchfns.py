"""The built-in batch functions (batchfns): shapes, determinism, train/test sharing, statistics
against analytic values, argument checks, and one end-to-end run each through runner.train."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from numpy.polynomial import hermite_e

import batchfns
from runner.registry import registered
from runner.train.loop import derive_seeds, train
from runner.train.plan import check_config

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")

# One small valid configuration per batch function (batch_size, gen and device come later).
CASES: dict[str, dict] = {
    "gaussian_teacher": dict(d=5, k=3),
    "powerlaw_hermite": dict(d=6, monomials=[{0: 1}, {1: 1}, {0: 2}, {2: 1, 3: 1}], alpha=1.5, offset=0.5,
                             random_rotation=True, noise=0.1),
    "hypercube_sumprod": dict(d=6, indices=[[0], [1, 2], [3, 4, 5]], weights=[1.0, -0.5, 2.0], noise_std=0.1),
    "linear_teacher": dict(d=5, out_dim=3, noise=0.1),
    "moons": dict(noise=0.1),
    "circles": dict(noise=0.05),
    "gaussian_clusters": dict(n_clusters=4),
    "xor": dict(noise=0.1),
    "synthetic_regression": dict(n_features=7, n_informative=3, n_targets=2, noise=0.1),
    "synthetic_binary": dict(n_features=6, n_informative=3, flip_y=0.05),
}
NEW = [name for name in CASES if name != "gaussian_teacher"]
CLASSIFIERS = {"moons": 2, "circles": 2, "gaussian_clusters": 4, "xor": 2, "synthetic_binary": 2}


def make(name: str, batch_size: int, seed: int = 0, **overrides):
    fn = registered("batchfn")[name]
    gen = torch.Generator().manual_seed(seed)
    return fn(**{**CASES.get(name, {}), **overrides}, batch_size=batch_size, gen=gen, device=CPU), gen


def draw(name: str, n: int, seed: int = 0, **overrides) -> tuple[torch.Tensor, torch.Tensor, object]:
    batch, _ = make(name, n, seed, **overrides)
    X, y = batch(0)
    return X, y, batch


def loop_factories(name: str, n_test: int, n_train: int, seed: int = 0, **overrides):
    """The two factory calls the trainloop makes: test (data seed, then reseeded) and train."""
    seeds = derive_seeds(seed)
    test, gen = make(name, n_test, seeds["data"], **overrides)
    gen.manual_seed(seeds["test"])
    train_fn, _ = make(name, n_train, seeds["data"], **overrides)
    return test, train_fn


# --- common contract ---------------------------------------------------------------------------

def test_every_builtin_is_registered_and_validates():
    table = registered("batchfn")
    assert set(CASES) <= set(table)
    assert table["gaussian_teacher"] is batchfns.gaussian_teacher
    for name, kwargs in CASES.items():
        cfg = check_config({"batchfn": name, "model": "mlp", "batch_size": 8, **kwargs})
        assert cfg["batchfn"] == name


@pytest.mark.parametrize("name", list(CASES))
def test_shapes_dtypes_and_determinism(name):
    before = torch.get_rng_state()
    batch, _ = make(name, 33, seed=5)
    X, y = batch(0)
    X2, y2 = batch(1)
    assert torch.equal(torch.get_rng_state(), before), "the global RNG must not be used"
    assert X.dtype == torch.float32 and X.device.type == "cpu" and X.shape[0] == 33 and X.dim() == 2
    assert y.shape[0] == 33
    if name in CLASSIFIERS:
        assert batch.n_classes == CLASSIFIERS[name]
        assert y.shape == (33,)
        assert y.dtype == (torch.float32 if name == "synthetic_binary" else torch.long)
        assert int(y.min()) >= 0 and int(y.max()) < batch.n_classes
    else:
        assert y.dim() == 2 and y.dtype == torch.float32
    assert not torch.equal(X, X2)  # online: a fresh batch every step
    again, _ = make(name, 33, seed=5)
    (Xa, ya), (Xb, yb) = again(0), again(1)
    assert torch.equal(Xa, X) and torch.equal(ya, y) and torch.equal(Xb, X2) and torch.equal(yb, y2)
    other, _ = make(name, 33, seed=6)
    assert not torch.equal(other(0)[0], X)


@pytest.mark.parametrize("name", NEW)
def test_train_and_test_factories_share_what_the_body_draws(name):
    test, train_fn = loop_factories(name, n_test=50, n_train=70)
    X_test, _ = test(0)
    X_train, _ = train_fn(0)
    assert X_test.shape[0] == 50 and X_train.shape[0] == 70
    assert not torch.equal(X_test[:50], X_train[:50])  # different streams
    for attr in ("rotation", "spectrum", "teacher_weights", "feature_mean", "feature_std", "coef", "vertices", "centres"):
        a, b = getattr(test, attr, None), getattr(train_fn, attr, None)
        assert (a is None) == (b is None)
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), attr


@pytest.mark.parametrize("name", NEW)
def test_errors_name_the_parameter(name):
    bad = {
        "powerlaw_hermite": ({"offset": -1.0}, "offset"),
        "hypercube_sumprod": ({"indices": [[0], [6]]}, "out of range"),
        "linear_teacher": ({"teacher": "orthogonal"}, "teacher must be one of diagonal, random_normal"),
        "moons": ({"noise": -0.1}, "noise must be >= 0"),
        "circles": ({"circle_factor": 1.5}, "circle_factor"),
        "gaussian_clusters": ({"n_clusters": 1}, "n_clusters must be >= 2"),
        "xor": ({"noise": float("nan")}, "noise must be a finite number"),
        "synthetic_regression": ({"n_informative": 8}, r"n_informative \(8\) must be <= n_features \(7\)"),
        "synthetic_binary": ({"n_informative": 1}, "need 4 hypercube vertices"),
    }[name]
    with pytest.raises(ValueError, match=bad[1]):
        make(name, 4, **bad[0])


# --- powerlaw_hermite ----------------------------------------------------------------------------

def _he(z: np.ndarray, k: int) -> np.ndarray:
    """Normalised probabilists' Hermite polynomial He_k(z) / sqrt(k!) via numpy (an independent reference)."""
    return hermite_e.hermeval(z, [0] * k + [1]) / math.sqrt(math.factorial(k))


def test_spectrum_is_the_documented_power_law():
    d, alpha, offset = 7, 1.3, 2.0
    _, _, raw = draw("powerlaw_hermite", 2, d=d, alpha=alpha, offset=offset, normalise_spectrum=False, random_rotation=False)
    expected = np.array([(i + offset) ** -alpha for i in range(1, d + 1)])
    np.testing.assert_allclose(raw.spectrum.numpy(), expected, rtol=1e-6)
    _, _, normed = draw("powerlaw_hermite", 2, d=d, alpha=alpha, offset=offset, random_rotation=False)
    assert float(normed.spectrum.sum()) == pytest.approx(1.0, rel=1e-6)  # default: normalised to sum 1
    np.testing.assert_allclose(normed.spectrum.numpy(), expected / expected.sum(), rtol=1e-6)
    assert normed.rotation is None


@pytest.mark.parametrize("rotate", [False, True])
def test_powerlaw_input_covariance_matches_the_spectrum(rotate):
    d, n = 8, 40_000
    X, _, b = draw("powerlaw_hermite", n, seed=1, d=d, alpha=1.0, offset=0.0, random_rotation=rotate)
    cov = (X.T.double() @ X.double()) / n
    lam = b.spectrum.double()
    if rotate:
        R = b.rotation.double()
        assert torch.allclose(R.T @ R, torch.eye(d, dtype=torch.float64), atol=1e-5)
        assert not torch.allclose(R.abs(), torch.eye(d, dtype=torch.float64), atol=0.1)
        cov = R.T @ cov @ R  # back to principal coordinates
    np.testing.assert_allclose(torch.diagonal(cov).numpy(), lam.numpy(), rtol=0.05)
    off = cov - torch.diag(torch.diagonal(cov))
    assert float(off.abs().max()) < 0.03 * float(lam[0])
    eig = torch.linalg.eigvalsh(cov).flip(0)
    np.testing.assert_allclose(eig.numpy(), lam.numpy(), rtol=0.06)


def test_hermite_targets_equal_the_formula_on_whitened_coordinates():
    monos = [{0: 1}, {1: 1}, {0: 2}, {2: 1, 3: 1}, {1: 3, 4: 2}]
    w = [1.0, -2.0, 0.5, 1.5, 0.25]
    X, y, b = draw("powerlaw_hermite", 500, d=6, monomials=monos, weights=w, noise=0.0, random_rotation=True)
    z = ((X.double() @ b.rotation.double()) / b.spectrum.double().sqrt()).numpy()
    ref = sum(wm * np.prod([_he(z[:, i], k) for i, k in m.items()], axis=0) for wm, m in zip(w, monos))
    np.testing.assert_allclose(y[:, 0].numpy(), ref, rtol=1e-3, atol=1e-3)


def test_hermite_monomials_are_orthonormal():
    monos = [{0: 1}, {0: 2}, {1: 1, 2: 1}, {3: 3}, {0: 1, 1: 2}]
    n = 60_000
    cols = []
    for m in monos:  # one factory per monomial on the same seed: the same z, so products are comparable
        _, y, _ = draw("powerlaw_hermite", n, seed=2, d=5, monomials=[m], random_rotation=False)
        cols.append(y[:, 0].double())
    Y = torch.stack(cols, 1)
    np.testing.assert_allclose(Y.mean(0).numpy(), 0.0, atol=0.03)
    gram = (Y.T @ Y / n).numpy()
    np.testing.assert_allclose(np.diag(gram), 1.0, atol=0.08)
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 0.05


def test_hermite_target_variance_is_sum_of_squared_weights_plus_noise():
    w, noise = [1.0, 2.0, -1.0, 0.5], 0.7
    _, y, _ = draw("powerlaw_hermite", 80_000, seed=3, d=5, monomials=[{0: 1}, {1: 1}, {0: 2}, {2: 1, 3: 1}],
                   weights=w, noise=noise)
    assert float(y.mean()) == pytest.approx(0.0, abs=0.05)
    assert float(y.var()) == pytest.approx(sum(v * v for v in w) + noise**2, rel=0.04)


def test_monomials_accept_int_keys_string_keys_and_coordinate_lists():
    forms = [
        [{0: 1}, {1: 1}, {0: 2}, {2: 1, 3: 1}],
        [{"0": 1}, {"1": 1}, {"0": 2}, {"2": 1, "3": 1}],  # after a JSON round trip
        [[0], [1], [0, 0], [2, 3]],                         # coordinates, repetition = degree
        json.loads(json.dumps([{0: 1}, {1: 1}, {0: 2}, {2: 1, 3: 1}])),
    ]
    outs = [draw("powerlaw_hermite", 64, seed=4, monomials=m)[1] for m in forms]
    for y in outs[1:]:
        assert torch.equal(y, outs[0])


@pytest.mark.parametrize("monomials, match", [
    ([], "non-empty list"),
    ({0: 1}, "non-empty list"),
    ([{6: 1}], "out of range"),
    ([{"x": 1}], "not an integer index"),
    ([{0: 0}], "must be >= 1"),
    ([{0: 1.5}], "must be an integer"),
    ([{}], "is empty"),
    ([{0: 1}, [0]], "repeats monomials"),
    ([{0: 1, "0": 2}], "appears twice"),
    ([5], "mapping"),
])
def test_bad_monomials_are_refused(monomials, match):
    with pytest.raises(ValueError, match=match):
        make("powerlaw_hermite", 4, monomials=monomials)


def test_hermite_weights_must_match():
    with pytest.raises(ValueError, match="weights has 2 entries but there are 4 monomials"):
        make("powerlaw_hermite", 4, weights=[1, 2])


# --- hypercube_sumprod ----------------------------------------------------------------------------

def test_hypercube_targets_are_exactly_the_products():
    idx, w = [[0], [1, 2], [3, 4, 5], [5, 0]], [1.0, -0.5, 2.0, 0.25]
    X, y, _ = draw("hypercube_sumprod", 2000, d=6, indices=idx, weights=w, noise_std=0.0)
    assert set(X.unique().tolist()) == {-1.0, 1.0}
    np.testing.assert_allclose(X.mean(0).numpy(), 0.0, atol=0.08)
    Xn = X.numpy().astype(np.float64)
    ref = sum(wg * np.prod(Xn[:, g], axis=1) for wg, g in zip(w, idx))
    assert np.array_equal(y[:, 0].numpy().astype(np.float64), ref)  # small dyadic weights: exact in float32


def test_hypercube_normalise_and_noise():
    idx, w = [[0], [1, 2], [2, 3, 4]], [3.0, 1.0, -2.0]
    X, y, _ = draw("hypercube_sumprod", 50_000, seed=1, d=5, indices=idx, weights=w, normalise=True, noise_std=0.0)
    norm = math.sqrt(sum(v * v for v in w))
    Xn = X.numpy().astype(np.float64)
    ref = sum(wg / norm * np.prod(Xn[:, g], axis=1) for wg, g in zip(w, idx))
    np.testing.assert_allclose(y[:, 0].numpy(), ref, atol=1e-6)
    assert float(y.var()) == pytest.approx(1.0, rel=0.03)
    _, noisy, _ = draw("hypercube_sumprod", 50_000, seed=1, d=5, indices=idx, weights=w, normalise=True,
                       noise_mean=0.5, noise_std=0.3)
    # same seed: the inputs are the same draws, so noisy - clean is exactly the noise
    resid = (noisy - y)[:, 0]
    assert float(resid.mean()) == pytest.approx(0.5, abs=0.01)
    assert float(resid.std()) == pytest.approx(0.3, rel=0.03)


@pytest.mark.parametrize("indices, match", [
    ([[0, 0]], "repeats a coordinate"),
    ([[0, 1], [1, 0]], "same set"),
    ([[]], "non-empty list"),
    ([], "non-empty list"),
])
def test_bad_hypercube_indices(indices, match):
    with pytest.raises(ValueError, match=match):
        make("hypercube_sumprod", 4, indices=indices, weights=None)


# --- linear_teacher --------------------------------------------------------------------------------

def test_linear_teacher_diagonal_and_random():
    X, y, b = draw("linear_teacher", 100, d=4, out_dim=3, teacher="diagonal", teacher_scale=2.0, noise=0.0)
    assert torch.equal(b.teacher_weights, 2.0 * torch.eye(3, 4))
    assert torch.allclose(y, 2.0 * X[:, :3])
    X, y, b = draw("linear_teacher", 40_000, seed=1, d=50, out_dim=2, teacher_scale=3.0, noise=0.0)
    assert b.teacher_weights.shape == (2, 50)
    assert torch.allclose(y, X @ b.teacher_weights.T, atol=1e-5)
    assert float(b.teacher_weights.pow(2).sum(1).mean()) == pytest.approx(9.0, rel=0.25)  # E||w_j||^2 = scale^2
    X, y2, b = draw("linear_teacher", 40_000, seed=1, d=50, out_dim=2, teacher_scale=3.0, noise=0.5)
    assert float((y2 - X @ b.teacher_weights.T).std()) == pytest.approx(0.5, rel=0.03)


def test_linear_teacher_train_and_test_share_w():
    test, train_fn = loop_factories("linear_teacher", 200, 300, noise=0.0)
    X, y = test(0)
    assert torch.allclose(y, X @ train_fn.teacher_weights.T, atol=1e-5)


# --- 2-D classification ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs", [
    ("moons", {}), ("circles", {}), ("xor", {}),
    ("gaussian_clusters", {"n_clusters": 2}), ("gaussian_clusters", {"n_clusters": 3}), ("gaussian_clusters", {"n_clusters": 4}),
])
def test_classification_sets_are_standardised_and_balanced(name, kwargs):
    X, y, b = draw(name, 20_000, seed=1, **kwargs)
    assert X.shape == (20_000, 2)
    np.testing.assert_allclose(X.mean(0).numpy(), 0.0, atol=0.04)
    np.testing.assert_allclose(X.std(0).numpy(), 1.0, atol=0.04)
    counts = torch.bincount(y, minlength=b.n_classes).double() / len(y)
    np.testing.assert_allclose(counts.numpy(), 1.0 / b.n_classes, atol=0.03)
    assert b.n_classes == kwargs.get("n_clusters", 2)
    # the standardisation is the same affine map for train and test
    test, train_fn = loop_factories(name, 10, 20, **kwargs)
    assert torch.equal(test.feature_mean, train_fn.feature_mean) and torch.equal(test.feature_std, train_fn.feature_std)


def test_classification_geometry_without_standardisation():
    X, y, _ = draw("moons", 2000, noise=0.0, standardise=False)
    outer, inner = X[y == 0], X[y == 1]
    assert torch.allclose(outer.norm(dim=1), torch.ones(len(outer)), atol=1e-5) and bool((outer[:, 1] >= 0).all())
    shifted = inner - torch.tensor([1.0, 0.5])
    assert torch.allclose(shifted.norm(dim=1), torch.ones(len(inner)), atol=1e-5) and bool((inner[:, 1] <= 0.5 + 1e-6).all())
    X, y, _ = draw("circles", 2000, noise=0.0, circle_factor=0.3, standardise=False)
    radius = X.norm(dim=1)
    assert torch.allclose(radius, torch.where(y == 1, 0.3, 1.0), atol=1e-5)
    X, y, _ = draw("xor", 2000, noise=0.0, standardise=False)
    assert bool((X.abs() <= 1).all()) and torch.equal(y, (X[:, 0] * X[:, 1] < 0).long())
    X, y, b = draw("gaussian_clusters", 4000, n_clusters=4, noise=0.0, standardise=False)
    assert torch.allclose(X, b.centres[y]) and torch.allclose(b.centres.norm(dim=1), torch.ones(4))
    # the reference sample is drawn either way: toggling standardise changes only the affine map
    Xs, ys, bs = draw("gaussian_clusters", 4000, n_clusters=4, noise=0.0)
    assert torch.equal(ys, y) and torch.allclose(Xs, (X - bs.feature_mean) / bs.feature_std, atol=1e-5)



@pytest.mark.parametrize("name", ["moons", "circles", "gaussian_clusters", "xor"])
@pytest.mark.parametrize("standardise", [True, False])
def test_a_remembered_reference_sample_changes_no_draw(name, standardise):
    """The second factory of a seed reuses the first one's reference statistics and moves its
    generator to where drawing them would have: every later draw is what a fresh draw gives."""
    from batchfns import _common

    def factory_and_draws() -> tuple[torch.Tensor, ...]:
        batch, gen = make(name, 64, seed=5, standardise=standardise)
        X1, y1 = batch(0)
        X2, _ = batch(1)
        return X1, y1, X2, batch.feature_mean, batch.feature_std, gen.get_state()

    _common._REFERENCES.clear()
    fresh = factory_and_draws()
    assert len(_common._REFERENCES) == 1  # the first factory drew it and kept it
    reused = factory_and_draws()
    assert reused[3] is fresh[3]  # the second factory took the statistics from the memo
    _common._REFERENCES.clear()
    for a, b in zip(fresh, reused):
        assert torch.equal(a, b)
    other, _ = make(name, 64, seed=6, standardise=standardise)  # another seed: another sample
    assert len(_common._REFERENCES) == 1 and not torch.equal(other(0)[0], fresh[0])
    _common._REFERENCES.clear()
    noisier, _ = make(name, 64, seed=5, standardise=standardise, noise=0.7)  # another key: drawn anew
    assert not torch.equal(noisier(0)[0], fresh[0])

# --- synthetic_regression / synthetic_binary ---------------------------------------------------------

def test_synthetic_regression_statistics():
    X, y, b = draw("synthetic_regression", 50_000, seed=1, n_features=8, n_informative=3, n_targets=2, noise=0.0)
    assert y.shape == (50_000, 2) and b.coef.shape == (3, 2)
    assert torch.allclose(y, X[:, :3] @ b.coef, atol=1e-5)
    np.testing.assert_allclose(b.coef.norm(dim=0).numpy(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(y.var(0).numpy(), 1.0, rtol=0.03)
    corr = (X[:, 3:].T @ y / len(y)).abs()
    assert float(corr.max()) < 0.03  # noise features carry no signal
    _, _, default = draw("synthetic_regression", 4, n_features=30, n_informative=None, n_targets=1)
    assert default.coef.shape == (10, 1)  # sklearn's default of 10 informative features
    _, yn, _ = draw("synthetic_regression", 50_000, seed=1, n_features=8, n_informative=3, n_targets=2, noise=0.5)
    np.testing.assert_allclose(yn.var(0).numpy(), 1.25, rtol=0.04)


def test_synthetic_binary_clusters_and_label_noise():
    n, sep = 20_000, 4.0
    X, y, b = draw("synthetic_binary", n, seed=1, n_features=5, n_informative=3, clusters_per_class=2, class_sep=sep, flip_y=0.0)
    assert y.dtype == torch.float32 and set(y.unique().tolist()) == {0.0, 1.0}
    assert float(y.mean()) == pytest.approx(0.5, abs=0.02)
    V = b.vertices
    assert V.shape == (4, 3) and torch.unique(V, dim=0).shape[0] == 4 and set(V.unique().tolist()) <= {-1.0, 1.0}
    nearest = torch.cdist(X[:, :3], sep * V).argmin(1)  # cluster c belongs to class c % 2
    clean_acc = float(((nearest % 2).float() == y).float().mean())
    assert clean_acc > 0.97
    np.testing.assert_allclose(X[:, 3:].std(0).numpy(), 1.0, atol=0.03)
    _, y_flip, _ = draw("synthetic_binary", n, seed=1, n_features=5, n_informative=3, clusters_per_class=2, class_sep=sep, flip_y=0.2)
    agree = float(((nearest % 2).float() == y_flip).float().mean())
    assert agree == pytest.approx(clean_acc * 0.8 + (1 - clean_acc) * 0.2, abs=0.015)
    # the default n_informative=2 with 2 clusters per class uses all four vertices of the square
    _, _, square = draw("synthetic_binary", 4, n_features=2, n_informative=2, clusters_per_class=2, flip_y=0.0)
    assert torch.unique(square.vertices, dim=0).shape[0] == 4


def test_synthetic_binary_many_informative_features():
    _, _, b = draw("synthetic_binary", 8, n_features=40, n_informative=30, clusters_per_class=3, flip_y=0.0)
    assert b.vertices.shape == (6, 30) and torch.unique(b.vertices, dim=0).shape[0] == 6


# --- end to end through runner.train ----------------------------------------------------------------

TINY = dict(model="mlp", width=32, depth=1, n_test=256, eval_every=50, seed=0)
E2E = [
    ("powerlaw_hermite", dict(d=6, monomials=[{0: 1}, {1: 1}, {0: 2}], normalise_spectrum=False, alpha=0.5,
                              batch_size=64, steps=200, lr=0.05, optimizer="adam"), "mse"),
    ("powerlaw_hermite", dict(d=6, monomials=[{0: 1}, {1: 1}], random_rotation=True, normalise_spectrum=False,
                              online=False, n_train=256, steps=150, lr=0.05, optimizer="adam"), "mse"),
    ("hypercube_sumprod", dict(d=6, indices=[[0], [1, 2]], normalise=True, batch_size=64, steps=200, lr=0.02,
                               optimizer="adam"), "mse"),
    ("linear_teacher", dict(d=5, out_dim=2, batch_size=64, steps=150, lr=0.05), "mse"),
    ("moons", dict(batch_size=64, steps=200, lr=0.05, optimizer="adam"), "cross_entropy"),
    ("circles", dict(batch_size=64, steps=200, lr=0.05, optimizer="adam"), "cross_entropy"),
    ("gaussian_clusters", dict(n_clusters=4, noise=0.15, batch_size=64, steps=150, lr=0.05, optimizer="adam"), "cross_entropy"),
    ("xor", dict(batch_size=64, steps=200, lr=0.05, optimizer="adam"), "cross_entropy"),
    ("synthetic_regression", dict(n_features=8, n_informative=4, batch_size=64, steps=150, lr=0.05), "mse"),
    ("synthetic_binary", dict(n_features=6, n_informative=2, class_sep=2.0, batch_size=64, steps=150, lr=0.05,
                              optimizer="adam"), "bce"),
    ("synthetic_binary", dict(n_features=6, n_informative=2, class_sep=2.0, batch_size=64, steps=150, lr=0.05,
                              optimizer="adam"), "cross_entropy"),
]


@pytest.mark.parametrize("name, cfg, loss", E2E, ids=[f"{n}-{l}-{'off' if c.get('online') is False else 'on'}" for n, c, l in E2E])
def test_end_to_end_loss_goes_down(name, cfg, loss):
    out = train({"batchfn": name, **TINY, **cfg, "loss": loss}, device="cpu")
    assert out.status == "done", out.reason
    _, test_loss = out.curve("test_loss")
    assert test_loss[-1] < 0.7 * test_loss[0], (test_loss[0], test_loss[-1])
    if loss != "mse":
        assert out.summary["final_test_acc"] > {"circles": 0.8, "xor": 0.8}.get(name, 0.85)


def test_json_round_tripped_config_trains_identically():
    cfg = {"batchfn": "powerlaw_hermite", **TINY, "d": 5, "monomials": [{0: 1}, {1: 1, 2: 1}], "weights": [1.0, 0.5],
           "batch_size": 32, "steps": 30, "lr": 0.05}
    a = train(cfg, device="cpu")
    b = train(json.loads(json.dumps(cfg)), device="cpu")  # as stored in and read from the database
    assert a.summary["final_test_loss"] == b.summary["final_test_loss"]
