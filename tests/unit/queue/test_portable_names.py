"""A short plug-in name at submit must be one the workers can find: the built-ins, not a function
registered in the submitting process only (workers never import the submitting script)."""
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
