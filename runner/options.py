"""The trainloop's own configuration keys: their types, defaults and allowed values.

Every key a job config may hold is either one of these, a plug-in reference (batchfn, model,
grabs), or a parameter of a plug-in. Validation (runner.validate) and the trainloop both read
this table, so a key's meaning is written down once.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import UserError

_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Option:
    """One trainloop key: its type ('int', 'float', 'bool', 'str', 'floats'), default and check."""

    type: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    check: Callable[[Any], bool] | None = None
    rule: str = ""


def _pos(x: Any) -> bool:
    return x > 0


def _nonneg(x: Any) -> bool:
    return x >= 0


def _unit(x: Any) -> bool:
    return 0 <= x < 1


PLUGIN_KEYS = ("batchfn", "model", "grabs")

OPTIONS: dict[str, Option] = {
    "seed": Option("int", 0, "fixes data, init and minibatch order (separate derived streams)", check=_nonneg, rule=">= 0"),
    "steps": Option("int", 1000, "optimizer steps", check=_nonneg, rule=">= 0"),
    "lr": Option("float", 0.01, "learning rate", check=_pos, rule="> 0"),
    "optimizer": Option("str", "sgd", "optimizer", choices=("sgd", "adam", "adamw")),
    "momentum": Option("float", 0.0, "SGD momentum", check=_unit, rule="in [0, 1)"),
    "nesterov": Option("bool", False, "SGD Nesterov momentum"),
    "weight_decay": Option("float", 0.0, "weight decay", check=_nonneg, rule=">= 0"),
    "betas": Option("floats", [0.9, 0.999], "Adam betas", check=lambda b: len(b) == 2 and all(0 <= v < 1 for v in b), rule="two values in [0, 1)"),
    "eps": Option("float", 1e-8, "Adam epsilon", check=_pos, rule="> 0"),
    "loss": Option("str", "mse", "loss function", choices=("mse", "cross_entropy", "bce")),
    "online": Option("bool", True, "fresh batch every step (true) or a fixed training set of n_train (false)"),
    "n_train": Option("int", None, "training-set size when online is false", check=_pos, rule="> 0"),
    "batch_size": Option("int", None, "samples per step (offline: minibatch size; omit for full batch)", check=_pos, rule="> 0"),
    "n_test": Option("int", 1000, "test-set size (0: no test set)", check=_nonneg, rule=">= 0"),
    "eval_every": Option("int", 100, "steps between evaluations (0: start and end only)", check=_nonneg, rule=">= 0"),
    "grab_every": Option("int", 0, "steps between grabs (0: at the end only)", check=_nonneg, rule=">= 0"),
    "thresholds": Option("floats", [], "train-loss thresholds: the first step the smoothed loss falls below each is recorded"),
    "ema": Option("float", 0.9, "smoothing of the train loss for thresholds (0: none)", check=_unit, rule="in [0, 1)"),
    "stop_on_thresholds": Option("bool", False, "stop once every threshold is crossed"),
    "precision": Option("str", "fp32", "matmul precision", choices=("fp32", "tf32", "bf16")),
    "max_attempts": Option("int", 3, "attempts before a failing job stays failed", check=_pos, rule=">= 1"),
    "priority": Option("int", 0, "higher runs first"),
}


def closest(name: str, candidates: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """The closest known name to a misspelt one, or None."""
    import difflib

    found = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def coerce(name: str, value: Any, type_: str, where: str = "") -> Any:
    """Check a value against a simple type, converting harmless forms (int for float, '1e-3')."""
    label = f"{name}{where}"
    if value is None:
        return None
    if type_ == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            raise UserError(f"{label} must be an integer, got {value!r}")
        return int(value)
    if type_ == "float":
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{label} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"{label} must be finite, got {value!r}")
        return float(value)
    if type_ == "bool":
        if not isinstance(value, bool):
            raise UserError(f"{label} must be true or false, got {value!r}")
        return value
    if type_ == "str":
        if not isinstance(value, str):
            raise UserError(f"{label} must be a string, got {value!r}")
        return value
    if type_ == "floats":
        items = value if isinstance(value, (list, tuple)) else [value]
        return [coerce(f"{name}[{i}]", v, "float", where) for i, v in enumerate(items)]
    return value


def check_option(name: str, value: Any) -> Any:
    """Coerce and check one trainloop key; UserError naming the key and the rule."""
    opt = OPTIONS[name]
    value = coerce(name, value, opt.type)
    if value is None:
        return None
    if opt.choices and value not in opt.choices:
        raise UserError(f"{name} must be one of {', '.join(opt.choices)}, got {value!r}")
    if opt.check is not None and not opt.check(value):
        raise UserError(f"{name} must be {opt.rule}, got {value!r}")
    return value
