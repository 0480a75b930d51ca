"""Submit a grid: parse, expand, validate every cell, then add the new jobs (one transaction per
(priority, max_attempts) group; a job already there is skipped by its config hash).

Validation happens before the database is opened, so a bad grid writes nothing.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from ..errors import UserError
from ..hashing import canonical_json, config_hash
from ..registry import check_portable, to_reference
from ..signing import key_source, sign_config, signing_key
from ..train.fusion import capped, fusion_keys
from ..train.options import OPTIONS, member_config
from ..train.plan import check_config
from .grid import GridSpec, axis_names, expand, load_grid, parse_grid
from .grid_values import MAX_CONFIG_BYTES
from .states import JobStatus

DEFAULT_DB = "jobs.db"


@dataclass(frozen=True)
class SubmitReport:
    """What a submit did: jobs in the grid, how many were new, how many were there already."""

    sweep: str
    total: int
    added: int
    existing: int
    db: str
    dry_run: bool = False
    # keys whose values differ between the sweep's jobs although no grid of it varies them -> their values
    outside: dict[str, list[Any]] = field(default_factory=dict)
    signed_by: str | None = None  # where the signing key came from (the variable's name), when jobs are signed

    def __str__(self) -> str:
        return self.headline() + (f"\nwarning: {self.warning()}" if self.outside else "")

    def headline(self) -> str:
        """What the submit added, in one line."""
        if self.dry_run:
            return (f"sweep {self.sweep}: {self.total} jobs, all valid; a submit would add {self.added} new, "
                    f"{self.existing} already there (dry run: nothing written to {self.db})")
        if self.added == 0:
            return f"sweep {self.sweep}: {self.total} jobs, 0 added (all already in {self.db})"
        extra = f", {self.existing} already there" if self.existing else ""
        signed = f", signed with the key of {self.signed_by}" if self.signed_by else ""
        return f"sweep {self.sweep}: {self.total} jobs, {self.added} added to {self.db}{extra}{signed}"

    def warning(self) -> str:
        """What a mixed sweep means, in one line (empty when the sweep is one grid)."""
        if not self.outside:
            return ""
        keys = "; ".join(f"{k} ({', '.join(_short(v) for v in values[:6])}{', ...' if len(values) > 6 else ''})"
                         for k, values in self.outside.items())
        now = "would then hold" if self.dry_run else "now holds"
        return (f"sweep {self.sweep} {now} jobs that differ in {keys}, which no grid of it varies: plots and "
                f"reports keep them apart; to compare them as one grid, make {next(iter(self.outside))} an axis, "
                "or submit with --sweep NEW_NAME to keep them in a sweep of their own")


def _references(data: Any) -> Any:
    """Replace callables handed to the Python API by the import paths stored in configs."""
    kinds = {"batchfn": "batchfn", "model": "model", "grabs": "grab"}
    if isinstance(data, Mapping):
        out = {}
        for key, value in data.items():
            if key in kinds and callable(value):
                value = to_reference(value, kinds[key])
            elif key in kinds and isinstance(value, (list, tuple)):
                value = [to_reference(v, kinds[key]) if callable(v) else v for v in value]
            elif isinstance(value, Mapping):
                value = _references(value)
            out[key] = value
        return out
    return data


def load_spec(grid: str | os.PathLike | Mapping[str, Any], overrides: Sequence[str] = (), sweep: str | None = None) -> GridSpec:
    """A GridSpec from a file path or a dict (the dict may hold callables)."""
    if isinstance(grid, Mapping):
        data = _references(grid)
        spec = parse_grid(data, "<dict>", overrides, default_sweep=sweep)
        return replace(spec, text=json.dumps(data, indent=1, default=repr))  # kept with the submit
    return load_grid(Path(grid), overrides)


class PlannedJob(NamedTuple):
    """One cell of a grid, validated: what add_jobs stores."""

    config_hash: str
    config: dict[str, Any]
    priority: int
    max_attempts: int
    fusion_key: str | None  # jobs of the sweep with the same key may train as one batched model


def plan_jobs(spec: GridSpec) -> list[PlannedJob]:
    """The grid's jobs, validated; raises UserError on the first bad cell."""
    cells = []
    seen: set[tuple[str, str]] = set()
    for raw in expand(spec):
        size = len(canonical_json(raw))
        if size > MAX_CONFIG_BYTES:  # a few hundred bytes of YAML aliases can stand for megabytes a job
            raise UserError(f"{spec.source}: a job's config is {size:,} bytes of JSON, more than {MAX_CONFIG_BYTES:,}: "
                            "shorten its lists (YAML aliases repeated inside each other?)")
        try:
            config = check_config(raw)
            _check_portable(config, seen)
        except Exception as exc:
            if hasattr(exc, "exit_code"):
                exc.args = (f"{spec.source}: {exc.args[0]}",)
            raise
        priority = config.pop("priority", OPTIONS["priority"].default)
        max_attempts = config.pop("max_attempts", OPTIONS["max_attempts"].default)
        fuse = config.pop("fuse", OPTIONS["fuse"].default)
        cells.append((config, priority, max_attempts, fuse))
    keys = fusion_keys(spec.sweep, [cell[0] for cell in cells], axis_names(spec))
    # a job of members trains them together itself (fused where they fit): never fused with other jobs
    return [PlannedJob(config_hash(config), config, priority, max_attempts, capped(key, 1 if "members" in config else fuse))
            for (config, priority, max_attempts, fuse), key in zip(cells, keys)]


