"""Every example grid file validates in full, and its first cells run end to end (shortened)."""
from __future__ import annotations

import pytest
from support.processes import EXAMPLES

from runner.queue.submission import load_spec, plan_jobs
from runner.train.loop import train

STUDIES = {  # file: (jobs in the grid, metric names its first cell must record)
    "mlp_learning_curves.yaml": (96, {"test_loss", "train_loss"}),
    "mlp_generalization.yaml": (27, {"test_loss"}),
    "loss_landscape.yaml": (270, {"test_acc", "hessian_top.0", "hessian_top.2", "hessian_trace", "sharpness",
                                  "interpolation.barrier"}),
    "dln_batch_switch.yaml": (18, {"weight_norm.total", "grad_norm", "test_loss"}),
    "synthetic_tasks.yaml": (18, {"test_loss"}),
    "connectivity.yaml": (9, {"test_loss", "train_loss", "test_acc"}),
    "landscape_pca.yaml": (4, {"test_loss", "train_loss"}),
    "dln_ab.yaml": (6, {"minibatch.test_loss", "full.train_loss", "param_distance", "output_distance"}),
}
SHORT = dict(steps=40, eval_every=20, n_test=128)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_an_example_study_validates_and_runs(name):
    jobs = plan_jobs(load_spec(EXAMPLES / name))
    expected_jobs, metrics = STUDIES[name]
    assert len(jobs) == expected_jobs
    configs = [job.config for job in jobs]
    # the first cell, and the last (another dataset, loss or architecture), shortened
    for cfg in (configs[0], configs[-1]):
        short = dict(cfg, **SHORT)
        if "n_train" in short:
            short["n_train"] = min(short["n_train"], 256)
        if "changes" in short:
            short["changes"] = [dict(c, at=20) for c in short["changes"]]
        out = train(short, device="cpu")
        assert out.status == "done", out.reason
        names = {n for _, n, _ in out.metrics}
        assert metrics <= names, metrics - names
        assert out.summary.get("final_test_loss", out.summary.get("full.final_test_loss")) is not None


def test_the_generalisation_study_keeps_weights_at_init_and_end():
    cfg = plan_jobs(load_spec(EXAMPLES / "mlp_generalization.yaml"))[0].config
    out = train(dict(cfg, **SHORT, n_train=128), device="cpu")
    assert {s for n, s, _ in out.arrays if n == "weights.net.0.weight"} == {0, 40}


def test_the_landscape_study_keeps_its_trajectory():
    cfg = plan_jobs(load_spec(EXAMPLES / "landscape_pca.yaml"))[0].config
    out = train(dict(cfg, **SHORT, n_train=128), device="cpu")
    assert sorted({s for n, s, _ in out.arrays if n == "weights.net.0.weight"}) == [0, 25, 40]
