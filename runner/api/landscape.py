"""Loss landscapes of finished jobs, from the weights they stored (`snapshots`, `trajectory_every`):

Jobs are named by id (7), a paired job's members as "7.a" (runner.api.stored).

- `runner.connectivity(db, a, b)`: the loss along the path between two jobs' solutions (linear or a
  fitted quadratic Bezier curve), optionally after aligning b's hidden units to a's by permutation;
  the barrier is the path's highest loss minus the mean of its end points'.
- `runner.trajectory(db, job)`: PCA of a job's weights over time (explained variance) and the loss on
  the plane of the top two components, with the trajectory's coordinates on it.
- `runner.loss_slice(db, job)`: the loss along one or two random filter-normalised directions.

The model is rebuilt from the job's config (runner.load_model's way) and the loss is the job's own,
on its test set or (offline) its training set, drawn again from its seeds. Everything runs on the
CPU unless `device` says otherwise.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UserError
from .stored import label, parse_ref, weight_history, weights_at

DATA_CHOICES = ("test", "train")


def connectivity(db: str, job_a: int | str, job_b: int | str, *, step: int | str = "end", points: int = 25,
                 align: str = "none", path: str = "linear", data: str | None = None, bezier_steps: int = 1000,
                 bezier_lr: float = 0.01, device: str = "cpu") -> dict[str, Any]:
    """The loss (and accuracy) along the path from job_a's weights to job_b's at `step`, on job_a's data.

    align "permutation" first reorders b's hidden units to match a's (weight matching: the same
    function as b, nearer a); path "bezier" fits a quadratic Bezier curve's control point for
    bezier_steps Adam steps on job_a's training batches. Returns t, loss, accuracy (classification),
    barrier (max loss on the path minus the mean of the end points'), and what was chosen."""
    if align not in ("none", "permutation"):
        raise UserError(f"align must be none or permutation, got {align!r}")
    if path not in ("linear", "bezier"):
        raise UserError(f"path must be linear or bezier, got {path!r}")
    _check_points(points, 2)
    from ..train.alignment import linear_chain, weight_matching
    from ..train.geometry import barrier, bezier, fit_bezier, lerp

    config_a, step_a, a = weights_at(db, job_a, step)
    config_b, step_b, b = weights_at(db, job_b, step)
    model, job_data, evaluate, chosen = _evaluator(config_a, data, device)
    other, _ = _model(config_b, device)
    _check_same_function_family(model, other, job_a, job_b)
    a, b = _ordered(model, a, job_a), _ordered(model, b, job_b)
    if align == "permutation":
        b = weight_matching(a, b, linear_chain(model))
    ts = np.linspace(0.0, 1.0, points)
    if path == "bezier":
        bend = fit_bezier(model, _loss(config_a), a, b, job_data.next_batch, bezier_steps, bezier_lr)
        along = [bezier(a, bend, b, float(t)) for t in ts]
    else:
        along = [lerp(a, b, float(t)) for t in ts]
    values = evaluate.along(along)
    return {"t": ts, **values, "barrier": barrier(values["loss"]), "jobs": (_shown(job_a), _shown(job_b)),
            "steps": (step_a, step_b), "align": align, "path": path, "data": chosen}


def trajectory(db: str, job_id: int | str, *, points: int = 21, margin: float = 0.25, data: str | None = None,
               device: str = "cpu") -> dict[str, Any]:
    """PCA of a job's stored weights over time and the loss surface on the plane of the top two
    components, centred on its last stored weights. Returns steps, explained_variance_ratio, coords
    ([steps, 2]: each snapshot on the plane), alphas, betas and surface ([betas, alphas] losses)."""
    _check_points(points, 3)
    if not margin >= 0:
        raise UserError(f"margin must be >= 0, got {margin}")
    from ..train.geometry import plane, trajectory_pca, unflatten

    config, history = _history(db, job_id)
    model, _, evaluate, chosen = _evaluator(config, data, device)
    weights = [_ordered(model, w, job_id) for _, w in history]
    pca = trajectory_pca(weights, [s for s, _ in history], components=2)
    if pca.directions.shape[0] < 2:
        raise UserError(f"job {job_id}'s weights span one direction only: store more steps (trajectory_every)")
    axes = []
    for c in range(2):
        lo, hi = float(pca.coords[:, c].min()), float(pca.coords[:, c].max())
        pad = margin * max(hi - lo, 1e-12)
        axes.append(np.linspace(lo - pad, hi + pad, points))
    centre = weights[-1]
    d1, d2 = (unflatten(pca.directions[c], centre) for c in range(2))
    grid = plane(centre, d1, d2, axes[0], axes[1])
    surface = np.array([evaluate.along(row)["loss"] for row in grid])
    return {"job": _shown(job_id), "steps": pca.steps, "explained_variance_ratio": pca.explained_variance_ratio,
            "coords": pca.coords, "alphas": axes[0], "betas": axes[1], "surface": surface, "data": chosen}


def loss_slice(db: str, job_id: int | str, *, step: int | str = "end", dims: int = 1, points: int = 25,
               span: float = 1.0, seed: int = 0, data: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """The loss along `dims` (1 or 2) random filter-normalised directions through the job's weights at
    `step`, alpha (and beta) from -span to span. Returns alphas, betas (2-D), loss ([points] or
    [points, points], rows by beta)."""
    if dims not in (1, 2):
        raise UserError(f"dims must be 1 or 2, got {dims}")
    _check_points(points, 3)
    if not span > 0:
        raise UserError(f"span must be > 0, got {span}")
    from ..train.geometry import filter_normalised_direction, plane

    config, chosen_step, found = weights_at(db, job_id, step)
    model, _, evaluate, chosen = _evaluator(config, data, device)
    centre = _ordered(model, found, job_id)
    rng = np.random.default_rng(seed)
    d1 = filter_normalised_direction(centre, rng)
    d2 = filter_normalised_direction(centre, rng) if dims == 2 else None
    alphas = np.linspace(-span, span, points)
    betas = alphas.copy() if dims == 2 else None
    losses = np.array([evaluate.along(row)["loss"] for row in plane(centre, d1, d2, alphas, betas)])
    out = {"job": _shown(job_id), "step": chosen_step, "alphas": alphas, "loss": losses if dims == 2 else losses[0],
           "data": chosen}
    if betas is not None:
        out["betas"] = betas
    return out


# ------------------------------------------------------------------------------------------------
def _check_points(points: Any, least: int) -> None:
    if isinstance(points, bool) or not isinstance(points, int) or points < least:
        raise UserError(f"points must be an integer >= {least}, got {points!r}")


def _history(db: str, ref: int | str) -> tuple[dict[str, Any], list[tuple[int, dict[str, np.ndarray]]]]:
    config, history = weight_history(db, ref)
    if len(history) < 3:
        raise UserError(f"job {ref} stored weights at {len(history)} step(s); a trajectory needs 3 or more: "
                        "give its grid `trajectory_every: N` (weights every N steps)")
    return config, history


def _shown(ref: int | str) -> int | str:
    """A reference as results show it: the job id, or "7.a" for a member of a paired job."""
    job, member = parse_ref(ref)
    return job if member is None else label(job, member)


def _model(config: dict[str, Any], device: str) -> tuple[Any, Any]:
    from ..train.loading import model_and_data

    model, data = model_and_data(config, device)
    return model.eval(), data


def _loss(config: dict[str, Any]) -> str:
    from ..train.plan import plan_job

    return plan_job({k: v for k, v in config.items() if k != "init_from"}).options.loss


def _evaluator(config: dict[str, Any], data: str | None, device: str) -> tuple[Any, Any, Any, str]:
    """The job's model, its data, an Evaluator on the chosen set and that set's name: by default the
    training set of an offline job (what it minimised), else the test set."""
    from ..train.geometry import Evaluator

    if data is not None and data not in DATA_CHOICES:
        raise UserError(f"data must be test or train, got {data!r}")
    model, job_data = _model(config, device)
    chosen = data or ("train" if job_data.X_train is not None else "test")
    X, y = (job_data.X_train, job_data.y_train) if chosen == "train" else (job_data.X_test, job_data.y_test)
    if X is None:
        raise UserError("the job has no test set (n_test: 0): evaluate on its training set (data: train, offline jobs)"
                        if chosen == "test" else "the job trained online, with no fixed training set: use data test")
    return model, job_data, Evaluator(model, _loss(config), X, y), chosen


def _ordered(model: Any, weights: dict[str, np.ndarray], job_id: int) -> dict[str, np.ndarray]:
    """The weights in the model's parameter order, as float64; UserError when they do not fit it."""
    from ..train.loading import weights_misfit

    misfit = weights_misfit(model, {k: tuple(np.shape(v)) for k, v in weights.items()})
    if misfit:
        raise UserError(f"job {job_id}: {misfit}")
    return {name: np.asarray(weights[name], dtype=np.float64) for name, _ in model.named_parameters()}


def _check_same_function_family(model: Any, other: Any, job_a: int, job_b: int) -> None:
    """Both jobs' models must compute the same function of the same weights: same parameter shapes and
    the same buffers (a centred mlp keeps its own initial weights as buffers)."""
    import torch

    shapes = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    if shapes != [(n, tuple(p.shape)) for n, p in other.named_parameters()]:
        raise UserError(f"jobs {job_a} and {job_b} have different architectures: a path between them needs "
                        "the same model and shapes")
    theirs = dict(other.named_buffers())
    for name, buffer in model.named_buffers():
        if name not in theirs or not torch.equal(buffer, theirs[name]):
            raise UserError(f"jobs {job_a} and {job_b}'s models differ in {name} (not a trained weight: e.g. "
                            "center: true keeps each job's initial weights), so one path cannot serve both")