def _already_there(db: str, spec: GridSpec, jobs: Sequence[PlannedJob]) -> tuple[int, dict[str, list[Any]]]:
    """How many of these jobs the sweep already holds, and the keys outside its grids it would then
    differ in: read only, nothing without opening a SQLite file that does not exist (a dry run
    creates nothing)."""
    from .store import Store, sqlite_file

    path = sqlite_file(db)
    if path is not None and not Path(path).expanduser().exists():
        return 0, {}
    with Store(db) as store:
        there = store.count_hashes(spec.sweep, [job.config_hash for job in jobs])
        if there == len(jobs) or not store.count_in(spec.sweep, *JobStatus):
            return there, {}
        axes = set(store.sweep_axes(spec.sweep) or ()) | set(axis_names(spec))
        return there, differing_keys([*_configs(store, spec.sweep), *(job.config for job in jobs)], axes)


def _configs(store: Any, sweep: str) -> list[dict[str, Any]]:
    return json.loads("[" + ",".join(store.config_table(sweep)["config"]) + "]")


def differing_keys(configs: Sequence[Mapping[str, Any]], axes: set[str]) -> dict[str, list[Any]]:
    """Config keys (other than axes and seeds) whose values differ between configs -> those values,
    as first seen; a key some configs lack counts its absence as the value None."""
    seen: dict[str, dict[str, Any]] = {}
    keys = list(dict.fromkeys(k for config in configs for k in config))
    for key in keys:
        if key in axes or key == "seed":
            continue
        for config in configs:
            value = config.get(key)
            seen.setdefault(key, {}).setdefault(json.dumps(value, sort_keys=True, default=str), value)
    return {k: list(values.values()) for k, values in seen.items() if len(values) > 1}


