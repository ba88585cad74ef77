"""The image encoders of the KD literature: CIFAR ResNets, WRNs, torchvision's
ResNet-18 and MobileNetV3-Small: shapes, taps, parameter counts against the
literature, determinism, and refusing what is not a 2-D map."""

from __future__ import annotations

import pytest
import torch

from kdbench import load_registry
from kdbench.errors import IncompatibleError, UserError
from kdbench.metrics import count_params
from kdbench.model import build_model
from kdbench.spec import ComponentRef, ModelRef
from kdbench.types import DatasetInfo, ModalitySpec

REGISTRY = load_registry()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a loaded 2-core machine torch's default threads
    oversubscribe the cores and make these small forwards ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# name -> (embedding width, channels of layer1.., downsampling of layer1.. w.r.t. the input)
ARCH = {
    "resnet20": (64, (16, 32, 64), (1, 2, 4)),
    "resnet56": (64, (16, 32, 64), (1, 2, 4)),
    "resnet8x4": (256, (64, 128, 256), (1, 2, 4)),
    "resnet32x4": (256, (64, 128, 256), (1, 2, 4)),
    "wrn-16-2": (128, (32, 64, 128), (1, 2, 4)),
    "wrn-40-2": (128, (32, 64, 128), (1, 2, 4)),
    "resnet18": (512, (64, 128, 256, 512), (1, 2, 4, 8)),
    "mobilenet_v3_small": (1024, (16, 24, 48, 576), (2, 4, 8, 16)),
}
NAMES = list(ARCH)

# Parameters at 32x32 with a 100-class head. RepDistiller's zoo (Tian et al. 2020) as
# CIFAR-100 KD papers tabulate it (e.g. the "Params" columns of SimKD, Chen et al.
# CVPR 2022): resnet20 0.28M, resnet56 0.86M, resnet8x4 1.23M, resnet32x4 7.43M,
# wrn-16-2 0.70M, wrn-40-2 2.26M. torchvision's ImageNet models, from the parameter
# counts in its weights' metadata (no download): ResNet-18 11,689,512 less the 7x7
# stem's 3*64*(49-9) and 900 of its 1000 fc rows of 513 (kuangliu/pytorch-cifar's
# CIFAR ResNet-18: 11.17M at 10 classes); MobileNetV3-Small 2,542,856 less 900 rows
# of 1025.
LITERATURE_PARAMS = {
    "resnet20": 0.28e6,
    "resnet56": 0.86e6,
    "resnet8x4": 1.23e6,
    "resnet32x4": 7.43e6,
    "wrn-16-2": 0.70e6,
    "wrn-40-2": 2.26e6,
    "resnet18": 11_689_512 - 3 * 64 * (49 - 9) - 900 * 513,
    "mobilenet_v3_small": 2_542_856 - 900 * 1025,
}


def _info(spec: ModalitySpec, num_classes: int = 3, modality: str = "image") -> DatasetInfo:
    return DatasetInfo("t", num_classes, tuple(map(str, range(num_classes))), {modality: spec})


def _build(name: str, info: DatasetInfo, **params):
    return build_model(REGISTRY, ModelRef(name, params, label=name), ComponentRef("concat"), info)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_the_literature(name):
    model = _build(name, _info(ModalitySpec("image", (3, 32, 32)), num_classes=100))
    expected = LITERATURE_PARAMS[name]
    assert count_params(model) == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_taps_at_32x32(name):
    embed_dim, channels, strides = ARCH[name]
    model = _build(name, _info(ModalitySpec("image", (3, 32, 32)), num_classes=100)).eval()
    with torch.no_grad():
        out = model({"image": torch.randn(2, 3, 32, 32)})
    assert model.encoders["image"].embed_dim == embed_dim
    assert out.logits.shape == (2, 100)
    assert out.modality_embeddings["image"].shape == (2, embed_dim)
    assert list(out.features) == [f"image.layer{i}" for i in range(1, len(channels) + 1)]
    for tap, c, s in zip(out.features.values(), channels, strides):
        assert tap.shape == (2, c, 32 // s, 32 // s)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_image_shapes_and_determinism(name):
    """kdbench.testing.TINY's 1x8x8 image: every stage keeps at least 1x1."""
    embed_dim, channels, strides = ARCH[name]
    info = _info(ModalitySpec("image", (1, 8, 8)))
    x = {"image": torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))}
    logits = []
    for _ in range(2):
        torch.manual_seed(0)
        model = _build(name, info).eval()
        with torch.no_grad():
            out = model(x)
        assert out.embedding.shape == (2, embed_dim) and torch.isfinite(out.logits).all()
        for tap, c, s in zip(out.features.values(), channels, strides):
            assert tap.shape == (2, c, max(8 // s, 1), max(8 // s, 1))
        logits.append(out.logits)
    assert torch.equal(logits[0], logits[1])


@pytest.mark.parametrize("name", ["resnet20", "wrn-16-2", "mobilenet_v3_small"])  # one per file: same code paths
def test_every_parameter_trains(name):
    torch.manual_seed(0)
    model = _build(name, _info(ModalitySpec("image", (1, 8, 8))))
    model({"image": torch.randn(2, 1, 8, 8)}).logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ["resnet8x4", "wrn-16-2", "resnet18", "mobilenet_v3_small"])  # every stem
def test_stem_reads_the_modality_channels_and_any_size(name):
    """Five channels and a non-square map; a (1, F, T) spectrogram is a 1-channel image."""
    for spec in (ModalitySpec("image", (5, 9, 13)), ModalitySpec("audio", (1, 16, 12))):
        model = _build(name, _info(spec, modality="m")).eval()
        with torch.no_grad():
            out = model({"m": torch.randn(2, *spec.shape)})
        assert out.logits.shape == (2, 3)
        first = next(m for m in model.encoders["m"].modules() if isinstance(m, torch.nn.Conv2d))
        assert first.in_channels == spec.shape[0]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "spec",
    [
        ModalitySpec("audio", (1, 32)),  # a waveform
        ModalitySpec("vector", (6,)),
        ModalitySpec("sequence", (2, 10)),
        ModalitySpec("text", (10,), vocab_size=12),
    ],
    ids=["waveform", "vector", "sequence", "text"],
)
def test_non_image_modalities_are_incompatible(name, spec):
    with pytest.raises(IncompatibleError, match="image encoder"):
        REGISTRY.create("model", name).build("m", spec)
    with pytest.raises(IncompatibleError, match="encoders:"):  # the core adds the fix
        _build(name, _info(spec, modality="m"))


def test_bad_dropout_is_a_user_error():
    with pytest.raises(UserError, match="drop_rate"):
        REGISTRY.create("model", "wrn-40-2", drop_rate=1.5)
    with pytest.raises(UserError, match="dropout"):
        REGISTRY.create("model", "mobilenet_v3_small", dropout=-0.1)


def test_wrn_dropout_is_used_in_training_only():
    info = _info(ModalitySpec("image", (1, 8, 8)))
    torch.manual_seed(0)
    model = _build("wrn-16-2", info, drop_rate=0.5)
    x = {"image": torch.randn(2, 1, 8, 8)}
    model.eval()
    assert torch.equal(model(x).logits, model(x).logits)
    model.train()
    assert not torch.equal(model(x).logits, model(x).logits)
