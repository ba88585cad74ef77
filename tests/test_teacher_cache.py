from __future__ import annotations

import pytest
import torch

from kdbench import config
from kdbench.grid import make_plan
from kdbench.runner import RunContext, load_data, run_student, train_teacher
from kdbench.store import ResultStore
from kdbench.teacher_cache import CachedTeacher, cacheable, teacher_outputs


@pytest.fixture
def trained(write_grid, registry, tmp_path):
    grid = write_grid(methods="[kd, crd, cm-align, at]", students="[{model: cnn, width: 4, depth: 2}]",
                      train="{epochs: 2, batch_size: 32}")
    plan = make_plan(config.parse_grid(str(grid), registry), registry)
    store = ResultStore(tmp_path / "r")
    ctx = RunContext(registry, store, "cpu", {"latency": False})
    for t in plan.teachers:
        train_teacher(ctx, t)
    return plan, registry, store


@pytest.mark.parametrize("method", ["kd", "crd", "cm-align"])
def test_results_identical_with_and_without_cache(trained, method):
    plan, registry, store = trained
    spec = next(r for r in plan.runs if r.method.name == method)
    with_cache = run_student(RunContext(registry, store, "cpu", {"latency": False}, teacher_cache=True), spec)
    without = run_student(RunContext(registry, store, "cpu", {"latency": False}, teacher_cache=False), spec)
    assert with_cache["status"] == without["status"] == "done", (with_cache.get("error"), without.get("error"))
    assert with_cache["teacher_cache"] and not without["teacher_cache"]
    drop = lambda d: {k: v for k, v in d["metrics"].items() if k != "train_seconds"}  # noqa: E731
    assert drop(with_cache) == drop(without)
    assert [h["train"] for h in with_cache["history"]] == [h["train"] for h in without["history"]]


def test_feature_methods_are_not_cached(trained):
    plan, registry, store = trained
    spec = next(r for r in plan.runs if r.method.name == "at")
    doc = run_student(RunContext(registry, store, "cpu", {"latency": False}), spec)
    assert doc["status"] == "done" and doc["teacher_cache"] is False


def test_cacheable_rules(registry):
    from kdbench.types import TensorSplit

    split = TensorSplit({"x": torch.zeros(2, 1), "label": torch.zeros(2, dtype=torch.long)})
    kd, at = registry.create("loss", "kd"), registry.create("loss", "at")
    assert cacheable(kd, split, augmented=False)
    assert not cacheable(kd, split, augmented=True)  # random augmentation: outputs change every epoch
    assert not cacheable(at, split, augmented=False)  # reads feature maps
    assert not cacheable(kd, torch.utils.data.TensorDataset(torch.zeros(2)), augmented=False)


def test_cached_teacher_serves_by_index(trained):
    plan, registry, store = trained
    ctx = RunContext(registry, store, "cpu", {"latency": False})
    data = load_data(ctx, plan.runs[0].dataset)
    from kdbench.runner import load_teacher

    teacher = load_teacher(ctx, plan.teachers[0], data)
    cached = CachedTeacher(teacher_outputs(teacher, data.train, 32))
    idx = torch.tensor([5, 0, 77])
    batch = data.train.batch(idx)
    with torch.no_grad():
        direct = teacher(batch)
    served = cached(batch)
    torch.testing.assert_close(served.logits, direct.logits)
    torch.testing.assert_close(served.embedding, direct.embedding)
    assert set(served.modality_embeddings) == set(direct.modality_embeddings) and not served.features
