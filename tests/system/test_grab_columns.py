"""Grab values as result columns (issue 18): what a grab measures at a job's end is a summary column
`final_<grab>`, so results, heatmaps and reports show Hessian traces and norms beside the losses."""
from __future__ import annotations

import pytest

import runner

GRID = dict(sweep="grabbed", batchfn="gaussian_teacher", model="mlp",
            grabs=["weight_norm", "hessian_trace", "plugins_for_tests:scaled_norm"],
            base=dict(d=4, k=2, batch_size=16, depth=1, steps=40, n_test=32, eval_every=20, grab_every=20,
                      hutchinson_probes=2, scale=2.0),
            grid=dict(lr=[0.05, 0.1], width=[8, 16]))


def test_final_grab_values_are_result_columns_plots_and_report_values(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    df = runner.run(GRID, db=db, devices="cpu", quiet=True)
    assert (df.status == "done").all()
    for column in ("final_weight_norm.total", "final_hessian_trace", "final_scaled_norm"):  # a dict: one per key
        assert column in df and df[column].notna().all(), column
    curves = runner.curves(db, "grabbed", metrics=["weight_norm.total"])
    last = curves[curves.step == 40].set_index("job_id").value
    assert df.set_index("job_id")["final_weight_norm.total"].to_dict() == pytest.approx(last.to_dict())

    g = runner.grid_array(db, "grabbed", value="hessian_trace", axes=["lr", "width"])  # a grab's name: its last value
    assert g.values.shape == (2, 2) and not g.values.mask.any()
    heat = run_cli("plot", "heatmap", "--sweep", "grabbed", "--value", "hessian_trace", "--x", "lr", "--y", "width",
                   "-o", "h.png", "--db", db)
    assert heat.returncode == 0 and (tmp_path / "h.png").stat().st_size > 1000, heat.stderr
    report = run_cli("report", "--sweep", "grabbed", "-o", "rep", "--db", db)
    assert report.returncode == 0, report.stderr
    assert "final_hessian_trace" in (tmp_path / "rep" / "summary.md").read_text()
