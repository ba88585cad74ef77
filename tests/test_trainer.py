from __future__ import annotations

import math

import pytest
import torch

from kdbench import config, load_registry
from kdbench.grid import make_plan
from kdbench.runner import RunContext, load_data, run_student, train_teacher
from kdbench.store import ResultStore
from kdbench.trainer import Objective, init_from


@pytest.fixture
def setup(write_grid, registry, tmp_path):
    def make(plugins=(), **overrides):
        reg = load_registry(plugins=plugins) if plugins else registry
        plan = make_plan(config.parse_grid(str(write_grid(**overrides)), reg), reg)
        ctx = RunContext(reg, ResultStore(tmp_path / "results"), "cpu", {"latency": False})
        return plan, ctx

    return make


def pick(plan, method, student_mods=()):
    return next(r for r in plan.runs if r.method.name == method and r.student.modalities == student_mods)


def test_teacher_trains_once_and_is_cached(setup):
    plan, ctx = setup()
    spec = plan.teachers[0]
    first = train_teacher(ctx, spec)
    assert not first["cached"] and first["metrics"]["accuracy"] > 0.5  # 4 classes: chance is 0.25
    weights, meta = ctx.store.teacher_paths(spec.key)
    assert weights.read_bytes()[:8] and meta.is_file()
    again = train_teacher(ctx, spec)
    assert again["cached"] and again["metrics"] == first["metrics"]


def test_student_learns_and_uses_the_teacher(setup):
    plan, ctx = setup(train="{epochs: 4, batch_size: 32}")
    for t in plan.teachers:
        train_teacher(ctx, t)
    doc = run_student(ctx, pick(plan, "kd"))
    assert doc["status"] == "done", doc.get("traceback")
    m = doc["metrics"]
    assert m["accuracy"] > 0.5
    for key in ("accuracy", "f1_macro", "precision_macro", "recall_macro", "params", "flops", "train_seconds"):
        assert key in m
    assert doc["teacher_metrics"]["accuracy"] > 0.5
    terms = doc["history"][0]["train"]
    assert set(terms) == {"ce", "kd"} and all(math.isfinite(v) for v in terms.values())


def test_same_seed_same_metrics(setup):
    plan, ctx = setup()
    for t in plan.teachers:
        train_teacher(ctx, t)
    spec = pick(plan, "kd", ("audio",))
    a, b = run_student(ctx, spec), run_student(ctx, spec)
    strip = lambda d: {k: v for k, v in d["metrics"].items() if k != "train_seconds"}  # noqa: E731
    assert strip(a) == strip(b)
    assert [h["val"] for h in a["history"]] == [h["val"] for h in b["history"]]
    other = next(r for r in make_plan(config.parse_grid(str(plan.grid.path), ctx.registry), ctx.registry).runs if r.run_id == spec.run_id)
    assert other == spec


def test_selection_reads_validation_and_test_once(setup, monkeypatch):
    import kdbench.runner
    import kdbench.trainer

    plan, ctx = setup(train="{epochs: 3, batch_size: 32}")
    spec = pick(plan, "ce")
    data = load_data(ctx, spec.dataset)
    seen = []
    real = kdbench.trainer.evaluate

    def spy(model, split, *args, **kwargs):
        seen.append("test" if split is data.test else "val" if split is data.val else "train")
        return real(model, split, *args, **kwargs)

    monkeypatch.setattr(kdbench.trainer, "evaluate", spy)
    monkeypatch.setattr(kdbench.runner, "evaluate", spy)
    doc = run_student(ctx, spec)
    assert doc["status"] == "done"
    assert seen == ["val", "val", "val", "test"]
    best = max(h["val"]["accuracy"] for h in doc["history"])
    assert doc["metrics"]["val_accuracy"] == best
    assert doc["selected"]["epoch"] == next(h["epoch"] for h in doc["history"] if h["val"]["accuracy"] == best)


def test_finetune_and_rounds(setup):
    plan, ctx = setup(distill="{finetune_epochs: 1, rounds: 2, target: 1.0}")
    for t in plan.teachers:
        train_teacher(ctx, t)
    doc = run_student(ctx, pick(plan, "kd"))
    assert doc["status"] == "done", doc.get("traceback")
    stages = [(h["stage"], h["round"]) for h in doc["history"]]
    assert stages == [("distill", 0)] * 2 + [("finetune", 0)] + [("distill", 1)] * 2 + [("finetune", 1)]
    assert doc["rounds"] == 2
    plan, ctx = setup(distill="{rounds: 3, target: 0.0}")
    doc = run_student(ctx, pick(plan, "ce"))
    assert doc["rounds"] == 1  # the target is met after the first round


def test_init_from_teacher(setup):
    plan, ctx = setup(students="[{model: cnn, width: 8, depth: 2}]", distill="{init: teacher}")
    for t in plan.teachers:
        train_teacher(ctx, t)
    doc = run_student(ctx, pick(plan, "kd"))
    assert doc["initialised_from_teacher"] > 0


def test_init_from_copies_matching_names_and_shapes():
    a, b = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)), torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 5))
    copied = init_from(a, b)
    assert copied == ["0.weight", "0.bias"]
    assert torch.equal(a[0].weight, b[0].weight) and not torch.equal(a[1].bias[:2], b[1].bias[:2])


def test_warmup_is_linear_over_epochs():
    obj = Objective(weights={"ce": 0.1, "kd": 0.9}, warmup={"kd": 3})
    assert [round(obj.weight("kd", e), 6) for e in range(5)] == [0.3, 0.6, 0.9, 0.9, 0.9]
    assert obj.weight("ce", 0) == 0.1 and obj.weight("other", 0) == 1.0


def test_failing_run_is_recorded(setup, tmp_path):
    nan_plugin = tmp_path / "nan_loss.py"
    nan_plugin.write_text(
        "import torch\nfrom kdbench import hookimpl\nfrom kdbench.loss import DistillationLoss\n"
        "class Nan(DistillationLoss):\n    '''Always NaN.'''\n    terms = ('nan',)\n"
        "    def forward(self, s, t, b):\n        return {'nan': s.logits.sum() * float('nan')}\n"
        "@hookimpl\ndef kdbench_register_losses(registry):\n    registry.add('nan', Nan)\n"
    )
    plan, ctx = setup(plugins=[str(nan_plugin)], methods="[nan]")
    for t in plan.teachers:
        train_teacher(ctx, t)
    doc = run_student(ctx, plan.runs[0])
    assert doc["status"] == "failed"
    assert doc["error"].startswith("NonFiniteLossError: distill epoch 1: loss is nan")
    assert "Traceback" in doc["traceback"]


def test_student_without_teacher_record_fails_clearly(setup):
    plan, ctx = setup()
    doc = run_student(ctx, pick(plan, "kd"))
    assert doc["status"] == "failed" and "was not trained" in doc["error"]
