"""Built-in grabs against known answers, and the rule that a grab never changes training."""
from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from grab_plugins import NoisyNet
from torch import nn
from torch.func import functional_call

import grabs
from grabs._common import generator
from grabs.kernels import _ntk_batched, _ntk_loop
from grabs.landscape import interp_grid
from runner.errors import UserError
from runner.registry import registered
from runner.train.loop import train
from runner.train.optim import LOSSES
from runner.train.plan import check_config

ALL = ["weight_norm", "grad_norm", "dist_from_init", "gram_diag", "gram_trace", "ntk", "hessian_top",
       "hessian_trace", "sharpness", "interpolation", "accuracy"]
NO_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, NO_GPU])]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_ctx(model: nn.Module, X=None, y=None, *, loss="mse", step=0, init=None, batch=None, X_test=None, y_test=None, seed=0):
    """The context the trainloop hands a grab."""
    init = [p.detach().clone() for p in model.parameters()] if init is None else init
    return {"step": step, "X_train": X, "y_train": y, "X_test": X_test, "y_test": y_test, "optimizer": None,
            "init_params": init, "config": {"seed": seed, "loss": loss}, "loss_fn": LOSSES[loss], "batch": batch}


def linear_problem(n=40, d=5, d_out=1, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    X, y = torch.randn(n, d, generator=g), torch.randn(n, d_out, generator=g)
    torch.manual_seed(seed)
    return nn.Linear(d, d_out, bias=bias), X, y


def design(X: torch.Tensor, bias: bool) -> torch.Tensor:
    X = X.double()
    return torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1) if bias else X


def linear_hessian(X: torch.Tensor, d_out: int, bias: bool) -> torch.Tensor:
    """MSE with mean reduction over the n x d_out entries: L = 1/(n d_out) sum_io (w_o.a_i - y_io)^2, so each
    output's block is 2/(n d_out) A^T A and the blocks of different outputs do not couple."""
    A = design(X, bias)
    return 2.0 / (len(X) * d_out) * A.T @ A


def test_every_builtin_is_registered():
    assert set(ALL) <= set(registered("grab"))
    assert grabs.weight_norm is registered("grab")["weight_norm"]


# --- norms -------------------------------------------------------------------------------------

def test_weight_norm_matches_torch_linalg():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    out = grabs.weight_norm(model)
    for name, p in model.named_parameters():
        assert out[name] == pytest.approx(float(torch.linalg.norm(p.detach().reshape(-1))), rel=1e-6)
    everything = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert out["total"] == pytest.approx(float(torch.linalg.norm(everything)), rel=1e-6)


def test_grad_norm_is_none_before_a_backward_and_the_norm_after():
    model, X, y = linear_problem()
    assert grabs.grad_norm(model) is None
    nn.functional.mse_loss(model(X), y).backward()
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert grabs.grad_norm(model) == pytest.approx(float(torch.linalg.norm(g)), rel=1e-6)


def test_dist_from_init_is_zero_at_init_and_exact_for_set_moves():
    model, X, y = linear_problem()
    ctx = make_ctx(model, X, y)
    at_init = grabs.dist_from_init(model, **ctx)
    assert at_init["l2"] == 0.0 and at_init["rel_l2"] == 0.0
    assert at_init["cosine"] == pytest.approx(1.0, abs=1e-12)
    init_norm = float(torch.cat([p.reshape(-1) for p in ctx["init_params"]]).double().norm())
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.0)
    flipped = grabs.dist_from_init(model, **ctx)
    assert flipped["l2"] == pytest.approx(2 * init_norm, rel=1e-9)
    assert flipped["rel_l2"] == pytest.approx(2.0, rel=1e-9)
    assert flipped["cosine"] == pytest.approx(-1.0, rel=1e-9)


