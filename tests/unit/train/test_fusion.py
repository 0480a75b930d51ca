"""Fusion keys: jobs that differ only in values a fused step holds per member share a key; anything
that fixes a shape, a kernel or a cadence gives another key."""
from __future__ import annotations

import pytest
from support.databases import sql

import runner
from runner.train.fusion import fusion_key, per_member_keys
from runner.train.plan import check_config

BASE = dict(batchfn="gaussian_teacher", model="mlp", d=8, batch_size=32, width=16, depth=2, steps=100,
            grabs=["weight_norm"], grab_every=50)


def key(sweep: str = "s", **changes) -> str:
    return fusion_key(sweep, check_config(dict(BASE, **changes)))


def test_the_per_member_keys_are_the_options_marked_so_and_the_batch_functions_floats():
    config = check_config(dict(BASE, seed=3, lr=0.1, momentum=0.9, weight_decay=1e-4, thresholds=[0.1], ema=0.5,
                               noise=0.2, k=4, optimizer="sgd", nesterov=True, gamma=2.0))
    assert per_member_keys(config) == {"seed", "lr", "momentum", "weight_decay", "thresholds", "ema", "noise"}


@pytest.mark.parametrize("changes", [
    dict(seed=1), dict(lr=0.5), dict(momentum=0.9), dict(weight_decay=0.01), dict(thresholds=[0.5, 0.1]),
    dict(ema=0.0), dict(stop_on_thresholds=True), dict(noise=0.3), dict(seed=7, lr=0.003, noise=0.1),
], ids=lambda c: ",".join(c))
def test_jobs_that_differ_only_in_values_share_a_key(changes):
    assert key(**changes) == key()


def test_adam_scalars_and_schedule_values_are_per_member():
    adam = dict(optimizer="adam", schedule="step", step_size=10)
    assert key(**adam, betas=[0.8, 0.99], eps=1e-6, step_gamma=0.5) == key(**adam)
    assert key(optimizer="sgd", schedule="cosine", min_lr=0.01) == key(optimizer="sgd", schedule="cosine")


@pytest.mark.parametrize("changes", [
    dict(width=32), dict(depth=3), dict(d=9), dict(k=4), dict(batch_size=64), dict(optimizer="adam"),
    dict(nesterov=True, momentum=0.9), dict(steps=200), dict(loss="bce"), dict(schedule="step", step_size=10),
    dict(changes=[{"at": 50, "lr": 0.001}]), dict(precision="tf32"), dict(capture=False), dict(n_test=100),
    dict(eval_every=10), dict(grab_every=10), dict(grabs=["grad_norm"]), dict(checkpoint_every=10),
    dict(snapshots=["end"]), dict(activation="tanh"),
    dict(gamma=2.0),  # a float, but the model's: it fixes the architecture's output scale, not a member's value
    dict(online=False, n_train=64),
], ids=lambda c: ",".join(c))
def test_what_fixes_shapes_kernels_or_cadence_gives_another_key(changes):
    assert key(**changes) != key()


def test_the_sweep_is_part_of_the_key_and_the_key_is_32_hex():
    assert key("a") != key("b") and len(key()) == 32 and int(key(), 16) >= 0


def test_submit_stores_one_key_per_shape(tmp_path):
    db = str(tmp_path / "jobs.db")
    grid = dict(sweep="f", base=dict(BASE), grid=dict(width=[16, 32], lr=[0.1, 0.01], seed=[0, 1], noise=[0.0, 0.5]))
    runner.submit(grid, db=db)
    rows = sql(db, "SELECT json_extract(config, '$.width'), fusion_key FROM jobs")
    assert len(rows) == 16
    by_width = {}
    for width, fkey in rows:
        by_width.setdefault(width, set()).add(fkey)
    assert {w: len(keys) for w, keys in by_width.items()} == {16: 1, 32: 1}
    assert by_width[16] != by_width[32]


def test_the_grid_shortcut_gives_each_jobs_own_key():
    """plan_jobs hashes a whole config once per distinct signature: the keys must be fusion_key's."""
    from runner.queue.submission import load_spec, plan_jobs

    grid = dict(sweep="g", base=dict(BASE, batchfn="gaussian_teacher"),
                grid=dict(batchfn=["gaussian_teacher", "linear_teacher"], width=[16, 32], seed=[0, 1], noise=[0.0, 0.2]))
    jobs = plan_jobs(load_spec(grid))
    assert len(jobs) == 16 and all(job.fusion_key == fusion_key("g", job.config) for job in jobs)
    assert len({job.fusion_key for job in jobs}) == 4  # two batch functions x two widths


def test_a_jobs_fuse_setting_caps_its_group_and_is_no_part_of_its_config(tmp_path):
    from runner.queue.store import Store

    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="f", base=dict(BASE), grid=dict(seed=list(range(5)), fuse=["auto", 1, 2])), db=db)
    rows = sql(db, "SELECT json_extract(config, '$.seed'), fusion_key, config FROM jobs ORDER BY id")
    assert len(rows) == 5  # fuse is a queue setting, like priority: three values of it are one job each
    assert all('"fuse"' not in config for _, _, config in rows)
    runner.submit(dict(sweep="g", base=dict(BASE, fuse=1), grid=dict(seed=[0, 1])), db=db)
    runner.submit(dict(sweep="h", base=dict(BASE, fuse=2), grid=dict(seed=[0, 1, 2])), db=db)
    keys = dict(sql(db, "SELECT sweep, group_concat(DISTINCT coalesce(fusion_key, 'none')) FROM jobs GROUP BY sweep"))
    assert keys["g"] == "none" and keys["h"].endswith("/2") and "/" not in keys["f"]
    with Store(db) as store:
        claims = [store.claim_group("w", host="h", device="cpu", most=16, sweep="h") for _ in range(2)]
        assert [len(c) for c in claims] == [2, 1]  # fuse: 2 caps a --fuse 16 claim
        assert [len(store.claim_group("w", host="h", device="cpu", most=16, sweep="g")) for _ in range(2)] == [1, 1]


@pytest.mark.parametrize("value", [0, -1, 1.5, "many", True])
def test_a_bad_fuse_value_is_refused_at_submit(value, tmp_path):
    with pytest.raises(runner.UserError, match="fuse must be auto or an integer >= 1"):
        runner.submit(dict(sweep="f", base=dict(BASE, fuse=value)), db=str(tmp_path / "jobs.db"))
