"""A job of members: named variants of one job (`members: {a: {batch_size: 16}, b: {}}`) trained on
the same data, each with its own model, optimizer and results, and compared as they train.

Members do not interact: each is its own job config (the job's keys with the member's on top), so
training them one after the other gives what lockstep training gives, step for step. Members whose
configs differ only in per-member values (seeds, lr, ...) train as one fused group; others train one
after the other. Each member keeps its weights at every comparison step (the grab cadence and the
end), from which the comparisons are computed: `param_distance` (L2 norm of the difference of all
parameters), `param_cosine` (cosine of the two parameter vectors; both need equal shapes) and
`output_distance` (root mean square difference of the two networks' outputs on the first member's
test set). Results: the members' own metrics, arrays and summary columns prefixed with their names
(`a.train_loss`, `a.final_test_loss`), and the comparisons as metrics (`final_param_distance` the
last); with more than two members each comparison is named by its pair (`param_distance.a-b`).
A paired job has no checkpoint: stopped, it starts again from step 0.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .fused import train_group
from .fusion import fusion_key
from .geometry import flatten
from .loading import load_weights, model_and_data
from .loop import RunStatus, TrainResult, train
from .options import member_config
from .plan import JobPlan

COMPARISONS = ("param_distance", "param_cosine", "output_distance")
_WEIGHTS = "weights."
_SHARED = ("device", "host", "precision")  # summary values of the job, not of a member


def comparison_steps(plan: JobPlan) -> list[int]:
    """The steps before the end at which the members are compared: the grab cadence (step 0 included)."""
    o = plan.options
    return [0] if not o.grab_every else list(range(0, o.steps, o.grab_every))


def train_members(plan: JobPlan, device: torch.device, should_stop: Callable[[], bool],
                  initial_weights: Mapping[str, Any] | None = None) -> TrainResult:
    """Train every member of a paired job and compare them; one TrainResult for the job."""
    started = time.perf_counter()
    names = list(plan.options.members or {})
    configs = [member_config(plan.config, name) for name in names]
    steps = comparison_steps(plan)
    runs = [{**c, "snapshots": sorted({*_steps(c.get("snapshots")), *steps}) + ["end"]} for c in configs]
    if len({fusion_key("", c) for c in runs}) == 1:
        results = train_group(runs, device=device, should_stop=should_stop, threads=None,
                              initial_weights=[initial_weights] * len(runs))
    else:
        results = []
        for run in runs:  # one after the other; a stop ends the job (it starts again from step 0)
            results.append(train(run, device=device, should_stop=should_stop, threads=None,
                                 initial_weights=initial_weights))
            if results[-1].status == RunStatus.STOPPED:
                break
    if any(r.status == RunStatus.STOPPED for r in results):
        return TrainResult(RunStatus.STOPPED, {"steps_run": 0, "wall_s": round(time.perf_counter() - started, 4)})
    weights = [_weights_by_step(r) for r in results]
    compared = _compare(names, configs, weights, device)
    return _job_result(names, configs, results, compared, time.perf_counter() - started)


def _steps(snapshots: Any) -> set[int]:
    return {s for s in (snapshots or []) if s != "end"}


def _weights_by_step(result: TrainResult) -> dict[int, dict[str, np.ndarray]]:
    out: dict[int, dict[str, np.ndarray]] = {}
    for name, step, array in result.arrays:
        if name.startswith(_WEIGHTS):
            out.setdefault(step, {})[name[len(_WEIGHTS):]] = array
    return out


def _compare(names: Sequence[str], configs: Sequence[dict[str, Any]], weights: Sequence[dict[int, dict[str, np.ndarray]]],
             device: torch.device) -> list[tuple[int, str, float]]:
    """Every pair's comparisons at every step both stored weights at (the last common one: their ends)."""
    first_model, data = model_and_data(configs[0], device)
    models = [first_model] + [model_and_data(c, device)[0] for c in configs[1:]]
    X = data.X_test
    out: list[tuple[int, str, float]] = []
    for i, j in itertools.combinations(range(len(names)), 2):
        suffix = "" if len(names) == 2 else f".{names[i]}-{names[j]}"
        a_steps, b_steps = weights[i], weights[j]
        common = sorted(set(a_steps) & set(b_steps))
        ends = (max(a_steps), max(b_steps))
        pairs = [(s, a_steps[s], b_steps[s]) for s in common if s < min(ends)]
        pairs.append((max(ends), a_steps[ends[0]], b_steps[ends[1]]))  # the final weights of each
        same_shapes = _shapes(a_steps[ends[0]]) == _shapes(b_steps[ends[1]])
        for step, a, b in pairs:
            if same_shapes:
                va, vb = _flat(a), _flat(b)
                out.append((step, "param_distance" + suffix, float(np.linalg.norm(va - vb))))
                norms = float(np.linalg.norm(va) * np.linalg.norm(vb))
                out.append((step, "param_cosine" + suffix, float(va @ vb / norms) if norms > 0 else float("nan")))
            if X is not None:
                out.append((step, "output_distance" + suffix, _output_distance(models[i], a, models[j], b, X)))
    return out