def test_gram_diag_and_trace_of_a_set_input_weight():
    model = nn.Sequential(nn.Sequential(nn.Linear(3, 2)), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0][0].weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    diag_in = grabs.gram_diag(model)  # diag(W^T W): column sums of squares
    assert diag_in.tolist() == [17.0, 29.0, 45.0]
    assert grabs.gram_diag(model, gram_side="out").tolist() == [14.0, 77.0]  # diag(W W^T)
    assert grabs.gram_trace(model) == 91.0
    with pytest.raises(ValueError, match="gram_side"):
        grabs.gram_diag(model, gram_side="rows")


# --- kernels -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("d_out", [1, 3])
def test_ntk_of_a_linear_model_is_the_gram_of_the_inputs(bias, d_out):
    model, X, y = linear_problem(n=20, d=4, d_out=d_out, bias=bias)
    K = grabs.ntk(model, ntk_n=7, **make_ctx(model, X, y))  # no test set: the first training points
    Xp = X[:7].double()
    expected = d_out * (Xp @ Xp.T + (1.0 if bias else 0.0))  # the trace over outputs: d_out equal blocks
    assert K.shape == (7, 7)
    np.testing.assert_allclose(K.double().numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_ntk_prefers_the_test_set_and_both_jacobian_paths_agree():
    torch.manual_seed(0)
    model = NoisyNet(5, 2)
    X, Xt = torch.randn(30, 5), torch.randn(12, 5)
    model.eval()
    K = grabs.ntk(model, ntk_n=9, **make_ctx(model, X, torch.zeros(30, 2), X_test=Xt, y_test=torch.zeros(12, 2)))
    expected = _ntk_loop(model, Xt[:9])
    np.testing.assert_allclose(K.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_ntk_batched(model, Xt[:9]).numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    assert torch.linalg.eigvalsh(K.double()).min() > -1e-4  # a Gram matrix: positive semi-definite


# --- curvature ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [False, True])
def test_hessian_top_of_least_squares_is_exact(bias):
    model, X, y = linear_problem(n=40, d=5, bias=bias)
    exact = torch.linalg.eigvalsh(linear_hessian(X, 1, bias)).flip(0)
    out = grabs.hessian_top(model, hessian_k=3, hessian_iters=30, hessian_tol=1e-6, **make_ctx(model, X, y))
    assert list(out) == ["0", "1", "2"]
    np.testing.assert_allclose([out["0"], out["1"], out["2"]], exact[:3].numpy(), rtol=1e-4)


def test_hessian_top_constant_for_several_outputs():
    """Two outputs: every eigenvalue of 2/(2n) A^T A twice. A Krylov space holds one direction of each
    eigenspace; the restart at its exhaustion finds the second copies."""
    model, X, y = linear_problem(n=40, d=5, d_out=2, bias=True)
    block = torch.linalg.eigvalsh(linear_hessian(X, 2, True))
    exact = torch.cat([block, block]).sort(descending=True).values
    out = grabs.hessian_top(model, hessian_k=3, hessian_iters=40, hessian_tol=1e-6, **make_ctx(model, X, y))
    np.testing.assert_allclose([out["0"], out["1"], out["2"]], exact[:3].numpy(), rtol=1e-4)


def test_hessian_top_converges_in_fewer_iterations_than_dimensions():
    n, d = 200, 60
    g = torch.Generator().manual_seed(1)
    U, _ = torch.linalg.qr(torch.randn(n, d, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    eigs = torch.cat([torch.tensor([10.0, 7.0]), torch.rand(d - 2, generator=g, dtype=torch.float64)])
    X = (U * (eigs * n / 2).sqrt()) @ V.T  # 2/n X^T X = V diag(eigs) V^T
    model = nn.Linear(d, 1, bias=False)
    ctx = make_ctx(model, X.float(), torch.randn(n, 1, generator=g))
    out = grabs.hessian_top(model, hessian_k=2, hessian_iters=25, hessian_tol=1e-5, **ctx)
    assert out["0"] == pytest.approx(10.0, rel=1e-4) and out["1"] == pytest.approx(7.0, rel=1e-4)
    # the hessian_max_n cap: the first 100 samples only
    capped = grabs.hessian_top(model, hessian_k=1, hessian_iters=60, hessian_tol=1e-6, hessian_max_n=100, **ctx)
    exact = float(torch.linalg.eigvalsh(linear_hessian(X[:100], 1, False))[-1])
    assert capped["0"] == pytest.approx(exact, rel=1e-4)


def test_hessian_top_of_an_mlp_matches_the_explicit_hessian():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))  # 21 parameters, an indefinite Hessian
    X, y = torch.randn(25, 3), torch.randn(25, 1)
    size = sum(p.numel() for p in model.parameters())
    ref = copy.deepcopy(model).double()
    names = [n for n, _ in ref.named_parameters()]
    shapes = [p.shape for _, p in ref.named_parameters()]

    def loss(vec):
        parts, i = {}, 0
        for name, shape in zip(names, shapes):
            parts[name] = vec[i:i + shape.numel()].view(shape)
            i += shape.numel()
        return LOSSES["mse"](functional_call(ref, parts, (X.double(),)), y.double())

    theta = torch.cat([p.detach().reshape(-1) for p in ref.parameters()])
    exact = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, theta)).flip(0)
    assert exact.min() < 0 < exact.max()
    out = grabs.hessian_top(model, hessian_k=size, hessian_iters=size, **make_ctx(model, X, y))
    scale = float(exact.abs().max())
    np.testing.assert_allclose([out[str(i)] for i in range(size)], exact.numpy(), atol=1e-4 * scale)


