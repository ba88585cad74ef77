"""The local executor: worker processes on this machine's devices.

``--devices`` picks the devices (every CUDA device by default, else the CPU) and
``--jobs-per-device N`` packs N workers on each (several small runs on one GPU). Each
worker is a spawned process that takes one job at a time; the teachers are trained
first, each once (workers share them through the safetensors cache), then the
student runs. The driver alone writes result documents.

A worker that dies (an exception escaping a job, a segfault, SIGKILL, the
out-of-memory killer) fails only the job it was running, recorded with the cause,
and is replaced; the grid goes on. Ctrl-C stops the workers and keeps every
finished result: the next run resumes. On CPU the cores are divided between the
workers so that they do not oversubscribe the machine.
"""

from __future__ import annotations

import os
import queue
import signal
from dataclasses import dataclass, field
from typing import Any

from kdbench.errors import UserError
from kdbench.executors.base import (
    ExecutionContext,
    ExecutionSummary,
    failed_doc,
    pending,
    record,
    resolve_devices,
    run_epochs,
    run_label,
    teacher_label,
)
from kdbench.grid import Plan
from kdbench.spec import RunSpec, TeacherSpec


class LocalExecutor:
    """This machine: worker processes on every device (every CUDA device, else the CPU).

    Args:
        jobs_per_device: workers per device (several small runs packed on one GPU).
    """

    def __init__(self, jobs_per_device: int = 1) -> None:
        if jobs_per_device < 1:
            raise UserError("--jobs-per-device must be >= 1")
        self.jobs_per_device = jobs_per_device

    def execute(self, plan: Plan, ctx: ExecutionContext) -> ExecutionSummary:
        devices = resolve_devices(ctx.devices)
        teachers, runs, skipped = pending(plan, ctx.store, ctx.rerun_failed)
        summary = ExecutionSummary(skipped=skipped)
        if not runs:
            return summary
        slots = [d for d in devices for _ in range(self.jobs_per_device)]
        jobs = sum(1 for _ in teachers) + len(runs)
        pool = _Pool(slots[: max(1, min(len(slots), jobs))], ctx)
        try:
            teacher_errors = self._teachers(pool, teachers, ctx, summary)
            self._students(pool, runs, teacher_errors, ctx, summary)
        finally:
            pool.close()
        return summary

    def _teachers(self, pool: _Pool, teachers: list[TeacherSpec], ctx: ExecutionContext,
                  summary: ExecutionSummary) -> dict[str, str]:
        errors: dict[str, str] = {}
        progress = ctx.progress
        todo = [("teacher", t.key, t.to_dict()) for t in teachers]
        by_key = {t.key: t for t in teachers}

        def start(key: str) -> None:
            if progress and ctx.store.teacher_record(key) is None:
                progress.start_job(key, teacher_label(by_key[key]), by_key[key].train["epochs"])

        for key, outcome, payload in pool.run(todo, on_start=start):
            spec = by_key[key]
            if outcome == "ok":
                if payload["cached"]:
                    summary.teachers_cached += 1
                else:
                    summary.teachers_trained += 1
                    if progress:
                        m = payload["metrics"]
                        progress.finish_job(key, True, f"done   {teacher_label(spec)}: acc {m['accuracy']:.4f} "
                                                       f"({m['train_seconds']:.1f} s)", counts=False)
            else:
                errors[key] = f"teacher {spec.teacher.label} failed: {payload}"
                if progress:
                    progress.finish_job(key, False, errors[key], counts=False)
        return errors

    def _students(self, pool: _Pool, runs: list[RunSpec], teacher_errors: dict[str, str], ctx: ExecutionContext,
                  summary: ExecutionSummary) -> None:
        by_id = {r.run_id: r for r in runs}
        todo = []
        for spec in runs:
            key = spec.teacher_spec.key if spec.teacher_spec else None
            if key in teacher_errors:
                record(failed_doc(spec, teacher_errors[key]), spec, ctx, summary)
            else:
                todo.append(("student", spec.run_id, spec.to_dict()))
        start = (lambda rid: ctx.progress.start_job(rid, run_label(by_id[rid]), run_epochs(by_id[rid]))) if ctx.progress else None
        for run_id, outcome, payload in pool.run(todo, on_start=start):
            spec = by_id[run_id]
            doc = payload if outcome == "ok" else failed_doc(spec, payload)
            record(doc, spec, ctx, summary)


