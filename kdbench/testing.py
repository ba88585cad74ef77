"""Conformance checks for kdbench plugins, shipped so that third-party plugin
authors run the same checks as kdbench's builtins::

    from kdbench import load_registry
    from kdbench.testing import check_loss

    def test_my_method():
        check_loss(load_registry(plugins=["my_method.py"]), "my-method")

Each check builds the component with its defaults on the CPU, on tiny synthetic
inputs, and raises ``AssertionError`` with a message when a contract is broken.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any

import torch

from kdbench.registry import Registry
from kdbench.spec import ComponentRef, ModelRef
from kdbench.types import DatasetInfo, DatasetSplits, ModalitySpec, ModelOutput, TensorSplit

TINY = DatasetInfo(
    name="tiny",
    num_classes=3,
    class_names=("a", "b", "c"),
    modalities={"image": ModalitySpec("image", (1, 8, 8)), "audio": ModalitySpec("audio", (1, 32)), "vector": ModalitySpec("vector", (6,))},
    split_sizes={"train": 6, "val": 6, "test": 6},
)


def tiny_batch(info: DatasetInfo = TINY, n: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {}
    for name, spec in info.modalities.items():
        if spec.kind == "text":
            batch[name] = torch.randint(0, spec.vocab_size or 10, (n, *spec.shape), generator=g)
        else:
            batch[name] = torch.randn(n, *spec.shape, generator=g)
    batch["label"] = torch.arange(n) % info.num_classes
    batch["index"] = torch.arange(n)
    return batch


def _check_documented(registry: Registry, kind: str, name: str) -> None:
    comp = registry.get(kind, name)
    assert comp.version >= 1, f"{kind} '{name}' needs a version >= 1"
    assert comp.description, f"{kind} '{name}' needs a one-line description"
    assert inspect.getdoc(comp.resolve()), f"{kind} '{name}' needs a docstring"


STUDENT = ModelRef("cnn", {"width": 4, "depth": 2}, label="student")
TEACHER = ModelRef("cnn", {"width": 8, "depth": 3}, label="teacher")


def _models(registry: Registry, student: ModelRef, teacher: ModelRef, modalities: tuple[str, ...] = ()):
    from dataclasses import replace

    from kdbench.model import build_model

    torch.manual_seed(0)
    fusion = ComponentRef("concat")
    s = build_model(registry, replace(student, modalities=modalities or student.modalities), fusion, TINY)
    t = build_model(registry, teacher, fusion, TINY)
    return s, t


def check_loss(registry: Registry, name: str, params: dict[str, Any] | None = None,
               student: ModelRef = STUDENT, teacher: ModelRef = TEACHER) -> None:
    """A loss builds with defaults; ``setup`` works when student and teacher differ in
    channels, spatial size and embedding width, and when the student sees fewer
    modalities (cross-modal); every term is a finite scalar; gradients reach the
    student and the loss's own parameters, never the teacher; same seed, same value.

    The default pair is a tri-modal ``cnn(width=8, depth=3)`` teacher and a
    ``cnn(width=4, depth=2)`` student: their shared taps (``image.layer2``, ...) differ
    in channels and spatial size, and their embeddings in width.
    """
    _check_documented(registry, "loss", name)
    for modalities in ((), ("audio",)):  # same modalities, then cross-modal
        values = []
        for _ in range(2):
            s_model, t_model = _models(registry, student, teacher, modalities)
            for p in t_model.parameters():
                p.requires_grad_(False)
            t_model.eval()
            batch = tiny_batch()
            torch.manual_seed(1)
            loss = registry.create("loss", name, **(params or {}))
            loss.dataset_info = TINY
            needs_teacher = getattr(loss, "needs_teacher", True)
            with torch.no_grad():
                s_probe = s_model(batch)
                t_probe = t_model(batch) if needs_teacher else None
            loss.setup(s_probe, t_probe)
            s_out = s_model(batch)
            with torch.no_grad():  # as the trainer runs the teacher
                t_out = t_model(batch) if needs_teacher else None
            terms = loss(s_out, t_out, batch)
            assert isinstance(terms, dict), f"loss '{name}' must return a dict of named terms"
            declared = getattr(loss, "terms", ())
            assert set(terms) <= set(declared) | {"ce"} or not declared, (
                f"loss '{name}' returned terms {sorted(terms)} but declares {declared}")
            for term, value in terms.items():
                assert value.dim() == 0, f"term '{term}' of '{name}' must be a scalar"
                assert torch.isfinite(value), f"term '{term}' of '{name}' is not finite: {value}"
            if terms:
                sum(terms.values()).backward()
                grads = [p.grad for p in s_model.parameters() if p.grad is not None]
                assert grads and any(g.abs().sum() > 0 for g in grads), f"no gradient reaches the student through '{name}'"
                assert all(p.grad is None for p in t_model.parameters()), f"'{name}' sends gradients to the teacher"
                own = [p for p in loss.parameters() if p.requires_grad]
                assert not own or any(p.grad is not None and p.grad.abs().sum() > 0 for p in own), (
                    f"no gradient reaches the parameters of '{name}' itself")
            values.append({k: float(v.detach()) for k, v in terms.items()})
        assert values[0] == values[1], f"loss '{name}' is not deterministic for a fixed seed: {values}"


SPECS = {
    "image": ModalitySpec("image", (1, 8, 8)),
    "image_rgb": ModalitySpec("image", (3, 16, 16)),
    "wave": ModalitySpec("audio", (1, 400)),
    "spectrogram": ModalitySpec("audio", (1, 16, 12)),
    "vector": ModalitySpec("vector", (6,)),
    "text": ModalitySpec("text", (10,), vocab_size=12, vocab=("", *"abcdefghijk")),
}


def check_model(registry: Registry, name: str, params: dict[str, Any] | None = None,
                specs: dict[str, ModalitySpec] | None = None) -> list[str]:
    """A model family builds an encoder for every modality it supports among
    ``specs`` (images, waveforms, spectrograms, vectors, token ids) and raises
    ``IncompatibleError`` for the others; it must support at least one. Each
    supported one, alone in a model, has named taps ``<modality>.<stage>``, the
    right output shapes, and the same output for the same seed. Returns the names
    of the supported specs."""
    from kdbench.errors import IncompatibleError
    from kdbench.model import build_model

    _check_documented(registry, "model", name)
    supported = []
    for key, spec in (specs or SPECS).items():
        info = DatasetInfo("tiny", 3, ("a", "b", "c"), {key: spec}, {"train": 6, "val": 6, "test": 6})
        outs = []
        for _ in range(2):
            torch.manual_seed(0)
            try:
                model = build_model(registry, ModelRef(name, params or {}, label=name), ComponentRef("concat"), info)
            except IncompatibleError:
                break
            model.eval()
            out = model(tiny_batch(info))
            assert isinstance(out, ModelOutput)
            assert out.logits.shape == (6, 3), f"{name} on {key}: logits have shape {tuple(out.logits.shape)}"
            assert out.embedding.dim() == 2 and out.embedding.shape[0] == 6, f"{name} on {key}: embedding must be (B, D)"
            assert set(out.modality_embeddings) == {key}
            assert out.features, f"model '{name}' exposes no feature taps on {key}"
            for tap, value in out.features.items():
                modality, _, stage = tap.partition(".")
                assert modality == key and stage, f"tap '{tap}' of '{name}' is not named <modality>.<stage>"
                assert value.shape[0] == 6, f"tap '{tap}' of '{name}' has no batch dimension"
            outs.append(out.logits)
        else:
            assert torch.equal(outs[0], outs[1]), f"model '{name}' is not deterministic for a fixed seed on {key}"
            supported.append(key)
    assert supported, f"model '{name}' supports none of {', '.join(specs or SPECS)}"
    return supported


def check_fusion(registry: Registry, name: str, params: dict[str, Any] | None = None) -> None:
    """A fusion maps one, two or three modality embeddings to a (B, out_dim)
    embedding, or to logits of (B, C) when it classifies itself."""
    _check_documented(registry, "fusion", name)
    dims = OrderedDict(image=5, audio=7, vector=3)
    for k in (1, 2, 3):
        use = dict(list(dims.items())[:k])
        torch.manual_seed(0)
        fusion = registry.create("fusion", name, use, 4, **(params or {}))
        out = fusion({m: torch.randn(2, d) for m, d in use.items()})
        assert out.embedding.shape == (2, fusion.out_dim), f"fusion '{name}': embedding shape {tuple(out.embedding.shape)}"
        if getattr(fusion, "classifies", False):
            assert out.logits is not None and out.logits.shape == (2, 4)


def check_dataset(registry: Registry, name: str, params: dict[str, Any] | None = None) -> DatasetSplits:
    """A dataset's ``info()`` agrees with what ``load()`` returns, splits are
    non-empty and labelled within range, and loading twice gives the same data."""
    _check_documented(registry, "dataset", name)
    ds = registry.create("dataset", name, **(params or {}))
    info = ds.info()
    a, b = ds.load(), registry.create("dataset", name, **(params or {})).load()
    assert a.info.modalities == info.modalities, f"dataset '{name}': info() and load() disagree on modalities"
    for split_name in ("train", "val", "test"):
        split = getattr(a, split_name)
        assert len(split) > 0, f"dataset '{name}': empty {split_name} split"
        sample = split.batch(torch.arange(min(4, len(split)))) if isinstance(split, TensorSplit) else split[0]
        for modality, spec in info.modalities.items():
            shape = tuple(sample[modality].shape[1:]) if isinstance(split, TensorSplit) else tuple(sample[modality].shape)
            assert shape == spec.shape, f"dataset '{name}' {split_name}.{modality}: shape {shape} != {spec.shape}"
        labels = sample["label"]
        assert int(torch.as_tensor(labels).max()) < info.num_classes
    if isinstance(a.train, TensorSplit):
        for key, value in a.train.tensors.items():
            assert torch.equal(value, b.train.tensors[key]), f"dataset '{name}' is not deterministic ({key})"
    return a
