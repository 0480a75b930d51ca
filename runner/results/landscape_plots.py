"""Figures of loss landscapes from the arrays runner.connectivity, runner.trajectory and
runner.loss_slice return: the loss along paths between solutions, and a trajectory on the plane of
its principal components beside random filter-normalised slices. Numbers in, a Figure out (written
when given `out`), drawn on the Agg canvas as every figure here is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter

from .plots import DPI, _finish, check_output  # (the sweep figures' writer)


def _canvas(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def path_label(path: Mapping[str, Any]) -> str:
    """'linear, aligned: barrier 0.012' for one connectivity result."""
    align = ", permutation-aligned" if path["align"] == "permutation" else ""
    return f"{path['path']}{align}: barrier {path['barrier']:.3g}"


def plot_connectivity(paths: Sequence[Mapping[str, Any]], out: str | Path | None = None) -> Figure:
    """Loss (and accuracy, for classification) against t along each path, one line per path."""
    check_output(out)
    with_acc = all("accuracy" in p for p in paths)
    fig = _canvas(6.4 * (2 if with_acc else 1), 4.2)
    axes = fig.subplots(1, 2 if with_acc else 1, squeeze=False)[0]
    for p in paths:
        axes[0].plot(p["t"], p["loss"], marker=".", label=path_label(p))
        if with_acc:
            axes[1].plot(p["t"], p["accuracy"], marker=".", label=path_label(p))
    a, b = paths[0]["jobs"]
    axes[0].set(xlabel=f"t (0: job {a}, 1: job {b})", ylabel=f"{paths[0]['data']} loss",
                title=f"loss between job {a} and job {b}")
    axes[0].legend(fontsize=8)
    if with_acc:
        axes[1].set(xlabel=f"t (0: job {a}, 1: job {b})", ylabel=f"{paths[0]['data']} accuracy", title="accuracy")
    return _finish(fig, out)


def plot_landscape(trajectory: Mapping[str, Any], slices: Sequence[Mapping[str, Any]] = (),
                   out: str | Path | None = None) -> Figure:
    """Left: the loss on the plane of the trajectory's top two principal components (log-scaled
    contours) with the trajectory on it, start and end marked. Right, when given: 1-D random
    filter-normalised slices through the final weights."""
    check_output(out)
    fig = _canvas(6.4 * (2 if slices else 1), 5.0)
    axes = fig.subplots(1, 2 if slices else 1, squeeze=False)[0]
    ax = axes[0]
    surface = np.asarray(trajectory["surface"], dtype=float)
    finite = surface[np.isfinite(surface) & (surface > 0)]
    norm = LogNorm(finite.min(), finite.max()) if finite.size and finite.max() > finite.min() else None
    shown = np.where(np.isfinite(surface) & (surface > 0), surface, np.nan) if norm else surface
    levels = np.geomspace(norm.vmin, norm.vmax, 25) if norm else 25
    filled = ax.contourf(trajectory["alphas"], trajectory["betas"], shown, levels=levels, norm=norm, cmap="viridis")
    fig.colorbar(filled, ax=ax, label=f"{trajectory['data']} loss", format=FormatStrFormatter("%.3g"))
    coords = np.asarray(trajectory["coords"])
    ax.plot(coords[:, 0], coords[:, 1], color="white", marker=".", lw=1.2)
    steps = trajectory["steps"]
    ax.annotate(f"step {steps[0]}", coords[0], color="white", fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.annotate(f"step {steps[-1]}", coords[-1], color="white", fontsize=8, xytext=(4, -10), textcoords="offset points")
    ratio = trajectory["explained_variance_ratio"]
    ax.set(xlabel=f"PC1 ({100 * ratio[0]:.1f}% of variance)", ylabel=f"PC2 ({100 * ratio[1]:.1f}% of variance)",
           title=f"job {trajectory['job']}: trajectory on its top two principal components")
    if slices:
        right = axes[1]
        for i, s in enumerate(slices):
            right.plot(s["alphas"], s["loss"], label=f"direction {i + 1}")
        right.set(xlabel="alpha (filter-normalised units)", ylabel=f"{slices[0]['data']} loss", yscale="log",
                  title=f"random directions through step {slices[0]['step']}")
        right.legend(fontsize=8)
    return _finish(fig, out)