def test_hessian_trace_is_exact_for_a_diagonal_hessian():
    n, d = 50, 6
    g = torch.Generator().manual_seed(2)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    scales = torch.arange(1.0, d + 1, dtype=torch.float64)
    X = (Q[:, :d] * scales).float()  # orthogonal columns: H = 2/n diag(scales^2)
    model = nn.Linear(d, 1, bias=False)
    out = grabs.hessian_trace(model, hutchinson_probes=3, **make_ctx(model, X, torch.randn(n, 1, generator=g)))
    assert out == pytest.approx(float(2.0 / n * scales.square().sum()), rel=1e-5)


def test_hessian_trace_is_unbiased_and_deterministic():
    model, X, y = linear_problem(n=40, d=5, bias=True)
    H = linear_hessian(X, 1, True)
    m = 2000
    ctx = make_ctx(model, X, y, step=7)
    est = grabs.hessian_trace(model, hutchinson_probes=m, **ctx)
    off = H - torch.diag(torch.diag(H))
    stderr = float((2 * off.square().sum() / m).sqrt())  # Var(v^T H v) = 2 sum_{i != j} H_ij^2 for Rademacher v
    assert abs(est - float(torch.trace(H))) < 4 * stderr
    few = grabs.hessian_trace(model, hutchinson_probes=4, **ctx)
    assert few == grabs.hessian_trace(model, hutchinson_probes=4, **ctx)  # seeded by (seed, step)
    assert few != grabs.hessian_trace(model, hutchinson_probes=4, **dict(ctx, step=8))


# --- landscape ---------------------------------------------------------------------------------

def least_squares_optimum(model: nn.Linear, X: torch.Tensor, y: torch.Tensor) -> None:
    sol = torch.linalg.lstsq(design(X, True), y.double()).solution  # (d + 1, 1)
    with torch.no_grad():
        model.weight.copy_(sol[:-1].T)
        model.bias.copy_(sol[-1])