def _short(value: Any) -> str:
    """A config value as a short readable text."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 24 else text[:21] + "..."


def _check_portable(config: Mapping[str, Any], seen: set[tuple[str, str]]) -> None:
    """Every plug-in a job names must be one its workers can find (each name checked once)."""
    for name in config.get("members") or {}:  # a member may name plug-ins of its own
        _check_portable(member_config(config, name), seen)
    grabs = config.get("grabs") or []
    for kind, ref in [("batchfn", config["batchfn"]), ("model", config["model"]),
                      *(("grab", g) for g in ([grabs] if isinstance(grabs, str) else grabs))]:
        if (kind, ref) not in seen:
            check_portable(ref, kind)
            seen.add((kind, ref))
    if config.get("parametrization") == "mup" and ("mup", "") not in seen:
        if importlib.util.find_spec("mup") is None:  # a worker would fail every attempt at import
            raise UserError("parametrization: mup needs the mup package, which is not installed: run "
                            "`pip install --no-deps mup==1.0.0` (scripts/setup.sh does; --no-deps keeps your torch)")
        seen.add(("mup", ""))


def submit(grid: str | os.PathLike | Mapping[str, Any], *, db: str = DEFAULT_DB, overrides: Sequence[str] = (),
           sweep: str | None = None, dry_run: bool = False) -> SubmitReport:
    """Expand a grid file (or dict) into jobs in the database; idempotent per (sweep, config)."""
    from .store import display_url

    secret = signing_key()  # a bad key setting is refused before anything is read or written
    spec = load_spec(grid, overrides, sweep)
    jobs = plan_jobs(spec)
    if any(job.config.get("init_from") for job in jobs):
        _check_init_from(db, jobs)
    if dry_run:
        there, outside = _already_there(db, spec, jobs)
        report = SubmitReport(spec.sweep, len(jobs), len(jobs) - there, there, display_url(db), dry_run=True,
                              outside=outside)
    else:
        report = _add(db, spec, jobs, secret, overrides)
    if report.outside:
        warnings.warn(report.warning(), MixedSweepWarning, stacklevel=2)
    return report


def _check_init_from(db: str, jobs: Sequence[PlannedJob]) -> None:
    """Each job's init_from names a job of this database with weights stored at that step, of the shapes
    its own model has (checked once per architecture: a fusion key fixes every shape)."""
    from ..npy import from_npy
    from ..train.loading import model_of, weights_misfit
    from ..train.options import trained_config
    from .store import Store

    checked: set[tuple[str, int, str]] = set()
    with Store(db) as store:
        for job in jobs:
            source = job.config.get("init_from")
            if not source:
                continue
            member = source.get("member")
            key = (job.fusion_key or job.config_hash, source["job"], str(source["step"]), str(member))
            if key in checked:
                continue
            table = store.job_table(job_ids=[source["job"]])
            if not table["job_id"]:
                raise UserError(f"init_from: no job {source['job']} in {store.shown}: name a finished job of this "
                                "database (runner jobs lists them)")
            try:  # a paired job needs its member named, and one it has
                trained_config(json.loads(table["config"][0]), source["job"], member)
            except UserError as exc:
                raise UserError(f"init_from: {exc}") from None
            found = store.stored_weights(source["job"], source["step"], member)
            shown = source["job"] if member is None else f"{source['job']}.{member}"
            if found is None:
                steps = store.weight_steps(source["job"], member)
                raise UserError(f"init_from: job {shown} stored no weights at step {source['step']} "
                                f"(it stored them at {steps or 'no step'}): give its grid snapshots: [end], "
                                "or name a step it stored")
            shapes = {name: from_npy(data).shape for name, data in found[1].items()}
            misfit = weights_misfit(model_of(job.config), shapes)
            if misfit:
                raise UserError(f"init_from: job {shown}: {misfit}")
            checked.add(key)


class MixedSweepWarning(UserWarning):
    """A submit left a sweep holding jobs that differ in a key no grid of it varies."""


def _add(db: str, spec: GridSpec, jobs: Sequence[PlannedJob], secret: bytes | None,
         overrides: Sequence[str] = ()) -> SubmitReport:
    """Record the submit (notes, grid text, provenance), add the jobs (one transaction per
    (priority, max_attempts) group) and record the grid's axes; each new job signed under the
    signing key `secret` when there is one."""
    from ..provenance import collect
    from .store import Store, display_url

    folder = Path(spec.source).parent if spec.text is not None and spec.source != "<dict>" else None
    provenance = collect(folder)

    signer = functools.partial(sign_config, secret) if secret is not None else None
    groups: dict[tuple[int, int], list[tuple[str, dict[str, Any], str | None]]] = {}
    for h, config, priority, attempts, fusion_key in jobs:
        groups.setdefault((priority, attempts), []).append((h, config, fusion_key))
    axes = axis_names(spec)
    store = Store(db, create=True)
    try:
        submission = store.add_submission(spec.sweep, description=spec.description, tags=spec.tags, grid=spec.text,
                                          overrides=overrides, provenance=provenance)
        added = existing = 0
        for (priority, attempts), batch in groups.items():
            a, e = store.add_jobs(spec.sweep, batch, priority=priority, max_attempts=attempts, axes=axes,
                                  signer=signer, submission=submission)
            added, existing = added + a, existing + e
        outside: dict[str, list[Any]] = {}
        if added and store.count_in(spec.sweep, *JobStatus) > added:  # the sweep held jobs of an earlier submit
            outside = differing_keys(_configs(store, spec.sweep), set(store.sweep_axes(spec.sweep) or axes))
    finally:
        store.close()
    return SubmitReport(spec.sweep, len(jobs), added, existing, display_url(db), outside=outside,
                        signed_by=key_source() if secret is not None and added else None)
