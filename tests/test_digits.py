"""The tri-modal ``digits`` dataset: conformance, splits, knobs, text, real recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdbench.errors import UserError
from kdbench.testing import check_dataset

digits = pytest.importorskip("kdbench_datasets.digits")
pytest.importorskip("sklearn")

SMALL = {"train_size": 40, "val_size": 20, "test_size": 30}


def load(**params):
    digits.clear_cache()  # every test sees freshly built data
    return digits.Digits(**{**SMALL, **params}).load()


def test_conformance(registry):
    digits.clear_cache()
    check_dataset(registry, "digits", SMALL)
    digits.clear_cache()
    check_dataset(registry, "digits", {**SMALL, "audio": "wave", "modalities": ["audio", "text"]})


def test_shapes_kinds_vocab():
    ds = digits.Digits(**SMALL)
    info = ds.info()
    assert info.num_classes == 10 and info.class_names[7] == "seven"
    assert info.split_sizes == {"train": 40, "val": 20, "test": 30}
    image, audio, text = info.modalities["image"], info.modalities["audio"], info.modalities["text"]
    assert (image.kind, image.shape) == ("image", (1, 8, 8))
    assert (audio.kind, audio.shape) == ("audio", (1, 32, 51))
    assert (text.kind, text.shape) == ("text", (12,))
    assert text.vocab[0] == "" and text.vocab_size == len(text.vocab) and text.joiner == ""
    assert len(set(text.vocab)) == len(text.vocab)
    assert digits.Digits(audio="wave", n_mels=20).info().modalities["audio"].shape == (1, 6400)
    assert digits.Digits(n_mels=20).info().modalities["audio"].shape == (1, 20, 51)
    data = ds.load()
    for split in (data.train, data.val, data.test):
        assert int(split.tensors["text"].max()) < text.vocab_size
        assert split.tensors["image"].dtype == split.tensors["audio"].dtype == torch.float32
        assert split.tensors["text"].dtype == torch.long
        # labels are balanced
        counts = torch.bincount(split.tensors["label"], minlength=10)
        assert int(counts.max() - counts.min()) <= 1


def test_info_is_cheap(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("info() must not read or process the data")

    monkeypatch.setattr(digits, "_read_archive", boom)
    monkeypatch.setattr(digits, "_load_sklearn_digits", boom)
    monkeypatch.setattr(digits.Digits, "_logmel", boom)
    assert digits.Digits(real=True, real_root="/nonexistent").info().modalities["audio"].shape == (1, 32, 51)


def test_modalities_subset():
    data = load(modalities=["text", "image"])
    assert set(data.info.modalities) == {"text", "image"}
    assert set(data.train.tensors) == {"label", "text", "image"}


def test_voice_and_image_splits_are_disjoint():
    with np.load(digits.AUDIO_FILE) as z:
        voice, variant, split = z["voice"], z["variant"], z["split"]
    voices = {s: set(voice[split == s]) for s in ("train", "val", "test")}
    variants = {s: set(variant[split == s]) for s in ("train", "val", "test")}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not voices[a] & voices[b], f"voices shared by {a} and {b}"
        assert not variants[a] & variants[b], f"speaker variants shared by {a} and {b}"
    assert variants["test"] == {"m4", "f3", "klatt3", "Annie"}  # as the module docstring says
    assert variants["val"] == {"m6", "f5", "Andy"}
    pools = digits.image_pools(seed=0)
    rows = {s: set(np.concatenate(list(pools[s].values())).tolist()) for s in pools}
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    assert sum(map(len, rows.values())) == 1797


def test_determinism_for_the_data_seed():
    a, b, c = load(seed=3), load(seed=3), load(seed=4)
    for key in ("label", "image", "audio", "text"):
        assert torch.equal(a.test.tensors[key], b.test.tensors[key]), key
    assert not torch.equal(a.train.tensors["image"], c.train.tensors["image"])
    # a modality's data do not depend on which other modalities are loaded
    alone = load(seed=3, modalities=["image"])
    assert torch.equal(alone.train.tensors["image"], a.train.tensors["image"])


def test_degradation_knobs_change_the_data():
    clean = load(image_noise=0.0, image_mask=0.0, audio_noise=None, text_noise=0.0, audio="wave")
    x = clean.train.tensors["image"]
    assert float(x.min()) >= 0 and float(x.max()) <= 1 and torch.equal(x * 16, (x * 16).round())
    masked = load(image_noise=0.0, image_mask=0.5, audio_noise=None, text_noise=0.0, audio="wave").train.tensors["image"]
    assert torch.equal(masked[masked != 0], x[masked != 0])  # masking only zeroes pixels
    assert int((masked == 0).sum()) > int((x == 0).sum())
    noisy = load(image_noise=0.3, image_mask=0.0, audio_noise=0.0, text_noise=0.5, audio="wave")
    assert not torch.equal(noisy.train.tensors["image"], x)
    assert float((noisy.train.tensors["image"] - x).std()) == pytest.approx(0.3, rel=0.1)
    # white noise at 0 dB SNR: the added power equals the speech's
    assert float(noisy.train.tensors["audio"].pow(2).mean()) > 1.5 * float(clean.train.tensors["audio"].pow(2).mean())
    assert not torch.equal(noisy.train.tensors["text"], clean.train.tensors["text"])
    flat = load(audio_noise=None, audio_augment=False, audio="wave").train.tensors["audio"]
    assert (flat[:, 0, :400].abs().sum(-1) > 0).all(), "without augmentation every word starts at 0"


def test_text_decodes_to_a_form_of_its_digit():
    data = load(text_noise=0.0, modalities=["text"])
    seen = set()
    for ids, y in zip(data.train.tensors["text"], data.train.tensors["label"]):
        text = digits.decode(ids)
        assert text in digits.forms(int(y)), (text, int(y))
        seen.add(text)
    assert any(t.isdigit() for t in seen) and any(t.isalpha() and t.lower() in digits.WORDS for t in seen)
    words_only = load(text_noise=0.0, modalities=["text"], text_forms=["roman"])
    for ids, y in zip(words_only.val.tensors["text"], words_only.val.tensors["label"]):
        assert digits.decode(ids) == digits.ROMAN[int(y)]
    noisy = load(text_noise=1.0, modalities=["text"])
    assert all(digits.decode(ids) for ids in noisy.train.tensors["text"]), "a text is never empty"


def test_typos():
    rng = np.random.default_rng(0)
    assert digits.typos("seven", 0.0, rng) == "seven"
    outs = {digits.typos("seven", 0.5, rng) for _ in range(50)}
    assert len(outs) > 10 and all(outs)


def _write_recordings(folder: Path, sample_rate: int) -> None:
    import soundfile as sf

    folder.mkdir()
    t = np.arange(int(0.6 * sample_rate)) / sample_rate
    for d in range(10):
        wave = 0.5 * np.sin(2 * np.pi * (200 + 50 * d) * t) * np.hanning(len(t))
        sf.write(folder / f"{d}.wav", np.concatenate([np.zeros(800), wave, np.zeros(800)]), sample_rate, subtype="PCM_16")


def test_real_recordings_from_a_folder(tmp_path):
    pytest.importorskip("soundfile")
    _write_recordings(tmp_path / "rec", 16000)  # resampled to 8 kHz on reading
    synthetic = load(modalities=["audio"])
    real = load(modalities=["audio"], real=True, real_root=str(tmp_path / "rec"))
    assert torch.equal(real.train.tensors["audio"], synthetic.train.tensors["audio"])
    assert torch.equal(real.val.tensors["audio"], synthetic.val.tensors["audio"])
    assert real.test.tensors["audio"].shape == synthetic.test.tensors["audio"].shape
    assert not torch.equal(real.test.tensors["audio"], synthetic.test.tensors["audio"])


@pytest.mark.skipif(digits.find_real_digits() is None, reason="asterisk-core-sounds-en-wav is not installed")
def test_real_recordings_from_debian(registry):
    digits.clear_cache()
    data = check_dataset(registry, "digits", {**SMALL, "real": True})
    assert data.test.tensors["audio"].shape == (30, 1, 32, 51)
    assert torch.isfinite(data.test.tensors["audio"]).all()


def test_real_without_the_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(digits, "ASTERISK_DIRS", (str(tmp_path),))
    with pytest.raises(UserError, match="apt-get install asterisk-core-sounds-en-wav"):
        load(real=True)
    with pytest.raises(UserError, match="real_root"):
        load(real=True, real_root=str(tmp_path))


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match="no modality 'video'"):
        digits.Digits(modalities=["video"])
    with pytest.raises(UserError, match="'logmel' or 'wave'"):
        digits.Digits(audio="mfcc")
    with pytest.raises(UserError, match="add 'audio' to modalities"):
        digits.Digits(modalities=["image"], real=True)
    with pytest.raises(UserError, match="text_forms"):
        digits.Digits(text_forms=["emoji"])
    with pytest.raises(UserError, match="make_digits_audio.py"):
        digits.Digits(audio_file=str(tmp_path / "missing.npz")).info()


def test_shipped_archive_is_small_and_complete():
    path = digits.AUDIO_FILE
    assert path.is_file() and path.stat().st_size < 8e6
    with np.load(path) as z:
        assert {"audio", "label", "voice", "speed", "pitch", "split", "settings", "sample_rate"} <= set(z.files)
        assert z["audio"].dtype == np.int16 and z["audio"].shape == (len(z["label"]), 6400)
        assert int(z["sample_rate"]) == 8000
        assert set(z["label"].tolist()) == set(range(10))
    assert digits.archive_settings()["length"] == 6400


@pytest.mark.skipif(__import__("shutil").which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_make_digits_audio_writes_an_archive_the_dataset_reads(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("soundfile")
    out = tmp_path / "small.npz"
    script = Path(__file__).resolve().parent.parent / "scripts" / "make_digits_audio.py"
    subprocess.run([sys.executable, str(script), "--out", str(out), "--accents", "en-us", "--variants", "m1", "f1", "m3",
                    "--test-variants", "m3", "--val-variants", "f1", "--accents-per-variant", "1"], check=True,
                   capture_output=True)
    with np.load(out) as z:
        assert len(z["label"]) == 30 and set(z["voice"][z["split"] == "test"]) == {"en-us+m3"}
    data = load(audio_file=str(out), modalities=["audio"])
    assert data.train.tensors["audio"].shape == (40, 1, 32, 51)
