"""Submit-time validation: every key of a job config must be consumed by someone.

The trainloop (runner.train.options), the batch function, the model and each grab declare the names
they take; a key nobody takes is an error naming the closest known key, a required parameter
nobody gives is an error too. The result, a JobPlan, is what the trainloop runs from.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Literal, NamedTuple, get_args, get_origin

from ..errors import UserError
from ..registry import Plugin, in_process_reference, resolve
from ..text import did_you_mean
from .grabbing import GRAB_CONTEXT
from .options import OPTIONS, PLUGIN_KEYS, QUEUE_SETTINGS, TrainOptions, check_option, coerce, member_config

if TYPE_CHECKING:
    import torch


class BatchfnInjected(NamedTuple):
    """What runner passes every batch-function factory besides its config keys (gen and device a
    config may not set; batch_size is the option's or the scheduled value). Validation requires
    these names; the loop calls the factory with `**BatchfnInjected(...)._asdict()`."""

    gen: torch.Generator
    device: torch.device
    batch_size: int


# Names runner fills in itself (the grabs' are GRAB_CONTEXT, from grabbing.GrabContext).
BATCHFN_INJECTED: tuple[str, ...] = BatchfnInjected._fields
MODEL_INJECTED = ("d_in", "d_out")  # filled from the data unless the config sets them


@dataclass(frozen=True)
class Param:
    name: str
    required: bool
    type: str | None  # 'int', 'float', 'bool', 'str' or None (unchecked)
    choices: tuple[Any, ...] = ()  # from a Literal[...] annotation: the allowed values


@dataclass
class JobPlan:
    """A validated job: trainloop options with defaults filled, plug-ins resolved, their arguments."""

    config: dict[str, Any]
    options: TrainOptions
    batchfn: Plugin
    batchfn_kwargs: dict[str, Any]
    model: Plugin
    model_kwargs: dict[str, Any]
    grabs: list[tuple[Plugin, dict[str, Any]]] = field(default_factory=list)


_SIMPLE = {int: "int", float: "float", bool: "bool", str: "str", "int": "int", "float": "float", "bool": "bool", "str": "str"}


@lru_cache(maxsize=None)
def params(fn: Callable[..., Any]) -> tuple[Param, ...]:
    """The named parameters of a plug-in, with the simple type its annotation or default implies."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:  # resolve string annotations (from __future__ import annotations) to see Literal[...]
        signature = inspect.signature(target, eval_str=True)
    except Exception:  # a name the annotation uses is not importable at runtime: use the raw strings
        signature = inspect.signature(target)
    out = []
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "self":
            continue
        choices: tuple[Any, ...] = ()
        if get_origin(p.annotation) is Literal:
            choices = get_args(p.annotation)
            type_ = _SIMPLE.get(type(choices[0])) if choices else None
        else:
            type_ = _SIMPLE.get(p.annotation) if p.annotation is not p.empty else None
        if type_ is None and p.default is not p.empty and p.default is not None:
            type_ = _SIMPLE.get(type(p.default))
        out.append(Param(p.name, p.default is p.empty, type_, choices))
    return tuple(out)


def _grab_refs(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str,)) or callable(value):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise UserError(f"grabs must be a list of names, got {value!r}")


@lru_cache(maxsize=4096)
def consumers(batchfn_ref: str, model_ref: str, grab_refs: tuple[str, ...]) -> dict[str, list[tuple[str, Param]]]:
    """Map every config key a plug-in combination takes to (who, param) pairs: who is "batchfn",
    "model" or "grab <ref>"."""
    table: dict[str, list[tuple[str, Param]]] = {}
    bf = resolve(batchfn_ref, "batchfn", signature_only=True)
    names = {p.name for p in params(bf.fn)}
    missing = [n for n in BATCHFN_INJECTED if n not in names]
    if missing:
        raise UserError(f"batchfn {batchfn_ref!r} must take the arguments batch_size, gen and device "
                        f"(missing: {', '.join(missing)}); see examples/my_batchfns.py")
    for p in params(bf.fn):
        if p.name not in BATCHFN_INJECTED:
            table.setdefault(p.name, []).append(("batchfn", p))
    for p in params(resolve(model_ref, "model", signature_only=True).fn):
        table.setdefault(p.name, []).append(("model", p))
    for ref in grab_refs:
        for p in params(resolve(ref, "grab", signature_only=True).fn):
            if p.name not in GRAB_CONTEXT:
                table.setdefault(p.name, []).append((f"grab {ref}", p))
    named = {"batchfn": f"batchfn {batchfn_ref}", "model": f"model {model_ref}"}
    for key in QUEUE_SETTINGS:
        for who, _ in table.get(key, []):
            raise UserError(f"{named.get(who, who)} takes a parameter named {key!r}, a queue setting runner keeps "
                            "with the job (the function would never receive it): rename the parameter")
    return table


