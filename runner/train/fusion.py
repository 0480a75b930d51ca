"""Fusion keys: which jobs of a sweep may train together as one batched model.

A fused step stacks K same-shape models and runs them as one: every member must build the same
shapes and run the same kernels in the same order, and may differ only in values the step can hold
per member (a tensor with one entry per member). The rule, read off the code rather than listed:

- a trainloop option is per member when its table entry says so (`Option.per_member`: seed, lr,
  momentum, weight_decay, betas, eps, thresholds, ema, stop_on_thresholds, at_thresholds, step_gamma, min_lr);
- a plug-in parameter is per member when only the batch function takes it and its type is float
  (noise, a teacher's scale, a spectrum's exponent): an int sets a shape or a count, a bool or a
  string picks a path, and whatever the model or a grab takes fixes the architecture or the
  measurement;
- everything else is part of the key: the plug-ins, every model parameter, batch size, n_train,
  n_test, steps, the optimizer kind and nesterov, loss, schedule and step_size, scheduled changes,
  precision, capture, grabs and the evaluation, grab, snapshot and checkpoint cadences.

The key is a hash of the sweep's name and the config without its per-member keys, so jobs of one
sweep with one key may be claimed and trained together. A job's `fuse` (a queue setting, like
priority) caps its group: `fuse: 1` stores no key (never fused), `fuse: N` appends `/N` (it joins
only jobs capped alike, in groups of at most N), `auto` leaves the worker's `--fuse` to decide.
Torch-free: submit computes it.
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from ..hashing import canonical_json
from .options import OPTIONS, PLUGIN_KEYS
from .plan import consumers


def per_member_keys(config: Mapping[str, Any]) -> frozenset[str]:
    """The keys of this (checked) config in which members of a fused group may differ."""
    grabs = config.get("grabs") or ()
    grabs = tuple([grabs] if isinstance(grabs, str) else grabs)
    return _per_member(config["batchfn"], config["model"], grabs, tuple(config))


@functools.lru_cache(maxsize=4096)  # a sweep's jobs share a few plug-in combinations and key sets
def _per_member(batchfn: str, model: str, grabs: tuple[str, ...], keys: tuple[str, ...]) -> frozenset[str]:
    takers = consumers(batchfn, model, grabs)
    out = set()
    for key in keys:
        if key in PLUGIN_KEYS:
            continue
        if key in OPTIONS:
            if OPTIONS[key].per_member:
                out.add(key)
            continue
        who = takers.get(key, [])
        if who and all(name == "batchfn" and p.type == "float" for name, p in who):
            out.add(key)
    return frozenset(out)


def fusion_key(sweep: str, config: Mapping[str, Any]) -> str:
    """The fusion key of a (checked) job config in a sweep: 32 hex characters."""
    shared = {k: v for k, v in config.items() if k not in per_member_keys(config)}
    text = canonical_json({"sweep": sweep, "config": shared})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def fusion_keys(sweep: str, configs: Sequence[Mapping[str, Any]], varying: Sequence[str]) -> list[str]:
    """fusion_key of each config, for configs that differ only in the `varying` keys (a grid's axes):
    the whole config is hashed once per distinct plug-in combination and values of the varying keys
    that are in the key (a 100,000-job grid has a handful), so submit pays a small JSON per job."""
    keys: dict[tuple[frozenset[str], str], str] = {}
    out = []
    for config in configs:
        drop = per_member_keys(config)
        signature = (drop, canonical_json([config.get(k) for k in varying if k not in drop]))
        key = keys.get(signature)
        if key is None:
            key = keys[signature] = fusion_key(sweep, config)
        out.append(key)
    return out


def capped(key: str, fuse: int | str) -> str | None:
    """The stored key of a job whose `fuse` setting is `fuse` (see the module docstring)."""
    if fuse == "auto":
        return key
    return None if fuse == 1 else f"{key}/{fuse}"


def group_cap(stored: str) -> int | None:
    """The largest group a stored key allows (None: whatever the worker allows)."""
    _, slash, cap = stored.partition("/")
    return int(cap) if slash else None
