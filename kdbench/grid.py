"""Expanding a grid into runs, and planning them.

The axes (dataset × teacher × student × fusion × method × seed) expand as a
product. ``exclude`` rules drop runs that match every key of a rule; ``include``
entries add sub-grids (each key a value or a list in its axis's syntax, a key left
out spans its whole axis). Methods that need no teacher (the ``ce`` baseline) run
once per (dataset, student, fusion, seed) whatever the teachers. The plan lists the
teacher trainings first, each once, then the student runs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from kdbench import config
from kdbench.errors import UserError
from kdbench.spec import RunSpec, TeacherSpec

AXES = ("dataset", "teacher", "student", "fusion", "method", "seed")


@dataclass
class Plan:
    grid: config.Grid
    teachers: list[TeacherSpec]
    runs: list[RunSpec]


def expand(grid: config.Grid, registry) -> list[RunSpec]:
    axes = {
        "dataset": grid.datasets,
        "teacher": grid.teachers,
        "student": grid.students,
        "fusion": grid.fusions,
        "method": grid.methods,
        "seed": grid.seeds,
    }
    runs: dict[str, RunSpec] = {}
    for values in _product(axes):
        _add(runs, grid, values)
    for i, rule in enumerate(grid.include):
        sub = dict(axes)
        for key, value in rule.items():
            if key not in AXES:
                raise UserError(f"{grid.path}: include[{i}]: unknown axis '{key}'; axes: {', '.join(AXES)}")
            sub[key] = _resolve_axis(grid, registry, key, value, f"include[{i}].{key}")
        for values in _product(sub):
            _add(runs, grid, values)
    for i, rule in enumerate(grid.exclude):
        bad = [k for k in rule if k not in AXES]
        if bad:
            raise UserError(f"{grid.path}: exclude[{i}]: unknown axis '{bad[0]}'; axes: {', '.join(AXES)}")
    return [r for r in runs.values() if not any(_matches(r, rule) for rule in grid.exclude)]


def _product(axes: dict[str, list]) -> list[dict[str, Any]]:
    teachers = axes["teacher"] or [None]
    out = []
    for d, t, s, f, m, seed in itertools.product(
        axes["dataset"], teachers, axes["student"], axes["fusion"], axes["method"], axes["seed"]
    ):
        if m.needs_teacher and t is None:
            continue
        out.append({"dataset": d, "teacher": t if m.needs_teacher else None, "student": s, "fusion": f, "method": m, "seed": seed})
    return out


def _add(runs: dict[str, RunSpec], grid: config.Grid, v: dict[str, Any]) -> None:
    spec = RunSpec(
        v["dataset"], v["teacher"], v["student"], v["fusion"], v["method"], int(v["seed"]),
        grid.train, grid.teacher_train, grid.distill,
    )
    runs.setdefault(spec.run_id, spec)


def _resolve_axis(grid: config.Grid, registry, axis: str, value: Any, key: str) -> list:
    values = value if isinstance(value, list) else [value]
    try:
        if axis == "seed":
            return [int(v) for v in values]
        if axis in ("teacher", "student"):
            return [config.model_ref(registry, v) for v in values]
        if axis == "method":
            return [config.method_ref(registry, v) for v in values]
        return [config.component(registry, "dataset" if axis == "dataset" else "fusion", v) for v in values]
    except (UserError, ValueError, TypeError) as exc:
        raise UserError(f"{grid.path}: {key}: {exc}") from None


def _matches(run: RunSpec, rule: dict[str, Any]) -> bool:
    for axis, wanted in rule.items():
        value = getattr(run, axis)
        options = wanted if isinstance(wanted, list) else [wanted]
        if not any(_match_one(value, o) for o in options):
            return False
    return True


def _match_one(value: Any, wanted: Any) -> bool:
    if value is None:
        return wanted is None
    if isinstance(value, int):
        return value == wanted
    if isinstance(wanted, str):
        return wanted in (value.name, value.label)
    if isinstance(wanted, dict):
        name = wanted.get("model", wanted.get("name"))
        if name is not None and name != value.name:
            return False
        rest = {k: v for k, v in wanted.items() if k not in ("model", "name")}
        return all(value.params.get(k, getattr(value, k, None)) == v for k, v in rest.items())
    return False


def make_plan(grid: config.Grid, registry) -> Plan:
    """Expand and check ``grid``: every model must be buildable on every dataset
    (modalities present, encoders compatible), before anything trains."""
    runs = expand(grid, registry)
    if not runs:
        raise UserError(f"{grid.path}: the grid expands to no run (check exclude:)")
    check_compatibility(grid, registry, runs)
    teachers: dict[str, TeacherSpec] = {}
    for run in runs:
        t = run.teacher_spec
        if t is not None:
            teachers.setdefault(t.key, t)
    return Plan(grid, list(teachers.values()), runs)


def check_compatibility(grid: config.Grid, registry, runs: list[RunSpec]) -> None:
    import torch

    from kdbench.model import build_model

    infos: dict[str, Any] = {}
    checked: set[tuple] = set()
    for run in runs:
        dkey = run.dataset.label + repr(run.dataset.identity())
        if dkey not in infos:
            try:
                infos[dkey] = registry.create("dataset", run.dataset.name, **run.dataset.params).info()
            except UserError as exc:
                raise UserError(f"{grid.path}: dataset '{run.dataset.label}': {exc}") from None
        for role, model in (("teacher", run.teacher), ("student", run.student)):
            if model is None:
                continue
            key = (dkey, repr(model.identity()), repr(run.fusion.identity()))
            if key in checked:
                continue
            checked.add(key)
            try:
                with torch.device("meta"):  # shapes only: no memory, no time
                    build_model(registry, model, run.fusion, infos[dkey])
            except UserError as exc:
                raise UserError(f"{grid.path}: {role} '{model.label}' on dataset '{run.dataset.label}': {exc}") from None