def death_cause(exitcode: int | None) -> str:
    """Why a worker process ended, in words."""
    if exitcode is None:
        return "worker vanished"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = {"SIGKILL": " (killed, e.g. by the out-of-memory killer)", "SIGSEGV": " (segmentation fault)",
                "SIGABRT": " (aborted)", "SIGBUS": " (bus error)"}.get(name, "")
        return f"worker died from {name}{hint}"
    return f"worker exited with code {exitcode}"


@dataclass
class _Worker:
    device: str
    process: Any
    tasks: Any
    job: str | None = None


@dataclass
class _Pool:
    """Worker processes, one job each at a time, replaced when they die."""

    slots: list[str]
    ctx: ExecutionContext
    workers: list[_Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        import multiprocessing as mp

        self._mp = mp.get_context("spawn")
        self.results = self._mp.Queue()
        self.events = self._mp.Queue()
        cpu_slots = sum(d == "cpu" for d in self.slots)
        self.threads = max(1, (os.cpu_count() or 1) // cpu_slots) if cpu_slots else 0
        self.workers = [self._spawn(i, d) for i, d in enumerate(self.slots)]

    def _spawn(self, wid: int, device: str) -> _Worker:
        tasks = self._mp.Queue()
        process = self._mp.Process(
            target=_worker_main, name=f"kdbench-worker-{wid}-{device}", daemon=True,
            args=(wid, device, tasks, self.results, self.events, self.ctx.plugin_refs, str(self.ctx.store.root),
                  self.ctx.metrics, self.threads, self.ctx.teacher_cache),
        )
        process.start()
        return _Worker(device, process, tasks)

    def run(self, jobs: list[tuple[str, str, dict]], on_start=None):
        """Run ``(kind, key, spec)`` jobs; yields ``(key, "ok" | "error", payload)``."""
        todo = list(reversed(jobs))
        busy = 0
        while todo or busy:
            for wid, w in enumerate(self.workers):
                if w.job is None and todo:
                    kind, key, spec = todo.pop()
                    w.job = key
                    busy += 1
                    if on_start:
                        on_start(key)
                    w.tasks.put((kind, key, spec))
            self._drain_events()
            try:
                wid, key, outcome, payload = self.results.get(timeout=0.2)
            except queue.Empty:
                for wid, w in enumerate(self.workers):
                    if w.job is not None and not w.process.is_alive():
                        key, w.job = w.job, None
                        busy -= 1
                        cause = death_cause(w.process.exitcode)
                        self.workers[wid] = self._spawn(wid, w.device)
                        yield key, "error", f"{cause} while running this job"
                continue
            w = self.workers[wid]
            if w.job == key:
                w.job = None
                busy -= 1
                yield key, outcome, payload

    def _drain_events(self) -> None:
        while True:
            try:
                key, stage, epoch, total = self.events.get_nowait()
            except (queue.Empty, EOFError, OSError):
                return
            if self.ctx.progress:
                self.ctx.progress.epoch(key, stage, epoch, total)

    def close(self) -> None:
        for w in self.workers:
            if w.process.is_alive():
                w.tasks.put(None)
        for w in self.workers:
            w.process.join(timeout=5 if w.job is None else 0.5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
        for q in [self.results, self.events, *(w.tasks for w in self.workers)]:
            q.close()
            q.cancel_join_thread()


def _worker_main(wid: int, device: str, tasks: Any, results: Any, events: Any, plugin_refs: tuple[str, ...],
                 root: str, metrics: dict[str, Any], threads: int, teacher_cache: bool = True) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:
        return
    import torch

    from kdbench.plugins import load_registry
    from kdbench.runner import RunContext, run_student, train_teacher
    from kdbench.store import ResultStore

    if threads:
        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    current = {"key": ""}
    ctx = RunContext(load_registry(plugins=plugin_refs), ResultStore(root), device, metrics,
                     lambda stage, e, n: events.put((current["key"], stage, e, n)), teacher_cache)
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the driver is gone (killed): stop, do not linger
                return
            continue
        if task is None:
            return
        kind, key, spec = task
        current["key"] = key
        try:
            if kind == "teacher":
                record = train_teacher(ctx, TeacherSpec.from_dict(spec))
                payload = {"cached": record["cached"], "metrics": record["metrics"]}
            else:
                payload = run_student(ctx, RunSpec.from_dict(spec))
            results.put((wid, key, "ok", payload))
        except Exception as exc:  # the job failed, the worker lives on
            results.put((wid, key, "error", f"{type(exc).__name__}: {exc}"))


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the driver dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the worker notices between jobs instead
        pass
