"""What workers need must be there at submit: a short plug-in name the workers can find (the built-ins,
not a function registered in the submitting process only), and the packages a job imports (mup)."""
from __future__ import annotations

import pytest
import torch

import runner
from runner.errors import UserError


@runner.batchfn("only_here_teacher")
def only_here_teacher(d: int, batch_size: int, *, gen: torch.Generator, device: torch.device):
    def batch(step: int):
        X = torch.randn(batch_size, d, generator=gen, device=device)
        return X, X[:, :1].clone()

    return batch


GRID = dict(sweep="s", model="mlp", base=dict(d=3, batch_size=4, steps=5))


def test_a_short_name_registered_in_this_process_only_is_refused_with_the_fix(tmp_path):
    db = tmp_path / "jobs.db"
    with pytest.raises(UserError, match=f"registered only in this process.*write '{__name__}:only_here_teacher'"):
        runner.submit(dict(GRID, batchfn="only_here_teacher"), db=str(db))
    assert not db.exists()


def test_the_function_itself_or_its_import_path_is_accepted(tmp_path):
    db = str(tmp_path / "jobs.db")
    assert runner.submit(dict(GRID, batchfn=only_here_teacher), db=db).added == 1
    assert runner.submit(dict(GRID, batchfn=f"{__name__}:only_here_teacher", sweep="t"), db=db).added == 1
    assert runner.submit(dict(GRID, batchfn="gaussian_teacher", sweep="u"), db=db).added == 1  # built-ins by name


def test_mup_without_the_mup_package_is_refused_at_submit_with_the_install_line(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mup" else real(name, *a))
    db = tmp_path / "jobs.db"
    with pytest.raises(UserError, match=r"mup needs the mup package.*pip install --no-deps mup==1.0.0"):
        runner.submit(dict(GRID, batchfn="gaussian_teacher", base=dict(GRID["base"], parametrization="mup")), db=str(db))
    assert not db.exists()