def test_sharpness_is_zero_for_eps_zero_and_the_exact_quadratic_at_a_minimum():
    torch.manual_seed(0)
    mlp = NoisyNet(5, 1)
    X, y = torch.randn(30, 5), torch.randn(30, 1)
    assert grabs.sharpness(mlp, sharpness_eps=0.0, **make_ctx(mlp, X, y)) == 0.0

    model, X, y = linear_problem(n=40, d=5, bias=True)
    least_squares_optimum(model, X, y)
    ctx = make_ctx(model, X, y, step=3)
    eps, samples = 0.1, 5
    s1 = grabs.sharpness(model, sharpness_eps=eps, sharpness_samples=samples, **ctx)
    s2 = grabs.sharpness(model, sharpness_eps=2 * eps, sharpness_samples=samples, **ctx)
    assert s1 > 0 and s2 / s1 == pytest.approx(4.0, rel=1e-3)  # same directions; L - L* = delta^T H delta / 2
    # the same perturbations, redrawn: max_i delta_i^T H delta_i / 2
    H, gen = linear_hessian(X, 1, True), generator(ctx, "sharpness")
    values = []
    for _ in range(samples):
        deltas = []
        for p in model.parameters():
            u = torch.randn(p.shape, generator=gen).double()
            deltas.append((eps * p.detach().double().norm() / u.norm() * u).reshape(-1))
        delta = torch.cat(deltas)  # weight then bias: the order of design()'s columns
        values.append(float(delta @ H @ delta / 2))
    assert s1 == pytest.approx(max(values), rel=1e-3)


def test_interpolation_endpoints_curve_and_grid():
    model, X, y = linear_problem(n=40, d=5, bias=True)
    init = [p.detach().clone() for p in model.parameters()]
    least_squares_optimum(model, X, y)
    ctx = make_ctx(model, X, y, init=init)
    out = grabs.interpolation(model, interp_points=6, **ctx)
    start = copy.deepcopy(model)
    with torch.no_grad():
        for p, p0 in zip(start.parameters(), init):
            p.copy_(p0)
    mse = LOSSES["mse"]
    with torch.no_grad():
        assert out["loss"][0] == float(mse(start(X), y))
        assert out["loss"][-1] == float(mse(model(X), y))
    np.testing.assert_array_equal(out["t"], [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    A = design(X, True)
    th0 = torch.cat([init[0].reshape(-1), init[1]]).double()
    th1 = torch.cat([model.weight.detach().reshape(-1), model.bias.detach()]).double()
    expected = [float(((A @ ((1 - t) * th0 + t * th1)) - y.double().reshape(-1)).square().mean()) for t in out["t"]]
    np.testing.assert_allclose(out["loss"], expected, rtol=1e-5)
    assert out["barrier"] == 0.0  # convex along the line: never above both endpoints
    assert interp_grid(11, 0.1)[[0, 1, -2, -1]] == pytest.approx([-0.1, 0.0, 1.0, 1.1])
    assert len(interp_grid(5, 0.3)) == 9  # spacing 0.25, two more points on each side
    wide = grabs.interpolation(model, interp_points=5, interp_margin=0.5, **ctx)
    assert wide["loss"].shape == (9,) and wide["loss"][2] == out["loss"][0] and wide["loss"][6] == out["loss"][-1]


# --- accuracy ----------------------------------------------------------------------------------

def test_accuracy_against_a_hand_count():
    multi = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        multi.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    X = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0], [1.0, 2.0]])  # predicted classes 0, 1, 2, 1
    labels = torch.tensor([0, 1, 1, 0])
    out = grabs.accuracy(multi, **make_ctx(multi, X, labels, loss="cross_entropy", batch=(X[:2], labels[:2]),
                                           X_test=X[2:], y_test=labels[2:]))
    assert out == {"train": 0.5, "batch": 1.0, "test": 0.0}

    single = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        single.weight.fill_(1.0)
    X = torch.tensor([[1.0], [-2.0], [3.0], [-0.5]])  # logits > 0: yes, no, yes, no
    assert grabs.accuracy(single, **make_ctx(single, X, torch.tensor([1.0, 0.0, 0.0, 1.0]), loss="bce")) == {"train": 0.5}
    assert grabs.accuracy(single, **make_ctx(single, X, torch.tensor([[1.0], [-1.0], [1.0], [1.0]]))) == {"train": 0.75}
    assert grabs.accuracy(single, **make_ctx(single)) is None


