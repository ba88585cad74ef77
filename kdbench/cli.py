"""The ``kdbench`` command: parses, calls the library, prints.

Exit codes: 0 every run done; 1 some runs failed (each recorded with its error);
2 the user's input is wrong (one message on stderr, no traceback); 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from functools import wraps

import click

from kdbench.errors import UserError

KIND_ALIASES = {
    "datasets": "dataset", "models": "model", "fusions": "fusion", "losses": "loss", "loss": "loss",
    "method": "loss", "methods": "loss", "reporters": "reporter", "executors": "executor",
}


def _user_errors(fn):
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            click.echo(f"kdbench: error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("kdbench: interrupted; finished runs are kept, run the same command again to resume", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kdbench")
def main() -> None:
    """kdbench: benchmark knowledge-distillation methods over grids of datasets,
    teachers, students, fusions, methods and seeds."""


@main.command()
@click.option("--grid", "grid_ref", required=True, metavar="FILE|NAME", help="Grid file, or a shipped grid (quickstart).")
@click.option("--results", type=click.Path(file_okay=False), default=None, help="Results directory [default: results/<grid name>].")
@click.option("--devices", default="auto", show_default=True, help="auto | cpu | cuda:0,cuda:1 (one worker per device).")
@click.option("--plugin", "plugins", multiple=True, metavar="FILE|MODULE", help="Extra plugin file or module (repeatable).")
@click.option("--executor", default="local", show_default=True, help="Executor plugin (local, ray).")
@click.option("--jobs-per-device", type=click.IntRange(min=1), default=None,
              help="Workers (runs at once) per device [default: 1].")
@click.option("--ray-address", default=None, metavar="ADDR", help="With --executor ray: the cluster to use [default: start a local one].")
@click.option("--no-teacher-cache", is_flag=True, help="Run the teacher at every step even where its outputs could be cached.")
@click.option("--rerun-failed", is_flag=True, help="Run again the runs recorded as failed.")
@click.option("--dry-run", is_flag=True, help="Print the plan (teacher jobs, student runs, what is done) and stop.")
@_user_errors
def run(grid_ref, results, devices, plugins, executor, jobs_per_device, ray_address, no_teacher_cache, rerun_failed,
        dry_run) -> None:
    """Run a grid: train teachers once, distil students, write results and leaderboards."""
    from kdbench import session

    if dry_run:
        from kdbench.store import ResultStore

        plan, _ = session.prepare(grid_ref, tuple(plugins))
        _print_plan(plan, ResultStore(results or session.default_results(plan)), rerun_failed)
        return
    from rich.console import Console

    from kdbench.executors.base import pending
    from kdbench.progress import GridProgress
    from kdbench.store import ResultStore

    plan, registry = session.prepare(grid_ref, tuple(plugins))  # validate before any output
    store = ResultStore(results or session.default_results(plan))
    teachers, todo, skipped = pending(plan, store, rerun_failed)
    console = Console(stderr=True)
    if not todo:
        console.print(f"nothing to train: all {len(plan.runs)} runs of grid '{plan.grid.name}' are already "
                      f"recorded in {store.root} ({'--rerun-failed retries failures' if not rerun_failed else 'none failed'})",
                      highlight=False, soft_wrap=True)
    else:
        console.print(f"grid '{plan.grid.name}': {len(teachers)} teacher job(s), {len(todo)} run(s) to do, "
                      f"{skipped} already recorded; results in {store.root}", highlight=False, soft_wrap=True)
    progress = GridProgress(len(todo), console) if todo else None
    params = {"jobs_per_device": jobs_per_device} if jobs_per_device else {}
    if ray_address:
        if executor != "ray":
            raise UserError("--ray-address goes with --executor ray")
        params["address"] = ray_address
    outcome = session.run_plan(plan, registry, results=store.root, devices=devices, executor=executor,
                               executor_params=params, rerun_failed=rerun_failed,
                               teacher_cache=not no_teacher_cache, progress=progress)
    click.echo(outcome.leaderboard)
    for path in outcome.report_paths:
        click.echo(f"wrote {path}")
    s = outcome.summary
    click.echo(f"{s.done} run(s) done, {s.failed} failed, {s.skipped} skipped (already recorded); "
               f"teachers: {s.teachers_trained} trained, {s.teachers_cached} from cache; results in {store.root}")
    if s.failures:
        click.echo("failed runs:", err=True)
        for label, error in s.failures:
            click.echo(f"  {label}: {error}", err=True)
        sys.exit(1)


def _print_plan(plan, store, rerun_failed: bool) -> None:
    from kdbench.executors.base import run_label, teacher_label

    click.echo(f"grid '{plan.grid.name}' ({plan.grid.path}): {len(plan.teachers)} teacher job(s), {len(plan.runs)} run(s); results in {store.root}")
    click.echo("teachers:")
    for t in plan.teachers:
        state = "cached" if store.teacher_record(t.key) else "train"
        click.echo(f"  [{state:6}] {teacher_label(t)}  ({t.key})")
    click.echo("runs:")
    counts = {"done": 0, "failed": 0, "todo": 0}
    for r in plan.runs:
        status = store.status(r.run_id)
        state = status if status in ("done", "failed") and not (status == "failed" and rerun_failed) else "todo"
        counts[state] += 1
        click.echo(f"  [{state:6}] {run_label(r)}  ({r.run_id})")
    click.echo(f"{counts['todo']} to run, {counts['done']} done, {counts['failed']} failed")


@main.command(name="list")
@click.argument("kind", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--plugin", "plugins", multiple=True, metavar="FILE|MODULE", help="Extra plugin file or module (repeatable).")
@_user_errors
def list_(kind, as_json, plugins) -> None:
    """List the components of every loaded plugin (KIND: dataset, model, fusion, loss, reporter, executor)."""
    from kdbench.plugins import load_registry

    registry = load_registry(plugins=plugins)
    if kind:
        kind = KIND_ALIASES.get(kind, kind)
    rows = [
        {"kind": c.kind, "name": c.name, "plugin": c.plugin.name, "distribution": c.plugin.distribution,
         "plugin_version": c.plugin.version, "version": c.version, "description": c.description}
        for c in registry.components(kind)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from tabulate import tabulate

    table = [[r["kind"], r["name"], f"v{r['version']}",
              f"{r['plugin']}" + (f" {r['plugin_version']}" if r["plugin_version"] else ""), r["description"]] for r in rows]
    click.echo(tabulate(table, headers=["kind", "name", "version", "plugin", "description"], tablefmt="simple"))


@main.command()
@click.option("--results", type=click.Path(file_okay=False), required=True, help="Results directory of a run.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Where to write the leaderboards.")
@click.option("--format", "formats", default="md,csv", show_default=True,
              help="Comma-separated reporter names: md, csv, json, latex, html, plots.")
@click.option("--plugin", "plugins", multiple=True, metavar="FILE|MODULE", help="Extra plugin file or module (repeatable).")
@_user_errors
def report(results, out, formats, plugins) -> None:
    """Write leaderboards from a results directory."""
    from kdbench import session

    fmts = [f.strip() for f in formats.split(",") if f.strip()]
    for path in session.report(results, out, fmts, tuple(plugins)):
        click.echo(f"wrote {path}")


@main.command()
@click.option("--results", type=click.Path(file_okay=False, exists=True), default=None,
              help="A results directory to publish; without it, regenerate every published grid.")
@click.option("--out", type=click.Path(file_okay=False), default="leaderboards", show_default=True,
              help="The leaderboards folder.")
@click.option("--plugin", "plugins", multiple=True, metavar="FILE|MODULE", help="Extra plugin file or module (repeatable).")
@_user_errors
def publish(results, out, plugins) -> None:
    """Publish a run's leaderboards under leaderboards/<grid>/ (tables, plots, grid, environment)."""
    from pathlib import Path

    from kdbench.plugins import load_registry
    from kdbench.publish import publish as do_publish

    paths = do_publish(Path(out), load_registry(plugins=plugins), Path(results) if results else None)
    click.echo(f"wrote {len(paths)} files under {out}")


if __name__ == "__main__":  # pragma: no cover
    main()
