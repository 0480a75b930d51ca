"""The trainloop's own configuration keys: their types, defaults and allowed values.

Every key a job config may hold is either one of these, a plug-in reference (batchfn, model,
grabs), or a parameter of a plug-in. Each key is one field of `TrainOptions`, the frozen object
the trainloop reads (`o.lr`); `OPTIONS`, the table validation (runner.train.plan) reads, is
derived from those fields, so a key's meaning is written down once. No torch here: submit imports it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from ..errors import UserError

_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

# Options the queue keeps with the job (a row's columns, not part of the config a worker trains):
# no plug-in may take a parameter of these names, since the value never reaches it.
QUEUE_SETTINGS = ("priority", "max_attempts", "fuse")


@dataclass(frozen=True)
class Option:
    """One trainloop key: its type ('int', 'float', 'bool', 'str', 'floats'), default and check."""

    type: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    check: Callable[[Any], bool] | None = None
    rule: str = ""
    per_member: bool = False  # jobs fused into one batched model may differ in it (runner.train.fusion)


def _pos(x: Any) -> bool:
    return x > 0


def _nonneg(x: Any) -> bool:
    return x >= 0


def _unit(x: Any) -> bool:
    return 0 <= x < 1


PLUGIN_KEYS = ("batchfn", "model", "grabs")


def _option(type_: str, default: Any, help: str, *, choices: tuple[str, ...] = (),
            check: Callable[[Any], bool] | None = None, rule: str = "", per_member: bool = False) -> Any:
    """A TrainOptions field carrying its Option (type, default, help, rule) as metadata. per_member:
    the key changes only values a fused step can hold per member (a seed, a scalar of the update, a
    threshold), never a shape, a kernel or the steps at which the step itself changes."""
    return field(default=default, metadata={"option": Option(type_, default, help, choices, check, rule, per_member)})


@dataclass(frozen=True)
class Change:
    """One scheduled change: from step `at` on, a new batch size and/or learning rate."""

    at: int
    batch_size: int | None = None
    lr: float | None = None


@dataclass(frozen=True)
class TrainOptions:
    """A job's trainloop options, defaults filled. Each field is one config key, declared here once:
    `OPTIONS` (the table validation reads) is derived from these fields. Lists given become tuples
    and scheduled changes `Change`s, so the object is immutable through and through."""

    seed: int = _option("int", 0, "fixes data, init and minibatch order (separate derived streams)", check=_nonneg, rule=">= 0", per_member=True)
    data_seed: int | None = _option("int", None, "the data side from a seed of its own: teacher, stream, test set, minibatch "
                                    "order (default: derived from seed)", check=_nonneg, rule=">= 0", per_member=True)
    model_seed: int | None = _option("int", None, "the model side from a seed of its own: initial weights, dropout "
                                     "(default: derived from seed)", check=_nonneg, rule=">= 0", per_member=True)
    steps: int = _option("int", 1000, "optimizer steps", check=_nonneg, rule=">= 0")
    lr: float = _option("float", 0.01, "learning rate", check=_pos, rule="> 0", per_member=True)
    optimizer: str = _option("str", "sgd", "optimizer", choices=("sgd", "adam", "adamw"))
    momentum: float = _option("float", 0.0, "SGD momentum", check=_unit, rule="in [0, 1)", per_member=True)
    nesterov: bool = _option("bool", False, "SGD Nesterov momentum")
    weight_decay: float = _option("float", 0.0, "weight decay", check=_nonneg, rule=">= 0", per_member=True)
    betas: tuple[float, ...] = _option("floats", (0.9, 0.999), "Adam betas", check=lambda b: len(b) == 2 and all(0 <= v < 1 for v in b), rule="two values in [0, 1)", per_member=True)
    eps: float = _option("float", 1e-8, "Adam epsilon", check=_pos, rule="> 0", per_member=True)
    loss: str = _option("str", "mse", "loss function", choices=("mse", "cross_entropy", "bce"))
    online: bool = _option("bool", True, "fresh batch every step (true) or a fixed training set of n_train (false)")
    n_train: int | None = _option("int", None, "training-set size when online is false", check=_pos, rule="> 0")
    batch_size: int | None = _option("int", None, "samples per step (offline: minibatch size; omit for full batch)", check=_pos, rule="> 0")
    n_test: int = _option("int", 1000, "test-set size (0: no test set)", check=_nonneg, rule=">= 0")
    eval_every: int = _option("int", 100, "steps between evaluations (0: start and end only)", check=_nonneg, rule=">= 0")
    grab_every: int = _option("int", 0, "steps between grabs (0: at the end only)", check=_nonneg, rule=">= 0")
    thresholds: tuple[float, ...] = _option("floats", (), "train-loss thresholds: the first step the smoothed loss falls below each is recorded", per_member=True)
    ema: float = _option("float", 0.9, "smoothing of the train loss for thresholds (0: none)", check=_unit, rule="in [0, 1)", per_member=True)
    stop_on_thresholds: bool = _option("bool", False, "stop at the step the last threshold is crossed (its weights "
                                       "are the job's final ones)", per_member=True)
    at_thresholds: tuple[str, ...] = _option("at_thresholds", (), "measure at the step each threshold is first "
                                             "crossed: eval (test and train loss), grabs, or both", per_member=True)
    schedule: str = _option("str", "constant", "learning-rate schedule", choices=("constant", "step", "cosine"))
    step_size: int | None = _option("int", None, "schedule step: steps between lr decays", check=_pos, rule="> 0")
    step_gamma: float = _option("float", 0.1, "schedule step: factor applied to the lr every step_size steps", check=_pos, rule="> 0", per_member=True)
    min_lr: float = _option("float", 0.0, "schedule cosine: the lr reached at the last step", check=_nonneg, rule=">= 0", per_member=True)
    changes: tuple[Change, ...] = _option("changes", (), "scheduled changes: a list of {at: STEP, batch_size: N, lr: X}")
    snapshots: tuple[int | str, ...] = _option("snapshots", (), "steps at which the weights are stored as arrays (weights.<param>); 'end' for the last")
    keep_final: bool = _option("bool", False, "keep the final weights in the database (as snapshots: [end]): "
                               "what runner.load_model, init_from and runner.connectivity read")
    trajectory_every: int = _option("int", 0, "store the weights every this many steps and at the end, for "
                                    "runner.trajectory and `runner plot landscape` (0: only at snapshots)",
                                    check=_nonneg, rule=">= 0")
    members: dict[str, dict[str, Any]] | None = _option(
        "members", None, "named variants of the job trained side by side on the same data, each with its own "
        "optimizer: {a: {batch_size: 16}, b: {model_seed: 2}}; results a.<column>, comparisons param_distance, "
        "param_cosine, output_distance at the grab cadence")
    init_from: dict[str, Any] | None = _option("init_from", None, "start from another job's stored weights: "
                                               "{job: ID, step: end} (the job's snapshots; step defaults to end; "
                                               "member: NAME for a member of a paired job)",
                                               per_member=True)
    checkpoint_every: int = _option("int", 0, "steps between checkpoints a crashed job resumes from (0: only when stopped)", check=_nonneg, rule=">= 0")
    precision: str = _option("str", "fp32", "matmul precision", choices=("fp32", "tf32", "bf16"))
    draw_ahead: int = _option("int", 1, "online: draw this many steps' batches in one call of the batch function "
                              "(for batch functions of i.i.d. rows; the same data fused or alone, other data than 1 gives)",
                              check=_pos, rule=">= 1")
    capture: bool = _option("bool", True, "replay each training step as a CUDA graph where possible (GPU only; "
                            "eager on a cosine schedule, after a failed capture, and on the CPU)")
    max_attempts: int = _option("int", 3, "attempts before a failing job stays failed", check=_pos, rule=">= 1")
    timeout: float = _option("float", 0.0, "seconds of wall time an attempt may take before its worker ends it "
                             "(failed: timed out); 0: no limit", check=_nonneg, rule=">= 0", per_member=True)
    priority: int = _option("int", 0, "higher runs first")
    fuse: int | str = _option("fuse", "auto", "largest fused group this job may train in (`runner workers --fuse`): "
                              "auto (what the worker allows), 1 (always alone) or a number")

    def __post_init__(self) -> None:
        for name in ("betas", "thresholds", "snapshots", "at_thresholds"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.changes, (list, tuple)):
            object.__setattr__(self, "changes", tuple(c if isinstance(c, Change) else Change(**c) for c in self.changes))

    def snapshot_steps(self) -> set[int]:
        """The steps before the end at which the weights are stored: snapshots, and every trajectory_every."""
        steps = {s for s in self.snapshots if s != "end"}
        if self.trajectory_every:
            steps.update(range(0, self.steps, self.trajectory_every))
        return steps

    def snapshot_at_end(self, steps_run: int) -> bool:
        """Whether the weights are stored when the job ends after steps_run steps."""
        return ("end" in self.snapshots or self.keep_final or self.trajectory_every > 0
                or (steps_run in self.snapshots and steps_run == self.steps) or steps_run in self.snapshot_steps())

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainOptions:
        """The options a (checked) config sets, the rest at their defaults; other keys are ignored."""
        return cls(**{name: values[name] for name in OPTIONS if name in values})


OPTIONS: dict[str, Option] = {f.name: f.metadata["option"] for f in fields(TrainOptions)}


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
    if type_ == "fuse":
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{label} must be auto or an integer >= 1 (1: never fused), got {value!r}")
        return value
    if type_ == "snapshots":
        items = value if isinstance(value, (list, tuple)) else [value]
        out: list[int | str] = []
        for item in items:
            if item == "end":
                out.append("end")
            elif isinstance(item, int) and not isinstance(item, bool) and item >= 0:
                out.append(item)
            else:
                raise UserError(f"{label} takes steps (integers >= 0) and 'end', got {item!r}")
        return out
    if type_ == "changes":
        return _coerce_changes(label, value)
    if type_ == "members":
        return _coerce_members(label, value)
    if type_ == "at_thresholds":
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(item in AT_THRESHOLDS for item in items) or len(set(items)) != len(items):
            raise UserError(f"{label} takes a list of {' and '.join(AT_THRESHOLDS)} (what to measure at each "
                            f"threshold's crossing step), got {value!r}")
        return list(items)
    if type_ == "init_from":
        return _coerce_init_from(label, value)
    if type_ == "floats":
        items = value if isinstance(value, (list, tuple)) else [value]
        return [coerce(f"{name}[{i}]", v, "float", where) for i, v in enumerate(items)]
    return value


def _coerce_init_from(label: str, value: Any) -> dict[str, Any]:
    """{job: ID, step: STEP or end, member: NAME}; a bare job id means its last stored weights; member
    names one member of a paired job (its weights)."""
    entry = {"job": value} if isinstance(value, int) and not isinstance(value, bool) else value
    form = (f"{label} must be a job id or {{job: ID, step: end}} (a step the job stored weights at; "
            "member: NAME for a member of a paired job)")
    if not isinstance(entry, dict) or "job" not in entry or set(entry) - {"job", "step", "member"}:
        raise UserError(f"{form}, got {value!r}")
    job, step = entry["job"], entry.get("step", "end")
    member = entry.get("member")
    if member is not None and (not isinstance(member, str) or not _MEMBER_NAME.match(member)):
        raise UserError(f"{form}: member must be a member's name, got {member!r}")
    if isinstance(job, bool) or not isinstance(job, int) or job < 1:
        raise UserError(f"{form}: job must be an id >= 1, got {job!r}")
    if step != "end" and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise UserError(f"{form}: step must be an integer >= 0 or end, got {step!r}")
    return {"job": job, "step": step} if member is None else {"job": job, "step": step, "member": member}


# What a member may not set itself: its pairing is one job of one length, measured at one cadence,
# queued with one set of queue settings.
MEMBER_FIXED = ("members", "steps", "grab_every", "eval_every", "init_from", "timeout", *QUEUE_SETTINGS)
_MEMBER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")


def _coerce_members(label: str, value: Any) -> dict[str, dict[str, Any]]:
    """{name: {key: value, ...}, ...}: two or more named variants, each a mapping of config keys."""
    form = f"{label} must map two or more member names to their own keys, e.g. {{a: {{batch_size: 16}}, b: {{}}}}"
    if not isinstance(value, dict) or len(value) < 2:
        raise UserError(f"{form}, got {value!r}")
    out = {}
    for name, keys in value.items():
        if not isinstance(name, str) or not _MEMBER_NAME.match(name):
            raise UserError(f"{label}: member name {name!r} must be a short identifier (letters, digits, _)")
        if keys is None:
            keys = {}
        if not isinstance(keys, dict):
            raise UserError(f"{label}.{name} must be a mapping of config keys (or {{}}), got {keys!r}")
        fixed = sorted(set(keys) & set(MEMBER_FIXED))
        if fixed:
            raise UserError(f"{label}.{name} sets {', '.join(fixed)}, which the members share: set it for the "
                            "whole job under base: or grid:")
        out[name] = dict(keys)
    return out


def member_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Member `name`'s own config: the job's, without `members`, with the member's keys on top."""
    return {**{k: v for k, v in config.items() if k != "members"}, **config["members"][name]}


