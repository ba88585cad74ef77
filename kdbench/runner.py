"""Executing one job: a teacher training or a student run, on one device.

Executors call :func:`train_teacher` and :func:`run_student` wherever they run
them (in process, in a worker process, in a Ray task); the result documents go
back to the driver, which alone writes the store.
"""

from __future__ import annotations

import platform
import random
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch

import kdbench
from kdbench.metrics import count_params, flops_per_sample, latency
from kdbench.model import build_model
from kdbench.registry import Registry
from kdbench.spec import ComponentRef, RunSpec, TeacherSpec
from kdbench.store import ResultStore
from kdbench.teacher_cache import CachedTeacher, cacheable, teacher_outputs
from kdbench.trainer import EpochCallback, Objective, Selector, evaluate, fit, init_from, prepare
from kdbench.types import DatasetSplits, TensorSplit


@dataclass
class RunContext:
    """What a job needs besides its spec: where, with which plugins, and callbacks."""

    registry: Registry
    store: ResultStore
    device: str = "cpu"
    metrics: dict[str, Any] = field(default_factory=lambda: {"latency": True, "latency_min_time": 0.2})
    on_epoch: EpochCallback | None = None
    teacher_cache: bool = True  # serve teacher outputs from a cache where the method allows it
    _datasets: dict[str, DatasetSplits] = field(default_factory=dict)
    _teacher_outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy comes with torch
        pass


def load_data(ctx: RunContext, ref: ComponentRef) -> DatasetSplits:
    """The dataset's splits on the run's device; loaded once per process."""
    key = repr(ref.identity())
    if key not in ctx._datasets:
        data = ctx.registry.create("dataset", ref.name, **ref.params).load()
        dev = ctx.torch_device
        move = lambda s: s.to(dev) if isinstance(s, TensorSplit) else s  # noqa: E731
        ctx._datasets[key] = DatasetSplits(data.info, move(data.train), move(data.val), move(data.test))
    return ctx._datasets[key]


def environment(ctx: RunContext) -> dict[str, Any]:
    device = ctx.device
    if device.startswith("cuda") and torch.cuda.is_available():
        device = f"{device} ({torch.cuda.get_device_name(ctx.torch_device)})"
    return {
        "device": device,
        "versions": {
            "kdbench": kdbench.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "plugins": {p.name: p.version for p in ctx.registry.plugins if p.version},
        },
        "host": platform.node(),
        "platform": platform.platform(),
    }


