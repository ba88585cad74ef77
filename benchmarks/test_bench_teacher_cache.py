"""Benchmark 2: a logit-KD epoch with the teacher-output cache ÷ the same epoch
running the teacher at every step.

Both sides are ``kdbench.trainer.fit(..., epochs=1)`` on the quickstart's KD run
(cnn(16,3) teacher → cnn(4,2) student, 2000 training samples, batches of 64, then
validation), as ``run_student`` calls it with ``RunContext(teacher_cache=True)``
and ``teacher_cache=False``: the objective holds a
:class:`kdbench.teacher_cache.CachedTeacher` (answering from cached logits by
sample index) or the frozen teacher itself.

The cache is built once per teacher and training split and shared by every
student and every epoch of that teacher in a worker, so the per-epoch ratio is
what a run sees from its second student (or second epoch) on; the one-off build
(``teacher_outputs``: one teacher pass over the training split) is recorded
separately, with the ratio of a one-epoch run that pays it in full.
The FLOPs of one forward pass per sample (``kdbench.metrics.flops_per_sample``) of
both models are recorded: the saving grows with teacher FLOPs ÷ student FLOPs.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from kdbench.metrics import flops_per_sample
from kdbench.teacher_cache import CachedTeacher, cacheable, teacher_outputs
from kdbench.trainer import Objective, Selector, fit

TARGET = "<= 0.5"


def _epoch(q: dict[str, Any], teacher: torch.nn.Module) -> None:
    spec = q["spec"]
    objective = Objective(q["loss"], teacher, spec.method.weights, spec.method.warmup)
    fit(q["student"], q["data"], objective, spec.train, epochs=1, device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(spec.seed), selector=Selector(spec.train["select"]),
        stage="distill", history=[])


def test_kd_epoch_cached_vs_live_teacher(benchmark, bench, quickstart):
    q = quickstart
    data, teacher, student = q["data"], q["teacher"], q["student"]
    assert cacheable(q["loss"], data.train, data.info.augmented), "kd on the quickstart must be cacheable"
    t_flops, s_flops = flops_per_sample(teacher, q["one"]), flops_per_sample(student, q["one"])

    builds = []
    for _ in range(3):
        t0 = time.perf_counter()
        outputs = teacher_outputs(teacher, data.train, q["spec"].train["batch_size"])
        builds.append(time.perf_counter() - t0)
    cached = CachedTeacher(outputs)

    r = bench.paired(benchmark, lambda: _epoch(q, cached), lambda: _epoch(q, teacher),
                     reset=lambda: student.load_state_dict(q["init"]))
    build_s = statistics.median(builds)
    ratio = r.pop("ratio")
    cached_s, live_s = r.pop("kdbench_median_s"), r.pop("plain_median_s")
    with_build = (cached_s + build_s) / live_s
    bench.report(
        benchmark, "2. KD epoch, cached ÷ live teacher", ratio, TARGET,
        f"teacher/student FLOPs {t_flops / s_flops:.1f}x; with the one-off build {with_build:.2f}",
        **r, cached_median_s=cached_s, live_median_s=live_s, cache_build_s=build_s,
        ratio_1_epoch_with_build=with_build, teacher_flops=t_flops, student_flops=s_flops,
        flops_ratio=t_flops / s_flops, load=bench.load_average(),
    )
