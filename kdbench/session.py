"""``kdbench run`` as a library call: read the grid, load plugins, plan, execute,
report. The command line is a thin layer over :func:`run_grid`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench import config
from kdbench.errors import UserError
from kdbench.grid import Plan, make_plan
from kdbench.plugins import load_registry
from kdbench.registry import Registry
from kdbench.store import ResultStore


@dataclass
class Outcome:
    plan: Plan
    registry: Registry
    store: ResultStore
    summary: Any = None  # ExecutionSummary; None for a dry run
    report_paths: list[Path] = field(default_factory=list)
    leaderboard: str = ""


def prepare(grid_ref: str, plugins: tuple[str, ...] = ()) -> tuple[Plan, Registry]:
    """Read and validate the grid, load every plugin, expand and check the plan."""
    path, grid_file, source = config.read_grid(grid_ref)
    refs = tuple(dict.fromkeys([*plugins, *config.grid_plugins(path, grid_file)]))
    registry = load_registry(plugins=refs)
    grid = config.resolve_grid(path, grid_file, source, registry)
    return make_plan(grid, registry), registry


def default_results(plan: Plan) -> Path:
    return Path("results") / plan.grid.name


def run_grid(grid_ref: str, *, plugins: tuple[str, ...] = (), **options: Any) -> Outcome:
    """Run every pending job of the grid and write its leaderboards (see :func:`run_plan`)."""
    plan, registry = prepare(grid_ref, plugins)
    return run_plan(plan, registry, **options)


def run_plan(
    plan: Plan,
    registry: Registry,
    *,
    results: str | Path | None = None,
    devices: str = "auto",
    executor: str = "local",
    executor_params: dict[str, Any] | None = None,
    rerun_failed: bool = False,
    teacher_cache: bool = True,
    progress: Any = None,
    formats: tuple[str, ...] = ("md", "csv", "json", "html"),
) -> Outcome:
    """Execute a prepared plan with an executor plugin, then write its leaderboards."""
    from kdbench.executors.base import ExecutionContext
    from kdbench.report import build_leaderboards, markdown, write_reports

    store = ResultStore(results or default_results(plan))
    store.clean_temporaries()
    ctx = ExecutionContext(
        registry=registry, store=store, plugin_refs=registry.plugin_refs, devices=devices,
        metrics=plan.grid.metrics, rerun_failed=rerun_failed, teacher_cache=teacher_cache, progress=progress,
    )
    component = registry.get("executor", executor)
    chosen = component.create(**component.validate_params(executor_params or {}))
    store.root.mkdir(parents=True, exist_ok=True)
    (store.root / "grid.yaml").write_text(plan.grid.source)
    try:
        summary = chosen.execute(plan, ctx)
    finally:
        if progress is not None:
            progress.close()
    docs = [d for d in (store.get(r.run_id) for r in plan.runs) if d is not None]
    boards = build_leaderboards(docs, store, plan.grid.name, expected=plan.runs)
    paths = write_reports(boards, store.root / "leaderboard", list(formats), registry)
    return Outcome(plan, registry, store, summary, paths, markdown(boards, registry))


def report(results: str | Path, out: str | Path, formats: list[str], plugins: tuple[str, ...] = ()) -> list[Path]:
    """Leaderboards of every result under ``results``, written to ``out``."""
    from kdbench.report import build_leaderboards, write_reports

    store = ResultStore(results)
    if not store.runs_dir.is_dir():
        raise UserError(f"no results in {results} (expected {store.runs_dir}); run a grid first: kdbench run --grid quickstart")
    registry = load_registry(plugins=plugins)
    for fmt in formats:
        registry.get("reporter", fmt)
    docs = list(store.results())
    grid_file = Path(results) / "grid.yaml"
    name = ""
    if grid_file.is_file():
        import yaml

        name = (yaml.safe_load(grid_file.read_text()) or {}).get("name", "")
    return write_reports(build_leaderboards(docs, store, name), Path(out), formats, registry)