def measure(model: torch.nn.Module, data: DatasetSplits, settings: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Test metrics of the selected checkpoint (the one time the test split is read),
    size, FLOPs and latency."""
    dev = ctx.torch_device
    out: dict[str, Any] = evaluate(model, data.test, data.info.num_classes, settings["eval_batch_size"], dev)
    out["params"] = count_params(model)
    one = _sample_batch(data.test, 1, dev)
    out["flops"] = flops_per_sample(model, one)
    if ctx.metrics.get("latency", True):
        full = _sample_batch(data.test, min(settings["eval_batch_size"], len(data.test)), dev)
        out.update(latency(model, one, full, ctx.metrics.get("latency_min_time", 0.2)))
    else:
        out.update({"latency_ms": None, "throughput": None})
    return out


def _sample_batch(split: Any, n: int, device: torch.device) -> dict[str, torch.Tensor]:
    if isinstance(split, TensorSplit):
        return split.batch(torch.arange(n, device=device))
    items = [split[i] for i in range(n)]
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]).to(device) for k in items[0]}


def _stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def train_teacher(ctx: RunContext, spec: TeacherSpec) -> dict[str, Any]:
    """Train (or find in the cache) the teacher of ``spec``; returns its record."""
    cached = ctx.store.teacher_record(spec.key)
    if cached is not None:
        return {**cached, "cached": True}
    started, t0 = _stamp(), time.perf_counter()
    seed_everything(spec.seed)
    data = load_data(ctx, spec.dataset)
    model = prepare(build_model(ctx.registry, spec.teacher, spec.fusion, data.info).to(ctx.torch_device), spec.train)
    selector = Selector(spec.train["select"])
    history: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(spec.seed)
    fit(model, data, Objective(), spec.train, epochs=spec.train["epochs"], device=ctx.torch_device,
        generator=gen, selector=selector, stage="teacher", on_epoch=ctx.on_epoch, history=history)
    selector.restore(model)
    train_seconds = time.perf_counter() - t0
    metrics = measure(model, data, spec.train, ctx)
    metrics["train_seconds"] = train_seconds
    metrics["val_" + selector.metric] = selector.best
    record = {
        "key": spec.key,
        "spec": spec.to_dict(),
        "metrics": metrics,
        "selected": selector.where,
        "history": history,
        "started_at": started,
        "finished_at": _stamp(),
        **environment(ctx),
    }
    ctx.store.save_teacher(spec.key, model.state_dict(), record)
    return {**record, "cached": False}


def load_teacher(ctx: RunContext, spec: TeacherSpec, data: DatasetSplits) -> torch.nn.Module:
    model = build_model(ctx.registry, spec.teacher, spec.fusion, data.info)
    model.load_state_dict(ctx.store.load_teacher_state(spec.key))
    model.to(ctx.torch_device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def run_student(ctx: RunContext, spec: RunSpec) -> dict[str, Any]:
    """Run one student; returns its result document (status done or failed)."""
    doc: dict[str, Any] = {
        "run_id": spec.run_id,
        "status": "failed",
        "error": None,
        "spec": spec.to_dict(),
        "metrics": None,
        "teacher_metrics": None,
        "teacher_key": spec.teacher_spec.key if spec.teacher_spec else None,
        "started_at": _stamp(),
    }
    t_wall = time.perf_counter()
    try:
        doc.update(_run_student(ctx, spec))
        doc["status"] = "done"
    except Exception as exc:  # recorded, and the grid goes on
        doc["error"] = f"{type(exc).__name__}: {exc}"
        doc["traceback"] = traceback.format_exc()
    doc["finished_at"] = _stamp()
    doc["wall_seconds"] = time.perf_counter() - t_wall
    doc.update(environment(ctx))
    return doc


def _run_student(ctx: RunContext, spec: RunSpec) -> dict[str, Any]:
    dev = ctx.torch_device
    data = load_data(ctx, spec.dataset)
    teacher, teacher_metrics = None, None
    if spec.teacher_spec is not None:
        record = ctx.store.teacher_record(spec.teacher_spec.key)
        if record is None:
            raise RuntimeError(f"teacher {spec.teacher.label} was not trained (its training failed or was interrupted)")
        teacher_metrics = record["metrics"]
        teacher = load_teacher(ctx, spec.teacher_spec, data)

    seed_everything(spec.seed)
    t0 = time.perf_counter()
    student = build_model(ctx.registry, spec.student, spec.fusion, data.info).to(dev)
    copied: list[str] = []
    if spec.distill["init"] == "teacher" and teacher is not None:
        copied = init_from(student, teacher)
    prepare(student, spec.train)
    loss = ctx.registry.create("loss", spec.method.name, **spec.method.params).to(dev)
    probe = _sample_batch(data.train, min(spec.train["batch_size"], len(data.train)), dev)
    with torch.no_grad():
        was = student.training
        student.eval()
        s_probe = student(probe)
        student.train(was)
        t_probe = teacher(probe) if teacher is not None else None
    loss.dataset_info = data.info
    loss.setup(s_probe, t_probe)
    loss.to(dev)

    cached = False
    if teacher is not None and ctx.teacher_cache and cacheable(loss, data.train, data.info.augmented):
        key = f"{spec.teacher_spec.key}:{spec.dataset.identity()}:{spec.train['batch_size']}"
        if key not in ctx._teacher_outputs:  # once per teacher and split, shared by its students
            while len(ctx._teacher_outputs) >= 8:  # a few teachers' worth, oldest out
                ctx._teacher_outputs.pop(next(iter(ctx._teacher_outputs)))
            ctx._teacher_outputs[key] = teacher_outputs(teacher, data.train, spec.train["batch_size"])
        teacher, cached = CachedTeacher(ctx._teacher_outputs[key]), True

    gen = torch.Generator().manual_seed(spec.seed)
    selector = Selector(spec.train["select"])
    history: list[dict[str, Any]] = []
    distill = Objective(loss, teacher, spec.method.weights, spec.method.warmup)
    finetune = Objective()
    common = dict(device=dev, generator=gen, selector=selector, on_epoch=ctx.on_epoch, history=history)
    pretrain = int(getattr(loss, "pretrain_epochs", 0) or 0)
    if pretrain > 0:  # e.g. FitNet's hint stage: trained, never selected
        objective = Objective(loss, teacher, getattr(loss, "pretrain_weights", {}), {})
        fit(student, data, objective, spec.train, epochs=pretrain, stage="pretrain", select=False, **common)
    rounds_run = 0
    for rnd in range(spec.distill["rounds"]):
        rounds_run += 1
        fit(student, data, distill, spec.train, epochs=spec.train["epochs"], stage="distill", round=rnd, **common)
        if spec.distill["finetune_epochs"]:
            fit(student, data, finetune, spec.train, epochs=spec.distill["finetune_epochs"], stage="finetune", round=rnd, **common)
        target = spec.distill.get("target")
        if target is not None and selector.best >= target:
            break
        selector.restore(student)  # the next round starts from the best checkpoint so far
    selector.restore(student)
    train_seconds = time.perf_counter() - t0
    metrics = measure(student, data, spec.train, ctx)
    metrics["train_seconds"] = train_seconds
    metrics["val_" + selector.metric] = selector.best
    return {
        "metrics": metrics,
        "teacher_metrics": teacher_metrics,
        "selected": selector.where,
        "rounds": rounds_run,
        "initialised_from_teacher": len(copied),
        "teacher_cache": cached,
        "history": history,
    }
