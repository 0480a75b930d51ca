"""Workers skip torch._dynamo's import (issue 17): the loop's optimizer step without torch.optim's
wrappers updates exactly as optimizer.step() does, and a worker-like process trains a job without
ever importing torch._dynamo."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from support.processes import cli_env

from runner.train.optim import direct_step

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
    "sgd-momentum-nesterov-wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99)),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_the_direct_step_updates_bit_for_bit_as_optimizer_step(make):
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))
    b = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = make(a.parameters()), make(b.parameters())
    step_b = direct_step(opt_b)
    X, y = torch.randn(16, 5), torch.randn(16, 1)
    for _ in range(6):
        for model, opt, step in ((a, opt_a, opt_a.step), (b, opt_b, step_b)):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(X), y).backward()
            step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert str(opt_a.state_dict()) == str(opt_b.state_dict())


def test_a_hooked_optimizer_keeps_its_hooks():
    m = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    calls = []
    opt.register_step_post_hook(lambda *args: calls.append(1))
    direct_step(opt)()
    assert calls == [1]


def test_a_worker_like_process_trains_without_importing_torch_dynamo(tmp_path):
    code = ("import sys, json; from runner.train.optim import skip_dynamo_import; skip_dynamo_import(); "
            "import runner; out = runner.train(dict(batchfn='gaussian_teacher', model='mlp', d=8, batch_size=16, "
            "width=16, steps=50, n_test=32, optimizer=OPT, momentum=MOM, checkpoint_every=20), device='cpu', "
            "checkpoint_path='c.pt'); print(json.dumps(['torch._dynamo' in sys.modules, out.summary['final_test_loss']]))")
    results = {}
    for opt, mom in (("sgd", 0.9), ("adam", 0.0)):
        run = code.replace("OPT", repr(opt)).replace("MOM", repr(mom))
        out = subprocess.run([sys.executable, "-c", run], cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        imported, loss = __import__("json").loads(out.stdout)
        assert imported is False
        results[opt] = loss
    import runner

    for opt, mom in (("sgd", 0.9), ("adam", 0.0)):
        same = runner.train(dict(batchfn="gaussian_teacher", model="mlp", d=8, batch_size=16, width=16, steps=50,
                                 n_test=32, optimizer=opt, momentum=mom), device="cpu")
        assert same.summary["final_test_loss"] == results[opt]
