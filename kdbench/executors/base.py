"""What every executor shares: the execution context, the summary, what is left
to do, and the one-line description of a finished job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kdbench.errors import UserError
from kdbench.grid import Plan
from kdbench.registry import Registry
from kdbench.spec import RunSpec, TeacherSpec
from kdbench.store import ResultStore


@dataclass
class ExecutionContext:
    registry: Registry
    store: ResultStore
    plugin_refs: tuple[str, ...] = ()  # rebuilt in worker processes
    devices: str = "auto"
    metrics: dict[str, Any] = field(default_factory=dict)
    rerun_failed: bool = False
    teacher_cache: bool = True  # serve teacher outputs from a cache where the method allows it
    progress: Any = None  # GridProgress


@dataclass
class ExecutionSummary:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    teachers_trained: int = 0
    teachers_cached: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (run label, error)

    @property
    def ok(self) -> bool:
        return self.failed == 0


def pending(plan: Plan, store: ResultStore, rerun_failed: bool) -> tuple[list[TeacherSpec], list[RunSpec], int]:
    """The teachers still to train, the runs still to do, and how many runs are skipped."""
    runs, skipped = [], 0
    for run in plan.runs:
        status = store.status(run.run_id)
        if status == "done" or (status == "failed" and not rerun_failed):
            skipped += 1
        else:
            runs.append(run)
    needed = {r.teacher_spec.key for r in runs if r.teacher_spec is not None}
    teachers = [t for t in plan.teachers if t.key in needed]
    return teachers, runs, skipped


def run_label(spec: RunSpec) -> str:
    teacher = spec.teacher.label if spec.teacher else "-"
    return f"{spec.dataset.label} | {teacher} -> {spec.student.label} | {spec.fusion.label} | {spec.method.label} | seed {spec.seed}"


def teacher_label(spec: TeacherSpec) -> str:
    return f"teacher {spec.dataset.label} | {spec.teacher.label} | {spec.fusion.label} | seed {spec.seed}"


def run_epochs(spec: RunSpec) -> int:
    return spec.distill["rounds"] * (spec.train["epochs"] + spec.distill["finetune_epochs"])


def describe(doc: dict[str, Any], label: str) -> str:
    if doc["status"] != "done":
        return f"FAILED {label}: {doc['error']}"
    m = doc["metrics"]
    return f"done   {label}: acc {m['accuracy']:.4f} f1 {m['f1_macro']:.4f} ({m['train_seconds']:.1f} s)"


def failed_doc(spec: RunSpec, error: str) -> dict[str, Any]:
    return {
        "run_id": spec.run_id, "status": "failed", "error": error, "spec": spec.to_dict(),
        "metrics": None, "teacher_metrics": None,
        "teacher_key": spec.teacher_spec.key if spec.teacher_spec else None,
    }


def record(doc: dict[str, Any], spec: RunSpec, ctx: ExecutionContext, summary: ExecutionSummary) -> None:
    """Write a finished run's document (the driver alone does) and count it."""
    ctx.store.put(doc)
    if doc["status"] == "done":
        summary.done += 1
    else:
        summary.failed += 1
        summary.failures.append((run_label(spec), doc["error"]))
    if ctx.progress:
        ctx.progress.finish_job(spec.run_id, doc["status"] == "done", describe(doc, run_label(spec)))


def resolve_devices(devices: str) -> list[str]:
    """``auto`` (every CUDA device, else the CPU), ``cpu``, or a list ``cuda:0,cuda:1``."""
    import torch

    if devices == "auto":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(n)] or ["cpu"]
    out = [d.strip() for d in devices.split(",") if d.strip()]
    if not out:
        raise UserError("--devices is empty; use auto, cpu or cuda:0,cuda:1")
    for d in out:
        if d == "cpu":
            continue
        if d == "cuda":
            d = "cuda:0"
        if not d.startswith("cuda:") or not d[5:].isdigit():
            raise UserError(f"unknown device '{d}'; use auto, cpu, cuda or cuda:N")
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(d[5:]) >= n:
            raise UserError(f"device '{d}' is not available (this machine has {n} CUDA device(s)); use --devices cpu or auto")
    return ["cuda:0" if d == "cuda" else d for d in out]
