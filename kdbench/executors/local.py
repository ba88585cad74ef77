"""The local executor: one worker per device.

With one device the jobs run in this process (no start-up cost, exact tracebacks).
With several (``--devices cuda:0,cuda:1``, or ``cpu,cpu`` to split the cores), a
spawned worker process per device takes jobs from a shared pool. Either way the
teachers are trained first, each once (workers share them through the safetensors
cache), then the student runs; the driver alone writes result documents.
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from kdbench.executors.base import (
    ExecutionContext,
    ExecutionSummary,
    describe,
    failed_doc,
    pending,
    resolve_devices,
    run_epochs,
    run_label,
    teacher_label,
)
from kdbench.grid import Plan
from kdbench.spec import RunSpec, TeacherSpec


class LocalExecutor:
    """This machine: one worker per device (every CUDA device, else the CPU)."""

    def execute(self, plan: Plan, ctx: ExecutionContext) -> ExecutionSummary:
        devices = resolve_devices(ctx.devices)
        teachers, runs, skipped = pending(plan, ctx.store, ctx.rerun_failed)
        summary = ExecutionSummary(skipped=skipped)
        if not runs:
            return summary
        if len(devices) == 1:
            self._in_process(devices[0], teachers, runs, ctx, summary)
        else:
            self._in_workers(devices, teachers, runs, ctx, summary)
        return summary

    # -- one device: in this process ------------------------------------------------
    def _in_process(self, device: str, teachers: list[TeacherSpec], runs: list[RunSpec],
                    ctx: ExecutionContext, summary: ExecutionSummary) -> None:
        from kdbench.runner import RunContext, run_student, train_teacher

        progress = ctx.progress
        current = {"key": ""}
        on_epoch = (lambda stage, e, n: progress.epoch(current["key"], stage, e, n)) if progress else None
        rctx = RunContext(ctx.registry, ctx.store, device, ctx.metrics, on_epoch)
        teacher_errors: dict[str, str] = {}
        for spec in teachers:
            current["key"] = spec.key
            if progress and ctx.store.teacher_record(spec.key) is None:
                progress.start_job(spec.key, teacher_label(spec), spec.train["epochs"])
            try:
                record = train_teacher(rctx, spec)
                _count_teacher(record, summary, progress, spec)
            except Exception as exc:
                teacher_errors[spec.key] = f"teacher {spec.teacher.label} failed: {type(exc).__name__}: {exc}"
                if progress:
                    progress.finish_job(spec.key, False, teacher_errors[spec.key], counts=False)
        for spec in runs:
            current["key"] = spec.run_id
            key = spec.teacher_spec.key if spec.teacher_spec else None
            if key in teacher_errors:
                doc = failed_doc(spec, teacher_errors[key])
            else:
                if progress:
                    progress.start_job(spec.run_id, run_label(spec), run_epochs(spec))
                doc = run_student(rctx, spec)
            _record(doc, spec, ctx, summary)

    # -- several devices: a worker process per device --------------------------------
    def _in_workers(self, devices: list[str], teachers: list[TeacherSpec], runs: list[RunSpec],
                    ctx: ExecutionContext, summary: ExecutionSummary) -> None:
        import multiprocessing as mp

        spawn = mp.get_context("spawn")
        device_queue = spawn.Queue()
        for d in devices:
            device_queue.put(d)
        events = spawn.Queue()
        cpu_workers = sum(d == "cpu" for d in devices)
        threads = max(1, (os.cpu_count() or 1) // cpu_workers) if cpu_workers else 0
        stop = threading.Event()
        listener = threading.Thread(target=_relay_events, args=(events, ctx.progress, stop), daemon=True)
        listener.start()
        progress = ctx.progress
        try:
            with ProcessPoolExecutor(
                max_workers=len(devices), mp_context=spawn, initializer=_init_worker,
                initargs=(device_queue, events, ctx.plugin_refs, str(ctx.store.root), ctx.metrics, threads),
            ) as pool:
                teacher_errors: dict[str, str] = {}
                futures = {}
                for spec in teachers:
                    if progress and ctx.store.teacher_record(spec.key) is None:
                        progress.start_job(spec.key, teacher_label(spec), spec.train["epochs"])
                    futures[pool.submit(_teacher_job, spec.to_dict())] = spec
                for fut in _as_done(futures):
                    spec = futures[fut]
                    try:
                        _count_teacher(fut.result(), summary, progress, spec)
                    except Exception as exc:
                        teacher_errors[spec.key] = f"teacher {spec.teacher.label} failed: {type(exc).__name__}: {exc}"
                        if progress:
                            progress.finish_job(spec.key, False, teacher_errors[spec.key], counts=False)
                futures = {}
                for spec in runs:
                    key = spec.teacher_spec.key if spec.teacher_spec else None
                    if key in teacher_errors:
                        _record(failed_doc(spec, teacher_errors[key]), spec, ctx, summary)
                        continue
                    if progress:
                        progress.start_job(spec.run_id, run_label(spec), run_epochs(spec))
                    futures[pool.submit(_student_job, spec.to_dict())] = spec
                for fut in _as_done(futures):
                    spec = futures[fut]
                    try:
                        doc = fut.result()
                    except Exception as exc:  # the worker itself died
                        doc = failed_doc(spec, f"worker failed: {type(exc).__name__}: {exc}")
                    _record(doc, spec, ctx, summary)
        finally:
            stop.set()
            listener.join(timeout=2)


def _as_done(futures: dict) -> Any:
    left = set(futures)
    while left:
        done, left = wait(left, return_when=FIRST_COMPLETED)
        yield from done


def _count_teacher(record: dict[str, Any], summary: ExecutionSummary, progress: Any, spec: TeacherSpec) -> None:
    if record.get("cached"):
        summary.teachers_cached += 1
        return
    summary.teachers_trained += 1
    if progress:
        m = record["metrics"]
        progress.finish_job(spec.key, True, f"done   {teacher_label(spec)}: acc {m['accuracy']:.4f} "
                                            f"({m['train_seconds']:.1f} s)", counts=False)


def _record(doc: dict[str, Any], spec: RunSpec, ctx: ExecutionContext, summary: ExecutionSummary) -> None:
    ctx.store.put(doc)
    if doc["status"] == "done":
        summary.done += 1
    else:
        summary.failed += 1
        summary.failures.append((run_label(spec), doc["error"]))
    if ctx.progress:
        ctx.progress.finish_job(spec.run_id, doc["status"] == "done", describe(doc, run_label(spec)))


def _relay_events(events: Any, progress: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            key, stage, epoch, total = events.get(timeout=0.2)
        except queue.Empty:
            continue
        except (EOFError, OSError):
            return
        if progress:
            progress.epoch(key, stage, epoch, total)


# -- worker process side ----------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(device_queue: Any, events: Any, plugin_refs: tuple[str, ...], root: str,
                 metrics: dict[str, Any], threads: int) -> None:
    import torch

    from kdbench.plugins import load_registry
    from kdbench.runner import RunContext
    from kdbench.store import ResultStore

    if threads:
        torch.set_num_threads(threads)
    device = device_queue.get()
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    current = {"key": ""}
    on_epoch = lambda stage, e, n: events.put((current["key"], stage, e, n))  # noqa: E731
    ctx = RunContext(load_registry(plugins=plugin_refs), ResultStore(root), device, metrics, on_epoch)
    _WORKER.update(ctx=ctx, current=current)


def _teacher_job(spec: dict[str, Any]) -> dict[str, Any]:
    from kdbench.runner import train_teacher

    spec = TeacherSpec.from_dict(spec)
    _WORKER["current"]["key"] = spec.key
    record = train_teacher(_WORKER["ctx"], spec)
    return {"cached": record["cached"], "metrics": record["metrics"]}


def _student_job(spec: dict[str, Any]) -> dict[str, Any]:
    from kdbench.runner import run_student

    spec = RunSpec.from_dict(spec)
    _WORKER["current"]["key"] = spec.run_id
    return run_student(_WORKER["ctx"], spec)