def trained_config(config: Mapping[str, Any], job: int, member: str | None) -> dict[str, Any]:
    """The config job `job` (or its member) trained with, as what reads its weights names it; UserError
    for a paired job named without a member, a member it does not have, a member of an unpaired job."""
    members = list(config.get("members") or {})
    if member is None:
        if members:
            raise UserError(f"job {job} trained the members {', '.join(members)}: name one, e.g. {job}.{members[0]} "
                            f"(member {members[0]!r})")
        return dict(config)
    if not members:
        raise UserError(f"job {job} has no members (it is not a paired job): name it {job}")
    if member not in members:
        raise UserError(f"job {job} has no member {member!r}: its members are {', '.join(members)}")
    return member_config(config, member)


AT_THRESHOLDS = ("eval", "grabs")  # what at_thresholds may measure at a crossing step
CHANGEABLE = {"batch_size": "int", "lr": "float"}  # what a scheduled change may set


def _coerce_changes(label: str, value: Any) -> list[dict[str, Any]]:
    """[{at: 1000, batch_size: 512}, ...]: each entry a step and new values, sorted by step."""
    if not isinstance(value, (list, tuple)):
        raise UserError(f"{label} must be a list like [{{at: 1000, batch_size: 512}}], got {value!r}")
    out = []
    for i, entry in enumerate(value):
        where = f"{label}[{i}]"
        if not isinstance(entry, dict) or "at" not in entry:
            raise UserError(f"{where} must be a mapping with at: STEP and what changes, e.g. {{at: 1000, lr: 0.01}}")
        unknown = sorted(set(entry) - {"at"} - set(CHANGEABLE))
        if unknown:
            raise UserError(f"{where}: cannot change {', '.join(unknown)} (a change may set {', '.join(CHANGEABLE)})")
        if len(entry) == 1:
            raise UserError(f"{where} changes nothing: add batch_size or lr")
        fixed = {"at": coerce("at", entry["at"], "int", f" in {where}")}
        if "batch_size" in entry and entry["batch_size"] is None:
            raise UserError(f"{where}: batch_size: null is not a change; to train on the full training set from "
                            f"step {entry['at']} on, set batch_size to n_train (offline)")
        for key, type_ in CHANGEABLE.items():
            if key in entry and entry[key] is None:
                raise UserError(f"{where}: {key}: null changes nothing; give a value or leave {key} out")
            if key in entry:
                fixed[key] = coerce(key, entry[key], type_, f" in {where}")
                if not fixed[key] > 0:
                    raise UserError(f"{key} in {where} must be > 0, got {entry[key]!r}")
        if fixed["at"] < 1:
            raise UserError(f"at in {where} must be >= 1 (the step the change takes effect), got {entry['at']!r}")
        out.append(fixed)
    steps = [c["at"] for c in out]
    if len(set(steps)) != len(steps):
        raise UserError(f"{label}: two changes at the same step; merge them into one entry")
    return sorted(out, key=lambda c: c["at"])


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
