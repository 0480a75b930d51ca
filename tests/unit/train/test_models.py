"""Built-in models: mlp options (init, dropout, richness, centering, muP) and the deep linear network."""
from __future__ import annotations

import math

import pytest
import torch

from runner.errors import UserError
from runner.train.loop import train
from runner.train.models import MLP, DeepLinear
from runner.train.optim import make_optimizer as _make_optimizer
from runner.train.plan import check_config

DEFAULTS = dict(lr=0.1, optimizer="sgd", momentum=0.0, nesterov=False, weight_decay=0.0, betas=[0.9, 0.999], eps=1e-8)


def test_centering_starts_the_output_at_zero_and_training_moves_it():
    torch.manual_seed(0)
    model = MLP(5, 2, width=32, center=True, dropout=0.2).eval()
    x = torch.randn(16, 5)
    assert torch.equal(model(x), torch.zeros(16, 2))
    with torch.no_grad():
        model.net[0].weight.add_(0.1)
    assert model(x).abs().max() > 0
    assert len(list(model.parameters())) == 6  # the initial copy is buffers, not parameters


def test_centering_works_under_mup_and_after_moving_the_model():
    torch.manual_seed(0)
    model = MLP(5, 1, width=128, center=True, parametrization="mup").to("cpu", torch.float64).eval()
    assert model(torch.randn(4, 5, dtype=torch.float64)).abs().max() == 0


def test_a_centered_richness_scaled_mlp_trains():
    out = train(dict(batchfn="gaussian_teacher", model="mlp", d=8, k=4, batch_size=64, width=64, center=True,
                     gamma=2.0, lr=0.1, steps=300, n_test=256, eval_every=0), device="cpu")
    steps, test = out.curve("test_loss")
    assert out.status == "done" and test[-1] < test[0] / 2


def test_gamma_divides_the_output():
    torch.manual_seed(1)
    plain = MLP(4, 1, width=16)
    torch.manual_seed(1)
    rich = MLP(4, 1, width=16, gamma=4.0)
    x = torch.randn(8, 4)
    torch.testing.assert_close(rich(x), plain(x) / 4)


@pytest.mark.parametrize("init, std", [("he", lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
                                       ("xavier", lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out)))])
def test_init_draws_weights_with_the_named_variance(init, std):
    torch.manual_seed(0)
    model = MLP(400, 10, width=600, depth=1, init=init)
    w = model.net[0].weight
    assert float(w.detach().std()) == pytest.approx(std(400, 600), rel=0.03)
    assert float(model.net[0].bias.detach().abs().max()) == 0


def test_dropout_layers_are_there_and_only_in_training_mode_random():
    model = MLP(3, 1, width=64, depth=2, dropout=0.5)
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) == 2
    x = torch.randn(4, 3)
    model.eval()
    assert torch.equal(model(x), model(x))


def test_dln_is_linear_with_the_init_scale_gamma():
    torch.manual_seed(0)
    model = DeepLinear(200, 3, width=300, depth=3, gamma=0.5)
    assert [tuple(l.weight.shape) for l in model.layers] == [(300, 200), (300, 300), (3, 300)]
    assert float(model.layers[1].weight.detach().std()) == pytest.approx(0.5 / math.sqrt(300), rel=0.02)
    x = torch.randn(5, 200)
    product = model.layers[2].weight @ model.layers[1].weight @ model.layers[0].weight
    torch.testing.assert_close(model(x), x @ product.T)
    small = DeepLinear(200, 3, width=300, depth=3, gamma=0.1)(x).detach().norm()
    assert small < model(x).norm() / 10  # output scale goes as gamma^depth


def test_mup_models_get_mup_optimizers():
    import mup

    model = MLP(4, 1, width=128, parametrization="mup")
    assert isinstance(model.net[-1], mup.MuReadout)
    assert all(hasattr(p, "infshape") for p in model.parameters())
    assert type(_make_optimizer(DEFAULTS, model)).__name__ == "SGD"  # MuSGD builds a torch SGD with width-scaled groups
    groups = _make_optimizer(dict(DEFAULTS, optimizer="adam"), model).param_groups
    assert len({g["lr"] for g in groups}) > 1  # hidden weights get lr / width_mult under MuAdam
    sp_groups = _make_optimizer(DEFAULTS, MLP(4, 1, width=128)).param_groups
    assert len(sp_groups) == 1


def _hidden_scale_after_training(parametrization: str, width: int, steps: int = 4) -> float:
    """Coordinate check: the largest mean |h| of the last hidden layer over a few Adam steps at one lr
    (the largest, because under SP the blown-up ReLUs of wide nets may die a step later)."""
    out = train(dict(batchfn="gaussian_teacher", model="mlp", d=32, k=4, batch_size=64, width=width, depth=2,
                     parametrization=parametrization, base_width=64, optimizer="adam", lr=0.01, steps=steps,
                     n_test=256, eval_every=0, grab_every=1, seed=0, grabs=["plugins_for_tests:hidden_scale"]),
                device="cpu")
    steps_seen, scale = out.curve("hidden_scale")
    return float(scale[steps_seen >= 1].max())