# --- no side effects ---------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ALL)
def test_a_grab_leaves_no_trace(name, device):
    """Parameters, buffers, gradients, per-module train/eval flags and the global RNG are untouched."""
    dev = torch.device(device)
    torch.manual_seed(5)
    model = NoisyNet(4, 1).to(dev)
    init = [p.detach().clone() for p in model.parameters()]
    X, y = torch.randn(32, 4, device=dev), torch.randn(32, 1, device=dev)
    nn.functional.mse_loss(model(X), y).backward()  # BatchNorm statistics move, gradients exist
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.net[4].bias.grad = None
    model.net[3].eval()  # a submodule in another mode than its parent
    modes = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None
    ctx = make_ctx(model, X, y, init=init, step=10, batch=(X[:8], y[:8]), X_test=X[8:], y_test=y[8:])
    fn = registered("grab")[name]
    fn(model, **ctx)
    assert [m.training for m in model.modules()] == modes
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    for p, g in zip(model.parameters(), grads):
        assert (p.grad is None) if g is None else torch.equal(p.grad, g)
    assert torch.equal(torch.get_rng_state(), rng)
    if cuda_rng is not None:
        assert torch.equal(torch.cuda.get_rng_state(dev), cuda_rng)


@pytest.mark.gpu
@NO_GPU
def test_cuda_gives_the_cpu_answers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    X, y = torch.randn(32, 4), torch.randn(32, 1)
    cpu_ctx = make_ctx(model, X, y, step=4, batch=(X[:8], y[:8]))
    gpu = copy.deepcopy(model).cuda()
    gpu_ctx = make_ctx(gpu, X.cuda(), y.cuda(), step=4, init=[p.cuda() for p in cpu_ctx["init_params"]],
                       batch=(X[:8].cuda(), y[:8].cuda()))
    with torch.no_grad():
        for p in list(model.parameters()) + list(gpu.parameters()):
            p.mul_(1.1)
    tf32, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, False
    try:
        answers = {name: (fn(model, hessian_k=2, hessian_tol=1e-6, **cpu_ctx), fn(gpu, hessian_k=2, hessian_tol=1e-6, **gpu_ctx))
                   for name, fn in ((n, registered("grab")[n]) for n in ALL)}
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    for name, (a, b) in answers.items():
        if isinstance(a, dict):
            assert a.keys() == b.keys(), name
            for k in a:
                np.testing.assert_allclose(np.asarray(b[k]), np.asarray(a[k]), rtol=1e-3, atol=1e-5, err_msg=f"{name}.{k}")
        elif a is not None:
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-3, atol=1e-5, err_msg=name)


# --- through the trainloop ---------------------------------------------------------------------

OFFLINE = {"batchfn": "gaussian_teacher", "model": "grab_plugins:NoisyNet", "d": 6, "k": 4, "online": False,
           "n_train": 96, "batch_size": 32, "n_test": 48, "steps": 40, "lr": 0.05, "momentum": 0.9, "seed": 2,
           "eval_every": 10}
ONLINE = {"batchfn": "gaussian_teacher", "model": "mlp", "d": 6, "k": 4, "width": 16, "depth": 2, "batch_size": 32,
          "n_test": 48, "steps": 40, "lr": 0.05, "seed": 4, "eval_every": 10}
SETTINGS = {"grab_every": 10, "ntk_n": 8, "hessian_k": 2, "hessian_iters": 10, "hutchinson_probes": 2,
            "sharpness_samples": 2, "interp_points": 5}


MUP = {**ONLINE, "parametrization": "mup", "base_width": 8, "dropout": 0.1, "optimizer": "adam", "lr": 0.01}


