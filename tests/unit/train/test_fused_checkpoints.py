"""Checkpoints of fused members: a stopped group saves every member in the format a job alone
writes, so each resumes fused or alone and ends where an uninterrupted run ends (within the fused
tolerance of test_fused)."""
from __future__ import annotations

import pytest
import torch

import runner
from runner.train import checkpoints
from runner.train.fused import train_group

from .test_fused import MOONS, TEACHER, assert_same, members

pytestmark = pytest.mark.usefixtures("one_thread")

GROUPS = {
    "sgd-momentum": members(dict(MOONS, steps=90), seed=[0, 1, 2], lr=[0.05, 0.1, 0.2], momentum=[0.9, 0.0, 0.5]),
    "draw-ahead": members(dict(MOONS, steps=90, draw_ahead=16), seed=[0, 1], lr=[0.05, 0.1]),  # stops mid-block
    "draw-ahead-twins": members(dict(MOONS, steps=90, draw_ahead=16), seed=[3, 3, 4], lr=[0.05, 0.1, 0.1]),  # one stream, saved twice
    "adam-offline-minibatches": members(dict(TEACHER, optimizer="adam", online=False, n_train=96, steps=90,
                                             schedule="step", step_size=25, grabs=["grad_norm"], grab_every=10),
                                        seed=[0, 1], lr=[3e-3, 1e-2]),
}


def stop_after(n: int):
    calls = iter(range(10**6))
    return lambda: next(calls) >= n - 1


def paths(tmp_path, n: int) -> list:
    return [tmp_path / f"job{i}.pt" for i in range(n)]


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_a_stopped_group_resumes_fused_where_it_stopped(name, tmp_path):
    configs = GROUPS[name]
    alone = [runner.train(c, device="cpu") for c in configs]
    files = paths(tmp_path, len(configs))
    stopped = train_group(configs, device="cpu", should_stop=stop_after(37), checkpoint_paths=files)
    assert [r.status for r in stopped] == ["stopped"] * len(configs)
    assert all(f.exists() for f in files)
    resumed = train_group(configs, device="cpu", checkpoint_paths=files)
    assert [r.summary["fused"] for r in resumed] == [len(configs)] * len(configs)
    assert {r.summary["resumed_from_step"] for r in resumed} == {37}
    for a, f in zip(alone, resumed):
        a.summary["resumed_from_step"] = 37  # the only summary key a resume adds
        assert_same(a, f)


def test_a_fused_members_checkpoint_resumes_alone_and_an_alone_one_resumes_fused(tmp_path):
    configs = GROUPS["sgd-momentum"]
    alone = [runner.train(c, device="cpu") for c in configs]
    files = paths(tmp_path, len(configs))
    train_group(configs, device="cpu", should_stop=stop_after(30), checkpoint_paths=files)
    by_itself = runner.train(configs[1], device="cpu", checkpoint_path=files[1])  # stopped fused, resumed alone
    alone[1].summary["resumed_from_step"] = 30
    assert_same(alone[1], by_itself)

    for f in files:
        f.unlink(missing_ok=True)
    for config, f in zip(configs, files):  # each stopped alone at step 30, then all resumed as one group
        runner.train(config, device="cpu", should_stop=stop_after(30), checkpoint_path=f)
    resumed = train_group(configs, device="cpu", checkpoint_paths=files)
    assert [r.summary["fused"] for r in resumed] == [3, 3, 3]
    for a, f in zip(alone, resumed):
        a.summary["resumed_from_step"] = 30
        assert_same(a, f)


def test_a_member_resuming_at_another_step_runs_alone_and_says_so(tmp_path):
    configs = GROUPS["sgd-momentum"]
    files = paths(tmp_path, len(configs))
    runner.train(configs[0], device="cpu", should_stop=stop_after(20), checkpoint_path=files[0])
    results = train_group(configs, device="cpu", checkpoint_paths=files)
    assert results[0].summary["fused"] == "off: resumed alone from its checkpoint at step 20"
    assert results[0].summary["resumed_from_step"] == 20
    assert [r.summary["fused"] for r in results[1:]] == [2, 2]
    assert all(r.status == "done" for r in results)


def test_members_save_every_checkpoint_every_steps(tmp_path):
    configs = members(dict(TEACHER, steps=60, checkpoint_every=25, momentum=0.9), seed=[0, 1], lr=[0.05, 0.1])
    files = paths(tmp_path, 2)
    saved_at: list[list[int]] = [[], []]
    real_save = checkpoints.save

    def spy(path, state):
        saved_at[files.index(path)].append(state["step"])
        real_save(path, state)

    checkpoints.save = spy
    try:
        results = train_group(configs, device="cpu", checkpoint_paths=files)
    finally:
        checkpoints.save = real_save
    assert saved_at == [[25, 50], [25, 50]] and all(r.status == "done" for r in results)
    state = torch.load(files[1], weights_only=True)  # what a job alone reads: a torch.optim state dict
    assert state["step"] == 50 and state["optimizer"]["param_groups"][0]["lr"] == 0.1
    assert set(state["optimizer"]["state"][0]) == {"momentum_buffer"}
    assert len(state["optimizer"]["state"]) == len(state["model"])  # a buffer for every weight
