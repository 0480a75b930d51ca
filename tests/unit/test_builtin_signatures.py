"""The built-ins' stand-ins (runner.builtin_signatures) carry exactly the real plug-ins' parameters, so
submit can validate grids of built-ins without importing torch."""
from __future__ import annotations

import subprocess
import sys

import pytest
from support.processes import cli_env

from runner.builtin_signatures import stand_ins
from runner.registry import KINDS, registered
from runner.train.plan import params


@pytest.mark.parametrize("kind", KINDS)
def test_every_built_in_has_a_stand_in_with_its_parameters_module_and_name(kind):
    real, read = registered(kind), stand_ins(kind)
    builtin = {name: fn for name, fn in real.items() if fn.__module__.split(".")[0] in ("batchfns", "grabs", "runner")}
    assert sorted(read) == sorted(builtin)
    for name, fn in builtin.items():
        assert params(read[name]) == params(fn), name
        assert (read[name].__module__, read[name].__qualname__) == (fn.__module__, fn.__qualname__)
        assert read[name].real() is fn


def test_a_submit_of_built_ins_imports_no_torch(tmp_path):
    code = ("import sys, runner; runner.submit('grid.yaml', db='jobs.db'); "
            "print(sorted(m for m in ('torch', 'numpy', 'batchfns', 'grabs') if m in sys.modules))")
    (tmp_path / "grid.yaml").write_text(
        "sweep: s\nbatchfn: moons\nmodel: mlp\ngrabs: [weight_norm, hessian_trace]\n"
        "base: {batch_size: 8, loss: cross_entropy, parametrization: sp, activation: tanh}\n"
        "grid: {lr: [0.1, 0.2], noise: [0.1, 0.2]}\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_stand_in_refuses_what_the_real_plug_in_refuses_at_submit(tmp_path):
    import runner
    from runner.errors import UserError

    bad = dict(sweep="s", batchfn="moons", model="mlp", base=dict(batch_size=8, activation="swish"))
    with pytest.raises(UserError, match="activation must be one of relu, tanh, gelu, linear"):
        runner.submit(bad, db=str(tmp_path / "jobs.db"), dry_run=True)
