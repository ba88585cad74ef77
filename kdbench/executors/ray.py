"""The Ray executor: a grid's jobs as Ray tasks, on a cluster when one machine is
not enough.

``kdbench run --grid FILE --executor ray [--ray-address ADDR]`` connects to an
existing cluster (``ray start --head`` on one machine, ``ray start --address ...``
on the others; ADDR as ``ray status`` prints it), or starts a local one when no
address is given. Each job is a task asking for its share of a GPU (``1 /
jobs_per_device``, fractional for packing) when the cluster has GPUs, else CPUs.
Teachers run before the students that need them. Nothing is shared through a file
system: a teacher task sends its weights (safetensors bytes) back to the driver,
which caches them in the store and hands them to the student tasks through Ray's
object store; result documents come back to the driver, which alone writes the
store, so resuming works exactly as with the local executor. A task whose worker
dies fails only its run, recorded with the cause; no task is retried (a
deterministic failure would only fail again).

Plugin files named with ``--plugin`` must exist at the same path on every node (or
be installed as packages there); kdbench and torch must be installed on every node.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from kdbench.errors import UserError
from kdbench.executors.base import (
    ExecutionContext,
    ExecutionSummary,
    failed_doc,
    pending,
    record,
    run_label,
    teacher_label,
)
from kdbench.grid import Plan
from kdbench.spec import RunSpec


class RayExecutor:
    """A Ray cluster: every job a task, teachers first (pip install kdbench[ray]).

    Args:
        address: the cluster's address; None starts a local cluster.
        jobs_per_device: tasks per GPU (each asks for 1/N of a GPU).
        cpus_per_job: CPUs each task asks for.
    """

    def __init__(self, address: str | None = None, jobs_per_device: int = 1, cpus_per_job: float = 1.0) -> None:
        if jobs_per_device < 1 or cpus_per_job <= 0:
            raise UserError("ray executor: jobs_per_device must be >= 1 and cpus_per_job > 0")
        self.address = address
        self.jobs_per_device = jobs_per_device
        self.cpus_per_job = cpus_per_job

    def execute(self, plan: Plan, ctx: ExecutionContext) -> ExecutionSummary:
        try:
            import ray
        except ImportError:
            raise UserError("the ray executor needs Ray: pip install 'kdbench[ray]'") from None
        teachers, runs, skipped = pending(plan, ctx.store, ctx.rerun_failed)
        summary = ExecutionSummary(skipped=skipped)
        if not runs:
            return summary
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False, ignore_reinit_error=True)
            except (ConnectionError, RuntimeError) as exc:
                raise UserError(f"cannot connect to the Ray cluster at {self.address}: {str(exc).splitlines()[0]} "
                                "(is it started, with `ray start --head`, and is its auth token available?)") from None
        try:
            gpus = ray.cluster_resources().get("GPU", 0)
            options = {"num_cpus": self.cpus_per_job, "num_gpus": 1 / self.jobs_per_device if gpus else 0,
                       "max_retries": 0}
            task = ray.remote(_job).options(**options)
            args = (ctx.plugin_refs, ctx.metrics, ctx.teacher_cache)
            teacher_weights, teacher_errors = self._teachers(ray, task, teachers, args, ctx, summary)
            self._students(ray, task, runs, teacher_weights, teacher_errors, args, ctx, summary)
        finally:
            if started:
                ray.shutdown()
        return summary

    def _teachers(self, ray, task, teachers, args, ctx: ExecutionContext, summary: ExecutionSummary):
        weights: dict[str, Any] = {}
        errors: dict[str, str] = {}
        refs = {}
        for spec in teachers:
            if ctx.store.teacher_record(spec.key) is not None:  # cached by an earlier run
                summary.teachers_cached += 1
                weights[spec.key] = ray.put(ctx.store.teacher_paths(spec.key)[0].read_bytes())
                continue
            if ctx.progress:
                ctx.progress.start_job(spec.key, teacher_label(spec), spec.train["epochs"])
            refs[task.remote("teacher", spec.to_dict(), None, None, *args)] = spec
        for ref, spec in _as_completed(ray, refs):
            try:
                meta, blob = ray.get(ref)
            except Exception as exc:
                errors[spec.key] = f"teacher {spec.teacher.label} failed: {_cause(exc)}"
                if ctx.progress:
                    ctx.progress.finish_job(spec.key, False, errors[spec.key], counts=False)
                continue
            _save_teacher(ctx, spec.key, meta, blob)
            weights[spec.key] = ray.put(blob)
            summary.teachers_trained += 1
            if ctx.progress:
                m = meta["metrics"]
                ctx.progress.finish_job(spec.key, True, f"done   {teacher_label(spec)}: acc {m['accuracy']:.4f}", counts=False)
        return weights, errors

    def _students(self, ray, task, runs: list[RunSpec], weights, errors, args, ctx: ExecutionContext,
                  summary: ExecutionSummary) -> None:
        refs = {}
        for spec in runs:
            key = spec.teacher_spec.key if spec.teacher_spec else None
            if key in errors:
                record(failed_doc(spec, errors[key]), spec, ctx, summary)
                continue
            # an ObjectRef is resolved only as a top-level argument: the weights go as one
            blob, meta = (weights[key], ctx.store.teacher_meta(key)) if key is not None else (None, None)
            if ctx.progress:
                ctx.progress.start_job(spec.run_id, run_label(spec), 0)
            refs[task.remote("student", spec.to_dict(), blob, meta, *args)] = spec
        for ref, spec in _as_completed(ray, refs):
            try:
                doc = ray.get(ref)
            except Exception as exc:
                doc = failed_doc(spec, _cause(exc))
            record(doc, spec, ctx, summary)


def _as_completed(ray, refs: dict):
    left = list(refs)
    while left:
        done, left = ray.wait(left, num_returns=1)
        for ref in done:
            yield ref, refs[ref]


def _cause(exc: Exception) -> str:
    name = type(exc).__name__
    if "WorkerCrashed" in name or "ActorDied" in name or "NodeDied" in name or "OutOfMemory" in name:
        return f"Ray worker died ({name}): {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return f"{name}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _save_teacher(ctx: ExecutionContext, key: str, record: dict[str, Any], blob: bytes) -> None:
    from kdbench.store import atomic_write, write_json

    weights, meta = ctx.store.teacher_paths(key)
    atomic_write(weights, lambda p: p.write_bytes(blob))
    write_json(meta, record)


def _job(kind: str, spec: dict[str, Any], teacher_blob: bytes | None, teacher_record: dict[str, Any] | None,
         plugin_refs: tuple[str, ...], metrics: dict[str, Any], teacher_cache: bool) -> Any:
    """One job inside a Ray worker, on a private scratch store."""
    import torch

    from kdbench.plugins import load_registry
    from kdbench.runner import RunContext, run_student, train_teacher
    from kdbench.spec import RunSpec, TeacherSpec
    from kdbench.store import ResultStore, write_json

    device = "cuda" if torch.cuda.is_available() else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES to this task's GPU
    with tempfile.TemporaryDirectory(prefix="kdbench-ray-") as scratch:
        store = ResultStore(scratch)
        ctx = RunContext(load_registry(plugins=plugin_refs), store, device, metrics, teacher_cache=teacher_cache)
        if kind == "teacher":
            t = TeacherSpec.from_dict(spec)
            record = train_teacher(ctx, t)
            record.pop("cached", None)
            return record, store.teacher_paths(t.key)[0].read_bytes()
        run = RunSpec.from_dict(spec)
        if teacher_blob is not None:
            weights, meta = store.teacher_paths(run.teacher_spec.key)
            weights.parent.mkdir(parents=True, exist_ok=True)
            Path(weights).write_bytes(teacher_blob)
            write_json(meta, teacher_record)
        return run_student(ctx, run)
