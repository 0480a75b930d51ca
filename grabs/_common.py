"""Helpers shared by the built-in grabs: side-effect-free evaluation, seeded probes, data choice.

The rules every built-in grab follows (and tests/unit/test_grabs.py checks):
- the model's parameters, buffers, `.grad` fields and train/eval mode are as they were;
- the global RNG (CPU and CUDA) is never drawn from: it belongs to the training run, and a
  resumed checkpoint must continue exactly as an uninterrupted run would;
- randomness (probe vectors, perturbations) comes from a private torch.Generator seeded from the
  job's `seed`, the step and the grab's name, so a measurement is reproducible and two jobs that
  differ only in lr see the same probes.
"""
from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def measuring(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout noise, no BatchNorm statistics updates) and a forked global RNG for the
    duration; the previous mode of every submodule and the RNG state are restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    dev = model_device(model)
    devices = [dev] if dev.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            model.eval()
            yield
    finally:
        for m, mode in modes:
            m.training = mode


def generator(ctx: dict[str, Any], salt: str) -> torch.Generator:
    """A CPU generator seeded from (job seed, step, salt): deterministic, independent of the global
    RNG, and identical on every device (draw on the CPU, then move)."""
    config = ctx.get("config") or {}
    seed = int(config.get("seed", 0) or 0)
    step = int(ctx.get("step", 0) or 0)
    state = np.random.SeedSequence([seed, step, zlib.crc32(salt.encode())]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) pairs of the parameters that require gradients."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def loss_data(ctx: dict[str, Any], max_n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The data a loss-landscape grab measures on: the training set if there is one (offline), else
    the last training batch (online), else the test set; its first `max_n` samples. None if none."""
    if max_n < 1:
        raise ValueError(f"the sample cap must be >= 1, got {max_n}")
    candidates = [(ctx.get("X_train"), ctx.get("y_train")), tuple(ctx.get("batch") or (None, None)),
                  (ctx.get("X_test"), ctx.get("y_test"))]
    for X, y in candidates:
        if X is not None and y is not None and len(X) > 0:
            return X[:max_n], y[:max_n]
    return None


def probe_inputs(ctx: dict[str, Any], n: int) -> torch.Tensor | None:
    """Fixed probe inputs for kernels: the first `n` test points, else training points, else the
    last batch's. None when there is no data at all."""
    if n < 1:
        raise ValueError(f"the number of probe points must be >= 1, got {n}")
    batch = ctx.get("batch") or (None, None)
    for X in (ctx.get("X_test"), ctx.get("X_train"), batch[0]):
        if X is not None and len(X) > 0:
            return X[:n]
    return None


@contextlib.contextmanager
def restored(params: Sequence[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Yields copies of the parameters' current values; whatever the block writes into the
    parameters is overwritten with those values afterwards (bit for bit), also on an exception."""
    saved = [p.detach().clone() for p in params]
    try:
        yield saved
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


def flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    out, i = [], 0
    for t in like:
        out.append(vector[i:i + t.numel()].view_as(t))
        i += t.numel()
    return out


def first_linear_weight(model: nn.Module) -> torch.Tensor:
    """The input layer's weight (d_out x d_in): the first nn.Linear found in model.modules(), else
    the first 2-D parameter."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            return m.weight
    for p in model.parameters():
        if p.ndim == 2:
            return p
    raise ValueError("the model has no nn.Linear layer and no 2-D parameter: no input-layer weight to measure")


def loss_fn_of(ctx: dict[str, Any]) -> LossFn:
    fn = ctx.get("loss_fn")
    if fn is None:
        raise ValueError("this grab needs the trainloop's loss_fn in its context")
    return fn