def _in_process(config: dict[str, Any]) -> dict[str, Any]:
    """The config with function objects as plug-ins replaced by references `resolve` maps back."""
    kinds = {"batchfn": "batchfn", "model": "model"}
    out = {k: in_process_reference(v, kinds[k]) if k in kinds and callable(v) else v for k, v in config.items()}
    grabs = out.get("grabs")
    if isinstance(grabs, (list, tuple)):
        out["grabs"] = [in_process_reference(g, "grab") if callable(g) else g for g in grabs]
    elif callable(grabs):
        out["grabs"] = [in_process_reference(grabs, "grab")]
    return out


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate one job config and return it with values coerced (1 -> 1.0 for a float key)."""
    for key in ("batchfn", "model"):
        if key not in config:
            raise UserError(f"missing {key}: name a registered {key} or 'module:function'")
    grab_refs = tuple(_grab_refs(config.get("grabs")))
    if not all(isinstance(g, str) for g in grab_refs):
        raise UserError("grabs must be names or 'module:function' strings")
    takers_of = consumers(config["batchfn"], config["model"], grab_refs)
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in PLUGIN_KEYS:
            out[key] = list(grab_refs) if key == "grabs" else value
            continue
        if key in ("gen", "device"):
            raise UserError(f"{key} is filled in by runner and cannot be set in the config")
        takers = takers_of.get(key, [])
        if key in OPTIONS:
            value = check_option(key, value)
        elif not takers:
            if key in MODEL_INJECTED:
                raise UserError(f"unknown key {key!r}: model {config['model']!r} takes no {key}")
            known = set(OPTIONS) | set(takers_of) | set(PLUGIN_KEYS)
            hint = did_you_mean(key, known) or "no batch function, model, grab or trainloop option takes it"
            raise UserError(f"unknown key {key!r}: {hint}")
        for who, p in takers:
            if p.type is not None and key not in OPTIONS:
                value = coerce(key, value, p.type, f" (for {who})")
            if p.choices and value not in p.choices:
                raise UserError(f"{key} must be one of {', '.join(map(str, p.choices))} (for {who}), got {value!r}")
        out[key] = value
    for key, takers in takers_of.items():
        for who, p in takers:
            if p.required and key not in config and key not in MODEL_INJECTED:
                raise UserError(f"missing {key!r}: {who} requires it (add it under base: or grid:)")
    online = out.get("online", OPTIONS["online"].default)
    if online and out.get("batch_size") is None:
        raise UserError("online training needs batch_size (samples drawn per step)")
    if not online and out.get("n_train") is None:
        raise UserError("online: false needs n_train (the size of the fixed training set)")
    if out.get("schedule") == "step" and out.get("step_size") is None:
        raise UserError("schedule: step needs step_size (steps between lr decays by step_gamma)")
    for name in out.get("members") or {}:  # each member is a job of its own: checked as one
        try:
            out["members"][name] = {k: v for k, v in check_config(member_config(out, name)).items()
                                    if k in out["members"][name]}
        except UserError as exc:
            raise UserError(f"member {name}: {exc}") from None
    return out


def plan_job(config: dict[str, Any]) -> JobPlan:
    """Validate a config and split it into trainloop options and each plug-in's arguments. The
    plug-ins may be function objects (runner.train in a notebook): their references go in the config."""
    config = check_config(_in_process(config))
    options = TrainOptions.from_mapping(config)
    bf = resolve(config["batchfn"], "batchfn")
    md = resolve(config["model"], "model")
    bf_kwargs = {p.name: config[p.name] for p in params(bf.fn) if p.name in config and p.name not in BATCHFN_INJECTED}
    md_kwargs = {p.name: config[p.name] for p in params(md.fn) if p.name in config}
    grabs = []
    for ref in config.get("grabs", []):
        g = resolve(ref, "grab")
        grabs.append((g, {p.name: config[p.name] for p in params(g.fn) if p.name in config and p.name not in GRAB_CONTEXT}))
    return JobPlan(config, options, bf, bf_kwargs, md, md_kwargs, grabs)
