"""Helpers shared by the built-in batch functions: the Batch type, argument checks that raise a
clear ValueError, and the reference-sample standardisation used by the classification sets."""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch

Batch = Callable[[int], tuple[torch.Tensor, torch.Tensor]]

# Size of the reference sample drawn in a factory body to estimate feature means and stds.
REFERENCE_SAMPLES = 10_000


def check_int(name: str, value: Any, low: int | None = None, fn: str = "") -> int:
    """`value` as an int (a whole float is accepted); ValueError naming `fn` and `name` otherwise."""
    where = f"{fn}: " if fn else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{where}{name} must be an integer, got {value!r}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{where}{name} must be >= {low}, got {value}")
    return value


def check_float(name: str, value: Any, low: float | None = None, fn: str = "", strict: bool = False) -> float:
    """`value` as a finite float, >= low (> low when strict); ValueError otherwise."""
    where = f"{fn}: " if fn else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}{name} must be a finite number, got {value!r}")
    value = float(value)
    if low is not None and (value <= low if strict else value < low):
        raise ValueError(f"{where}{name} must be {'>' if strict else '>='} {low}, got {value}")
    return value


def check_weights(weights: Any, n: int, what: str, fn: str) -> list[float]:
    """One finite weight per term (default 1 each)."""
    if weights is None:
        return [1.0] * n
    if not isinstance(weights, (list, tuple)):
        raise ValueError(f"{fn}: weights must be a list of {n} numbers (one per {what}), got {weights!r}")
    if len(weights) != n:
        raise ValueError(f"{fn}: weights has {len(weights)} entries but there are {n} {what}s; give one weight per {what}")
    return [check_float(f"weights[{i}]", w, fn=fn) for i, w in enumerate(weights)]


def coordinate(key: Any, d: int, where: str, fn: str) -> int:
    """A 0-based coordinate index from an int or a string of digits (JSON turns dict keys into strings)."""
    if isinstance(key, str) and key.strip().lstrip("+-").isdigit():
        key = int(key.strip())
    if isinstance(key, bool) or not isinstance(key, int):
        raise ValueError(f"{fn}: {where}: coordinate {key!r} is not an integer index")
    if not 0 <= key < d:
        raise ValueError(f"{fn}: {where}: coordinate {key} is out of range: indices run from 0 to d - 1 = {d - 1}")
    return key


# The statistics of recent reference samples with the generator's position after each: a job's train and test
# factories draw the same sample (same data seed), and a fused group makes a thousand factories at once.
_REFERENCES: OrderedDict[tuple[Hashable, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()
_REFERENCES_KEPT = 16


def standardiser(sample: Callable[[int], tuple[torch.Tensor, torch.Tensor]], enabled: bool,
                 gen: torch.Generator | None = None, key: tuple[Hashable, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1/std) per feature of a REFERENCE_SAMPLES-point sample drawn now (in the factory body).

    Train and test factories are created with the same data seed, so they draw the same
    reference sample and standardise identically. Disabled: mean 0 and scale 1. With `gen` (the
    generator `sample` draws from) and `key` (what else fixes the sample: the set and its
    parameters), a sample drawn before from the same generator state is not drawn again: its
    statistics are reused and `gen` is moved to where the draw would have left it, so every later
    draw is the same. The tensors returned are shared: read them, never write them."""
    memo = None if gen is None else (key, bool(enabled), str(gen.device), torch.get_default_dtype(),
                                     gen.get_state().numpy().tobytes())
    if memo is not None and memo in _REFERENCES:
        mean, inv_std, after = _REFERENCES[memo]
        _REFERENCES.move_to_end(memo)
        gen.set_state(after)  # type: ignore[union-attr]
        return mean, inv_std
    X, _ = sample(REFERENCE_SAMPLES)
    if not enabled:
        mean, inv_std = torch.zeros_like(X[0]), torch.ones_like(X[0])
    else:
        mean, inv_std = X.mean(0), 1.0 / X.std(0).clamp_min(1e-12)
    if memo is not None:
        _REFERENCES[memo] = (mean, inv_std, gen.get_state())  # type: ignore[union-attr]
        while len(_REFERENCES) > _REFERENCES_KEPT:
            _REFERENCES.popitem(last=False)
    return mean, inv_std
