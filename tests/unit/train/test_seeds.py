"""data_seed and model_seed (issue 18 item 1): one side of a job's randomness from a seed of its own,
the other side as `seed` gives it; neither set, every stream exactly as before."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from runner.train.loop import derive_seeds, train

BASE = dict(batchfn="gaussian_teacher", model="mlp", d=6, k=3, width=16, depth=1, batch_size=16, n_test=64,
            steps=40, eval_every=20, seed=3, snapshots=[0])


def _before(seed: int) -> dict[str, int]:
    """What derive_seeds returned before data_seed and model_seed existed."""
    children = np.random.SeedSequence(seed).spawn(4)
    return dict(zip(("data", "test", "model", "sample"), (int(c.generate_state(1, dtype=np.uint64)[0] >> 1)
                                                          for c in children)))


@pytest.mark.parametrize("seed", [0, 3, 2**40])
def test_without_the_new_keys_every_stream_is_what_it_was(seed):
    seeds = derive_seeds(seed)
    assert {k: seeds[k] for k in ("data", "test", "model", "sample")} == _before(seed)
    assert seeds["dropout"] == seeds["sample"]


def test_each_key_moves_only_its_own_side():
    base = derive_seeds(3)
    data = derive_seeds(3, data_seed=7)
    model = derive_seeds(3, model_seed=7)
    assert (data["model"], data["dropout"]) == (base["model"], base["dropout"])
    assert all(data[k] != base[k] for k in ("data", "test", "sample"))
    assert (model["data"], model["test"], model["sample"]) == (base["data"], base["test"], base["sample"])
    assert all(model[k] != base[k] for k in ("model", "dropout"))


def test_same_data_other_init_and_the_reverse():
    ref = train(dict(BASE, data_seed=5, model_seed=1), device="cpu")
    other_init = train(dict(BASE, data_seed=5, model_seed=2), device="cpu")
    other_data = train(dict(BASE, data_seed=6, model_seed=1), device="cpu")
    w_ref, w_init, w_data = (dict((n, a) for n, s, a in r.arrays if s == 0) for r in (ref, other_init, other_data))
    assert all(np.array_equal(w_ref[n], w_data[n]) for n in w_ref)      # one model_seed: the same init
    assert not all(np.array_equal(w_ref[n], w_init[n]) for n in w_ref)  # another model_seed: another init
    assert ref.metrics != other_init.metrics and ref.metrics != other_data.metrics


def test_with_both_keys_set_seed_changes_nothing():
    a = train(dict(BASE, seed=1, data_seed=9, model_seed=4), device="cpu")
    b = train(dict(BASE, seed=2, data_seed=9, model_seed=4), device="cpu")
    assert a.summary["final_test_loss"] == b.summary["final_test_loss"]  # seed no longer matters
    assert torch.equal(torch.tensor(a.summary["final_train_loss"]), torch.tensor(b.summary["final_train_loss"]))


def test_members_of_a_fused_group_get_their_own_seeds_as_alone():
    from runner.train.fused import train_group

    configs = [dict(BASE, data_seed=5, model_seed=m) for m in range(3)]
    fused = train_group(configs, device="cpu")
    assert all(r.summary["fused"] == 3 for r in fused)
    for cfg, r in zip(configs, fused):
        assert r.summary["final_test_loss"] == pytest.approx(train(cfg, device="cpu").summary["final_test_loss"], rel=1e-5)