@pytest.mark.parametrize("cfg", [OFFLINE, ONLINE, MUP], ids=["offline-dropout-batchnorm", "online-mlp", "online-mup-dropout"])
def test_grabs_do_not_change_training(cfg):
    if cfg.get("parametrization") == "mup":
        pytest.importorskip("mup")  # MuReadout reads attributes only the real parameter tensors carry
    plain = train(cfg, device="cpu")
    measured = train(dict(cfg, grabs=ALL, **SETTINGS), device="cpu")
    assert plain.status == measured.status == "done"
    assert measured.summary["final_train_loss"] == plain.summary["final_train_loss"]
    assert measured.summary["final_test_loss"] == plain.summary["final_test_loss"]
    for series in ("batch_loss", "test_loss"):
        np.testing.assert_array_equal(measured.curve(series)[1], plain.curve(series)[1])


def test_every_grab_through_the_trainloop_records_its_names():
    started = time.perf_counter()
    out = train(dict(OFFLINE, grabs=ALL, **SETTINGS), device="cpu")
    names = {n for _, n, _ in out.metrics}
    expected = {
        "weight_norm.total", "weight_norm.net.0.weight", "grad_norm", "dist_from_init.l2", "dist_from_init.rel_l2",
        "dist_from_init.cosine", "gram_trace", "hessian_top.0", "hessian_top.1", "hessian_trace", "sharpness",
        "interpolation.barrier", "accuracy.train", "accuracy.batch", "accuracy.test",
    }
    assert expected <= names, expected - names
    assert list(out.curve("hessian_top.0")[0]) == [0, 10, 20, 30, 40]
    assert list(out.curve("accuracy.batch")[0]) == [10, 20, 30, 40]  # no batch before the first step
    assert out.curve("dist_from_init.l2")[1][0] == 0.0 and out.curve("dist_from_init.l2")[1][-1] > 0
    arrays = {}
    for name, step, value in out.arrays:
        arrays.setdefault(name, []).append((step, value))
    assert set(arrays) == {"gram_diag", "ntk", "interpolation.loss", "interpolation.t"}
    assert [s for s, _ in arrays["ntk"]] == [0, 10, 20, 30, 40]
    assert arrays["gram_diag"][0][1].shape == (6,)
    assert arrays["ntk"][-1][1].shape == (8, 8)
    assert arrays["interpolation.loss"][-1][1].shape == (5,)
    # t = 1 is the current model on the training set: the trainloop's own final train loss
    assert arrays["interpolation.loss"][-1][1][-1] == pytest.approx(out.summary["final_train_loss"], rel=1e-5)
    print(f"\nall {len(ALL)} grabs x 5 grab steps, 40 training steps: {time.perf_counter() - started:.2f} s")


def test_accuracy_grab_agrees_with_the_trainloops_own():
    cfg = {"batchfn": "plugins_for_tests:blobs", "model": "mlp", "d": 4, "classes": 3, "width": 16, "depth": 1,
           "batch_size": 32, "n_test": 64, "steps": 60, "lr": 0.05, "loss": "cross_entropy", "eval_every": 20,
           "grabs": ["accuracy", "hessian_top", "sharpness"], "grab_every": 20}
    out = train(cfg, device="cpu")
    steps, acc = out.curve("accuracy.test")
    ref_steps, ref = out.curve("test_acc")
    assert list(steps) == [0, 20, 40, 60]
    np.testing.assert_allclose(acc, [ref[list(ref_steps).index(s)] for s in steps], atol=1e-6)
    assert out.curve("hessian_top.0")[1][-1] > 0


def test_grab_parameters_are_validated_by_name():
    base = {"batchfn": "gaussian_teacher", "model": "mlp", "d": 4, "batch_size": 8, "grabs": ["hessian_top", "sharpness"]}
    with pytest.raises(UserError, match="hessian_iters"):
        check_config(dict(base, hessian_iter=5))
    assert check_config(dict(base, sharpness_eps=0))["sharpness_eps"] == 0.0
    with pytest.raises(UserError, match="unknown key 'ntk_n'"):
        check_config(dict(base, ntk_n=4))  # only a job that runs ntk takes ntk_n
