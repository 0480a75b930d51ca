"""Task metrics measured by a grab: classification accuracy on every data set the job has."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from runner.registry import grab

from ._common import measuring


def correct(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-sample correctness (bool). Several outputs: argmax(out) == label (an integer label, or the
    argmax of a one-hot / score target). One output: out > 0 against y > 0.5 for bce (0/1 labels),
    against y > 0 otherwise (+-1 labels, or the sign of a regression target)."""
    out = out.reshape(len(out), -1)
    if out.shape[1] > 1:
        target = y.reshape(len(y), -1)
        labels = target.argmax(-1) if target.shape[1] > 1 else target[:, 0].long()
        return out.argmax(-1) == labels
    target = y.reshape(-1)
    return (out[:, 0] > 0) == (target > (0.5 if loss == "bce" else 0.0))


@grab("accuracy")
def accuracy(model: nn.Module, **ctx: Any) -> dict[str, float] | None:
    """Classification accuracy on the training set (offline), the last training batch and the test set.

    acc = (1/n) sum_i [pred(x_i) == label_i], pred = argmax_o f_o(x) (several outputs) or f(x) > 0 (one);
    returns {"train": .., "batch": .., "test": ..} with the sets the job has."""
    loss = str((ctx.get("config") or {}).get("loss", "mse"))
    batch = ctx.get("batch") or (None, None)
    sets = {"train": (ctx.get("X_train"), ctx.get("y_train")), "batch": tuple(batch), "test": (ctx.get("X_test"), ctx.get("y_test"))}
    out: dict[str, float] = {}
    with measuring(model), torch.no_grad():
        for name, (X, y) in sets.items():
            if X is None or y is None or len(X) == 0:
                continue
            out[name] = float(correct(model(X), y, loss).float().mean())
    return out or None