def _shapes(weights: Mapping[str, np.ndarray]) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(np.shape(v))) for k, v in sorted(weights.items())]


def _flat(weights: Mapping[str, np.ndarray]) -> np.ndarray:
    return flatten(dict(sorted(weights.items())))  # by name: the two members' vectors line up


def _output_distance(model_a: torch.nn.Module, a: Mapping[str, np.ndarray], model_b: torch.nn.Module,
                     b: Mapping[str, np.ndarray], X: torch.Tensor) -> float:
    load_weights(model_a, a)
    load_weights(model_b, b)
    with torch.no_grad():
        diff = (model_a.eval()(X) - model_b.eval()(X)).double()
    return float(diff.pow(2).mean().sqrt())


def _job_result(names: Sequence[str], configs: Sequence[dict[str, Any]], results: Sequence[TrainResult],
                compared: list[tuple[int, str, float]], wall_s: float) -> TrainResult:
    """The members' results under their names, the comparisons, and the job's own summary values."""
    summary: dict[str, Any] = {  # (the config's `members` names them)
        "steps_run": max(int(r.summary.get("steps_run", 0)) for r in results),
        "wall_s": round(wall_s, 4),
        **{k: results[0].summary[k] for k in _SHARED if k in results[0].summary},
    }
    metrics: list[tuple[int, str, float]] = []
    arrays: list[tuple[str, int, np.ndarray]] = []
    reasons = []
    for name, config, result in zip(names, configs, results):
        kept = _steps(config.get("snapshots"))
        keeps_end = "end" in (config.get("snapshots") or [])
        end = int(result.summary.get("steps_run", 0))
        summary.update({f"{name}.{k}": v for k, v in result.summary.items() if k not in _SHARED})
        metrics += [(s, f"{name}.{n}", v) for s, n, v in result.metrics]
        arrays += [(f"{name}.{n}", s, a) for n, s, a in result.arrays
                   if not n.startswith(_WEIGHTS) or s in kept or (keeps_end and s == end)]
        if result.status == RunStatus.DIVERGED:
            reasons.append(f"member {name}: {result.reason}")
    metrics += [(s, n, v) for s, n, v in compared if np.isfinite(v)]
    last: dict[str, tuple[int, float]] = {}
    for step, name, value in compared:
        if step >= last.get(name, (-1, 0.0))[0]:
            last[name] = (step, value)
    summary.update({f"final_{name}": value if np.isfinite(value) else None for name, (_, value) in last.items()})
    status = RunStatus.DIVERGED if reasons else RunStatus.DONE
    return TrainResult(status, summary, metrics, arrays, "; ".join(reasons) or None)
