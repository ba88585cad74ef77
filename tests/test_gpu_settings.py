"""Training settings meant for GPUs (bf16 autocast, channels_last, torch.compile),
exercised on the CPU so that they cannot rot where no GPU is at hand."""

from __future__ import annotations

import pytest

from kdbench import config
from kdbench.grid import make_plan
from kdbench.runner import RunContext, run_student, train_teacher
from kdbench.store import ResultStore


@pytest.mark.parametrize("train", [
    "{epochs: 1, batch_size: 32, precision: bf16}",
    "{epochs: 1, batch_size: 32, channels_last: true}",
    "{epochs: 1, batch_size: 32, compile: true}",
])
def test_settings_train_and_measure(train, write_grid, registry, tmp_path):
    grid = write_grid(train=train, students="[{model: cnn, width: 4, depth: 2}]", methods="[kd]")
    plan = make_plan(config.parse_grid(str(grid), registry), registry)
    ctx = RunContext(registry, ResultStore(tmp_path / "r"), "cpu", {"latency": False})
    for t in plan.teachers:
        train_teacher(ctx, t)
    doc = run_student(ctx, plan.runs[0])
    assert doc["status"] == "done", doc.get("traceback")
    assert doc["metrics"]["accuracy"] > 0 and doc["metrics"]["flops"] > 0
