from __future__ import annotations

import pytest

from kdbench import config
from kdbench.grid import expand, make_plan


def plan_of(path, registry):
    return make_plan(config.parse_grid(str(path), registry), registry)


def test_product_with_seeds_and_baseline_once_per_student(write_grid, registry):
    path = write_grid(teachers="[{model: cnn, width: 8}, {model: cnn, width: 12}]", seeds="[0, 1, 2]")
    plan = plan_of(path, registry)
    # 2 students x 3 seeds x (ce once + kd per teacher x 2 teachers)
    assert len(plan.runs) == 2 * 3 * (1 + 2)
    assert len(plan.teachers) == 2 * 3
    ce = [r for r in plan.runs if r.method.name == "ce"]
    assert len(ce) == 6 and all(r.teacher is None for r in ce)
    assert len({r.run_id for r in plan.runs}) == len(plan.runs)


def test_run_id_is_stable_and_tracks_what_matters(write_grid, registry):
    a = plan_of(write_grid(), registry)
    b = plan_of(write_grid(), registry)
    assert [r.run_id for r in a.runs] == [r.run_id for r in b.runs]
    c = plan_of(write_grid(methods="[ce, {name: kd, temperature: 2.0}]"), registry)
    kd_a = {r.run_id for r in a.runs if r.method.name == "kd"}
    kd_c = {r.run_id for r in c.runs if r.method.name == "kd"}
    ce_a = {r.run_id for r in a.runs if r.method.name == "ce"}
    ce_c = {r.run_id for r in c.runs if r.method.name == "ce"}
    assert kd_a.isdisjoint(kd_c) and ce_a == ce_c
    d = plan_of(write_grid(train="{epochs: 3, batch_size: 32}"), registry)
    assert {r.run_id for r in d.runs}.isdisjoint(r.run_id for r in a.runs)


def test_labels_do_not_change_identity(write_grid, registry):
    a = plan_of(write_grid(students="[{model: mlp, width: 16}]"), registry)
    b = plan_of(write_grid(students="[{model: mlp, width: 16, label: small}]"), registry)
    assert [r.run_id for r in a.runs] == [r.run_id for r in b.runs]
    assert b.runs[0].student.label == "small"


def test_exclude_and_include(write_grid, registry):
    path = write_grid(
        seeds="[0, 1]",
        exclude="[{student: 'mlp(width=8)[audio]', method: kd}, {seed: 1, method: ce}]",
        include="[{student: {model: cnn, width: 4}, method: kd, seed: 5}]",
    )
    grid = config.parse_grid(str(path), registry)
    runs = expand(grid, registry)
    keys = {(r.student.label, r.method.name, r.seed) for r in runs}
    assert ("mlp(width=8)[audio]", "kd", 0) not in keys
    assert ("mlp(width=16)", "kd", 1) in keys
    assert ("mlp(width=16)", "ce", 1) not in keys
    assert ("cnn(width=4)", "kd", 5) in keys
    assert ("cnn(width=4)", "ce", 5) not in keys


def test_exclude_by_params(write_grid, registry):
    path = write_grid(exclude="[{student: {model: mlp, width: 16}}]")
    runs = expand(config.parse_grid(str(path), registry), registry)
    assert {r.student.label for r in runs} == {"mlp(width=8)[audio]"}


def test_method_weights_from_plugin_defaults_and_grid(write_grid, registry):
    path = write_grid(methods="[ce, kd, {name: kd, weights: {ce: 1.0}, warmup: {kd: 3}, label: kd-ce1}]")
    grid = config.parse_grid(str(path), registry)
    kd, custom = grid.methods[1], grid.methods[2]
    assert kd.weights == {"ce": 0.1, "kd": 0.9}
    assert custom.weights == {"ce": 1.0, "kd": 0.9} and custom.warmup == {"kd": 3}
    assert grid.methods[0].baseline and not grid.methods[0].needs_teacher


def test_teacher_train_overrides(write_grid, registry):
    path = write_grid(teacher_train="{epochs: 5}")
    plan = plan_of(path, registry)
    assert plan.teachers[0].train["epochs"] == 5
    assert plan.runs[0].train["epochs"] == 2


def test_cross_modal_student_on_fewer_modalities(write_grid, registry):
    plan = plan_of(write_grid(), registry)
    audio = [r for r in plan.runs if r.student.modalities == ("audio",)]
    assert audio and all(r.teacher is None or r.teacher.modalities == () for r in audio)


def test_spec_round_trip(write_grid, registry):
    from kdbench.spec import RunSpec, TeacherSpec

    plan = plan_of(write_grid(students="[{model: cnn, width: 4, encoders: {vector: {model: mlp, width: 8}}, fusion: late}]"), registry)
    for run in plan.runs:
        assert RunSpec.from_dict(run.to_dict()).run_id == run.run_id
    for t in plan.teachers:
        assert TeacherSpec.from_dict(t.to_dict()).key == t.key


def test_synthetic_default_data_are_stable(registry):
    """The default generator must not change (results and run ids depend on it)."""
    import torch

    data = registry.create("dataset", "synthetic", train_size=4, val_size=2, test_size=2).load()
    assert data.train.tensors["label"].tolist() == [5, 1, 7, 7]
    assert float(data.train.tensors["image"].sum()) == pytest.approx(-334.189, abs=1e-3)
    assert torch.isfinite(data.train.tensors["vector"]).all()


def test_synthetic_shared_and_specific(registry):
    import torch

    from kdbench.errors import UserError

    info = registry.create("dataset", "synthetic", modalities=["vector", "vector2", "image"]).info()
    assert {m: s.kind for m, s in info.modalities.items()} == {"vector": "vector", "vector2": "vector", "image": "image"}

    with pytest.raises(UserError, match="shared must be in"):
        registry.create("dataset", "synthetic", shared=1.5)
    with pytest.raises(UserError, match="no modality 'smell'"):
        registry.create("dataset", "synthetic", modalities=["smell"])
    # with everything shared, two renderings of the same latent are tied sample by sample;
    # with nothing shared, they only share the class
    def within(shared):
        return registry.create("dataset", "synthetic", modalities=["vector", "vector2"], shared=shared, noise=0.0,
                               num_classes=2, train_size=600, val_size=2, test_size=2).load().train.tensors

    def residual_corr(t):
        a, b, y = t["vector"], t["vector2"], t["label"]
        a = a - torch.stack([a[y == c].mean(0) for c in (0, 1)])[y]
        b = b - torch.stack([b[y == c].mean(0) for c in (0, 1)])[y]
        return torch.corrcoef(torch.cat([a, b], 1).T)[: a.shape[1], a.shape[1]:].abs().max().item()

    assert residual_corr(within(1.0)) > 0.5 > residual_corr(within(0.0))
