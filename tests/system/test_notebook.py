"""examples/walkthrough.ipynb runs top to bottom in a fresh python3 kernel, in a temporary copy of
examples/: two sweeps submitted from Python (built-ins, and the user's module walkthrough_fns),
CPU workers in a subprocess, the queue watched until done, results, curves, grid_array and two
figures; nothing is left behind. The stored notebook carries no outputs."""
from __future__ import annotations

import base64
import importlib.util
import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from support.processes import EXAMPLES, cli_env

NOTEBOOK = EXAMPLES / "walkthrough.ipynb"
JOBS = 12 + 2  # the built-in sweep (3 lr x 2 width x 2 seed) and the user's sweep (2 freq)


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "no code cells"
    dirty = [c.get("id") for c in code if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"cells stored with outputs (clear them before committing): {dirty}"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def _need_nbclient() -> None:
    missing = [m for m in ("nbclient", "nbformat", "ipykernel") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"nbclient is not installed ({', '.join(missing)} missing): pip install -e .[dev]")


def _this_python_kernel(root: Path) -> Path:
    """A private `python3` kernelspec running this interpreter, found first through JUPYTER_PATH.

    Nothing is registered for the user: a python3 kernel installed with `ipykernel install --user`
    for another interpreter (one without runner) would otherwise be picked up instead.
    """
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (runner tests)", "language": "python", "metadata": {"debugger": False},
    }))
    return root


def _text(cell) -> str:
    """Everything a cell printed or displayed as text."""
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(out.data.get("text/plain", "") + "\n")
    return "".join(parts)


def _html_rows(cell) -> int:
    """Body rows of the last HTML table a cell displayed."""
    html = [o.data["text/html"] for o in cell.outputs if "data" in o and "text/html" in o.data][-1]
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return body.count("<tr")


@pytest.mark.slow  # about 40 s: CI (scripts/test.sh) runs it, plain pytest skips it
@pytest.mark.timeout(600)
def test_walkthrough_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, show) -> None:
    _need_nbclient()
    import nbformat
    from nbclient import NotebookClient

    folder = tmp_path / "examples"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    before = sorted(p.relative_to(folder) for p in folder.rglob("*") if "__pycache__" not in p.parts)
    monkeypatch.setenv("JUPYTER_PATH", str(_this_python_kernel(tmp_path / "jupyter")))

    nb = nbformat.read(folder / "walkthrough.ipynb", as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=300, allow_errors=False,
                            resources={"metadata": {"path": str(folder)}})
    start = time.perf_counter()
    client.execute(env=cli_env())  # the kernel (and the workers it starts) import runner from this checkout
    took = time.perf_counter() - start
    cells = {c.id: c for c in nb.cells if c.cell_type == "code"}
    show(f"\nexamples/walkthrough.ipynb ran in {took:.1f}s\n" + _text(cells["watch"]).rstrip())

    assert "sweep walkthrough: 12 jobs, 12 added" in _text(cells["submit"])
    assert "sweep walkthrough: 12 jobs, 0 added" in _text(cells["submit"])  # submitting again adds nothing
    refused = _text(cells["refused"])
    assert "refused:" in refused and "__main__" in refused and "move notebook_teacher into a .py file" in refused
    assert "sweep own-fn: 2 jobs, 2 added" in _text(cells["submit-yaml"])

    polls = re.findall(r"^ *\d+\.\ds  pending (\d+)  running (\d+)  done (\d+)  failed (\d+)  diverged (\d+)$",
                       _text(cells["watch"]), flags=re.M)
    assert len(polls) >= 2, _text(cells["watch"])
    assert polls[-1] == ("0", "0", str(JOBS), "0", "0")
    assert re.search(r"^walkthrough +0 +0 +12 +0 +0 +0 +12$", _text(cells["watch"]), flags=re.M)  # runner status

    assert "12 jobs, 12 done" in _text(cells["results"])
    assert _html_rows(cells["results"]) == 12
    assert _html_rows(cells["groupby"]) == 3 * 2  # one row per (lr, width), mean and std over seeds
    assert _html_rows(cells["curves"]) == 200 // 20 // 2 + 1  # steps 0, 40, ..., 200: every other evaluation
    assert "shape (3, 2, 2)" in _text(cells["grid-array"])
    assert _html_rows(cells["grid-array"]) == 3
    own = _text(cells["own-results"])
    assert own.count("walkthrough_fns:sine_index") == 2 and own.count("done") == 2

    images = [o.data["image/png"] for o in cells["plots"].outputs if "data" in o and "image/png" in o.data]
    assert len(images) == 2  # plot_curves and plot_heatmap, shown inline
    assert all(base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n" for image in images)

    removed = re.search(r"^removed (.+)$", _text(cells["cleanup"]), flags=re.M)
    assert removed and not Path(removed.group(1)).exists()  # the temporary working folder is gone
    after = sorted(p.relative_to(folder) for p in folder.rglob("*") if "__pycache__" not in p.parts)
    assert after == before  # no jobs.db, log or checkpoints next to the notebook