def test_mup_coordinate_check_activation_scale_is_flat_across_widths_and_grows_under_sp(show):
    widths = [64, 128, 256, 512, 1024]
    mup_scale = [_hidden_scale_after_training("mup", w) for w in widths]
    sp_scale = [_hidden_scale_after_training("sp", w) for w in widths]
    show(f"\ncoord check, mean |h| of the last hidden layer over 4 Adam steps, widths {widths}:\n  mup {[round(v, 3) for v in mup_scale]}"
          f"\n  sp  {[round(v, 3) for v in sp_scale]}")
    assert max(mup_scale) / min(mup_scale) < 2.0          # flat under muP
    assert sp_scale[-1] / sp_scale[0] > 4.0                # grows with width under SP
    assert sp_scale[-1] > 2 * mup_scale[-1]


@pytest.mark.parametrize("bad, message", [
    (dict(parametrization="mpu"), "parametrization must be one of sp, mup (for model)"),
    (dict(activation="sigmoid"), "activation must be one of relu, tanh, gelu, linear"),
    (dict(init="kaiming"), "init must be one of default, xavier, he"),
])
def test_model_choices_are_checked_at_submit(bad, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_config(dict(batchfn="gaussian_teacher", model="mlp", d=3, batch_size=4, **bad))


def test_a_dln_job_runs_and_learns_a_linear_teacher():
    out = train(dict(batchfn="plugins_for_tests:linear_teacher", model="dln", d=8, noise=0.0, width=16, depth=3,
                     gamma=1.0, batch_size=64, lr=0.05, steps=400, n_test=256), device="cpu")
    first = out.curve("test_loss")[1][0]
    assert out.status == "done" and out.summary["final_test_loss"] < first / 20


def test_hidden_dims_give_each_layer_its_width_and_equal_the_short_form_when_alike():
    net = MLP(3, 2, hidden_dims=[8, 5, 4]).net
    assert [(m.in_features, m.out_features) for m in net if isinstance(m, torch.nn.Linear)] == \
        [(3, 8), (8, 5), (5, 4), (4, 2)]
    torch.manual_seed(0)
    short = MLP(3, 2, width=7, depth=2)
    torch.manual_seed(0)
    long = MLP(3, 2, hidden_dims=[7, 7])
    assert all(torch.equal(a, b) for a, b in zip(short.parameters(), long.parameters()))
    mup_net = MLP(3, 2, hidden_dims=[128, 64], parametrization="mup").net
    mults = [m.weight.infshape.width_mult() for m in mup_net if isinstance(m, torch.nn.Linear)]
    assert mults[0] == 2.0 and mults[-1] == 1.0  # the readout reads 64 units: base_width's scale


@pytest.mark.parametrize("bad", [[8, 0], [8, 2.5], "64", [True]])
def test_bad_hidden_dims_fail_the_job_at_its_setup_with_the_rule(bad):
    """(Submit checks a plug-in's parameters by their annotations, not by building the model.)"""
    with pytest.raises(UserError, match="hidden_dims must be a list of positive integers"):
        train(dict(batchfn="gaussian_teacher", model="mlp", d=3, batch_size=4, steps=1, hidden_dims=bad), device="cpu")


def test_a_job_trains_with_hidden_dims():
    out = train(dict(batchfn="gaussian_teacher", model="mlp", d=4, batch_size=8, hidden_dims=[16, 8], steps=20,
                     n_test=16), device="cpu")
    assert out.status == "done" and out.summary["final_test_loss"] is not None


@pytest.mark.parametrize("kwargs", [
    dict(model=MLP, d_in=3, d_out=2, width=8, depth=2),
    dict(model=MLP, d_in=3, d_out=1, width=8, depth=0, bias=False),
    dict(model=MLP, d_in=3, d_out=2, hidden_dims=[8, 5], init="he", center=True, activation="tanh"),
    dict(model=MLP, d_in=3, d_out=2, width=8, init="xavier", dropout=0.1, gamma=2.0),
    dict(model=DeepLinear, d_in=3, d_out=2, width=8, depth=3, gamma=0.5),
])
def test_a_redrawn_model_holds_what_building_it_with_that_seed_gives(kwargs):
    """What a fused group relies on to draw a thousand members' weights on one module."""
    from runner.train.loop import redraw_model

    kwargs = dict(kwargs)
    cls = kwargs.pop("model")

    def built(seed: int) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(**kwargs)
    module, before = built(0), torch.get_rng_state()
    for seed in (7, 123, 0):
        assert redraw_model(module, seed)
        expected = built(seed).state_dict()
        got = module.state_dict()
        assert got.keys() == expected.keys()
        for name, tensor in expected.items():
            assert torch.equal(got[name], tensor), (seed, name)
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is left where it was


def test_a_mup_model_declines_to_be_redrawn_and_draws_nothing():
    from runner.train.loop import redraw_model

    module = MLP(d_in=3, d_out=2, width=8, parametrization="mup", base_width=4)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    assert not redraw_model(module, 5)
    assert all(torch.equal(module.state_dict()[k], v) for k, v in state.items())
