"""The datasets read from files: MNIST, Fashion-MNIST, CIFAR-10/100 (torchvision),
Speech Commands (torchaudio's file lists, soundfile) and the user's own manifest.

No test downloads anything: each writes a handful of samples in the exact on-disk
format the library reads (idx files, CIFAR pickles, the Speech Commands folder
tree, a manifest with PNGs and wavs) and runs the conformance check on them.
Fashion-MNIST is also read from Debian's dataset-fashion-mnist when installed.
"""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from kdbench.errors import UserError
from kdbench.testing import check_dataset
from kdbench.types import TensorSplit

# --- MNIST and Fashion-MNIST -------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    """An idx file (big-endian header: 0, 0, type 0x08 = uint8, ndim; then the dims)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_mnist(root: Path, folder: str, n_train: int, n_test: int, compress: bool) -> None:
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28))
        images[0] = 0  # a black image: its normalised value is known
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, compress)


def test_mnist_from_gzipped_idx_files(registry, tmp_path):
    write_mnist(tmp_path, "MNIST", n_train=30, n_test=12, compress=True)
    params = {"root": str(tmp_path), "val_size": 6}
    info = registry.create("dataset", "mnist", **params).info()
    assert info.split_sizes == {"train": 24, "val": 6, "test": 12}  # from the idx headers
    assert info.modalities["image"].shape == (1, 28, 28) and info.class_names[3] == "3"
    data = check_dataset(registry, "mnist", params)
    assert (len(data.train), len(data.val), len(data.test)) == (24, 6, 12)
    # the test split is the official one, in order: image 0 is black
    assert torch.allclose(data.test.tensors["image"][0], torch.full((1, 28, 28), -0.1307 / 0.3081))
    assert torch.equal(data.test.tensors["label"], torch.arange(12) % 10)
    # train and val are disjoint parts of the training file
    assert len(data.train.tensors["image"]) + len(data.val.tensors["image"]) == 30


def test_fashion_mnist_from_raw_idx_files_with_caps(registry, tmp_path):
    write_mnist(tmp_path, "FashionMNIST", n_train=40, n_test=20, compress=False)
    params = {"root": str(tmp_path), "val_size": 10, "train_size": 8, "test_size": 5, "seed": 1}
    data = check_dataset(registry, "fashion-mnist", params)
    assert (len(data.train), len(data.val), len(data.test)) == (8, 10, 5)
    assert data.info.class_names[0] == "T-shirt/top" and data.info.num_classes == 10
    other = registry.create("dataset", "fashion-mnist", **{**params, "seed": 2}).load()
    assert not torch.equal(other.val.tensors["image"], data.val.tensors["image"])  # the data seed draws the split


def test_val_size_must_leave_training_images(registry, tmp_path):
    write_mnist(tmp_path, "MNIST", n_train=10, n_test=4, compress=True)
    with pytest.raises(UserError, match="val_size 10 leaves no training images"):
        registry.create("dataset", "mnist", root=str(tmp_path), val_size=10).info()


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "fashion-mnist"])
def test_missing_files_say_how_to_get_them(registry, tmp_path, monkeypatch, name):
    import kdbench_datasets.vision as vision

    monkeypatch.setattr(vision, "debian_fashion_mnist", lambda: None)  # as on a machine without the package
    ds = registry.create("dataset", name, root=str(tmp_path / "nowhere"))
    for call in (ds.info, ds.load):
        with pytest.raises(UserError, match="pass download: true") as err:
            call()
        assert str(tmp_path / "nowhere") in str(err.value)
    if name == "fashion-mnist":
        assert "apt-get install dataset-fashion-mnist" in str(err.value)


def test_fashion_mnist_from_the_debian_package(registry, tmp_path):
    from kdbench_datasets.vision import debian_fashion_mnist

    if not debian_fashion_mnist():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    params = {"root": str(tmp_path), "train_size": 120, "val_size": 60, "test_size": 60}
    assert registry.create("dataset", "fashion-mnist", **params).info().split_sizes == {"train": 120, "val": 60, "test": 60}
    data = check_dataset(registry, "fashion-mnist", params)
    assert (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").stat().st_size == 47040016
    x = data.train.tensors["image"]
    assert abs(float(x.mean())) < 0.2 and 0.8 < float(x.std()) < 1.2  # standardised by the published statistics
    assert len(data.train.tensors["label"].unique()) == 10


# --- CIFAR ------------------------------------------------------------------------------


@pytest.fixture
def no_md5(monkeypatch):
    """torchvision checks the CIFAR pickles against the MD5 sums of the real files;
    our tiny files have other sums, so the sums are set to None (existence only)."""
    import torchvision

    for cls in (torchvision.datasets.CIFAR10, torchvision.datasets.CIFAR100):
        monkeypatch.setattr(cls, "train_list", [[f, None] for f, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[f, None] for f, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": None})


def cifar_batch(n: int, num_classes: int, fine: bool, offset: int) -> dict:
    rng = np.random.default_rng(offset)
    data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
    data[0] = 0
    data[0, :1024] = 255  # a pure red image: channel-first rows, as CIFAR stores them
    labels = [(i + offset) % num_classes for i in range(n)]
    entry = {"batch_label": "testing batch 1 of 1", "data": data, "filenames": [f"img_{i}.png" for i in range(n)]}
    if fine:
        entry.update(fine_labels=labels, coarse_labels=[y // 5 for y in labels])
    else:
        entry["labels"] = labels
    return entry


def write_cifar(root: Path, name: str, per_batch: int, n_test: int) -> None:
    from kdbench_datasets.vision import CIFAR10_CLASSES, CIFAR100_CLASSES

    def dump(path: Path, obj: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(obj, protocol=2))

    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        for i in range(1, 6):
            dump(folder / f"data_batch_{i}", cifar_batch(per_batch, 10, False, i))
        dump(folder / "test_batch", cifar_batch(n_test, 10, False, 0))
        dump(folder / "batches.meta", {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": per_batch, "num_vis": 3072})
    else:
        folder = root / "cifar-100-python"
        dump(folder / "train", cifar_batch(per_batch * 5, 100, True, 1))
        dump(folder / "test", cifar_batch(n_test, 100, True, 0))
        dump(folder / "meta", {"fine_label_names": list(CIFAR100_CLASSES), "coarse_label_names": [f"c{i}" for i in range(20)]})


@pytest.mark.parametrize("name,mean,std", [
    ("cifar10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ("cifar100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
])
def test_cifar_from_python_pickles(registry, tmp_path, no_md5, name, mean, std):
    write_cifar(tmp_path, name, per_batch=4, n_test=6)
    data = check_dataset(registry, name, {"root": str(tmp_path), "val_size": 5})
    assert (len(data.train), len(data.val), len(data.test)) == (15, 5, 6)
    assert data.info.modalities["image"].shape == (3, 32, 32)
    assert data.info.num_classes == (10 if name == "cifar10" else 100)
    red = data.test.tensors["image"][0]  # test image 0 is pure red
    want = torch.tensor([(1 - mean[0]) / std[0], -mean[1] / std[1], -mean[2] / std[2]])
    assert torch.allclose(red[:, 5, 7], want, atol=1e-5)


def test_cifar_augment_gives_a_per_sample_training_split(registry, tmp_path, no_md5):
    write_cifar(tmp_path, "cifar10", per_batch=3, n_test=4)
    params = {"root": str(tmp_path), "val_size": 5, "augment": True}
    assert registry.create("dataset", "cifar10", **params).info().augmented
    data = check_dataset(registry, "cifar10", params)
    assert not isinstance(data.train, TensorSplit) and isinstance(data.val, TensorSplit)
    torch.manual_seed(0)
    views = torch.stack([data.train[0]["image"] for _ in range(8)])
    assert views.shape == (8, 3, 32, 32) and not all(torch.equal(views[0], v) for v in views[1:])  # random crops/flips


def test_cifar_corrupted_files_are_a_user_error(registry, tmp_path):
    write_cifar(tmp_path, "cifar10", per_batch=2, n_test=2)  # MD5 sums of tiny files do not match
    with pytest.raises(UserError, match="could not read"):
        registry.create("dataset", "cifar10", root=str(tmp_path), val_size=2).load()


# --- Speech Commands -----------------------------------------------------------------------


def write_wav(path: Path, freq: float, seconds: float, rate: int = 16000) -> None:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(str(path), 0.5 * np.sin(2 * np.pi * freq * t), rate, subtype="PCM_16")


@pytest.fixture
def speech_root(tmp_path) -> Path:
    """SpeechCommands/speech_commands_v0.02/<word>/<speaker>_nohash_<n>.wav; speaker
    s2 in validation_list.txt, s3 in testing_list.txt (paths relative to the folder)."""
    folder = tmp_path / "SpeechCommands" / "speech_commands_v0.02"
    val, test = [], []
    for w, word in enumerate(["yes", "no", "up", "down"]):
        for s in range(4):
            for n in range(2):
                rel = f"{word}/s{s}_nohash_{n}.wav"
                write_wav(folder / rel, 200.0 * (w + 1), seconds=0.6 + 0.3 * n, rate=8000 if (s, n) == (0, 1) else 16000)
                (val if s == 2 else test if s == 3 else []).append(rel)
    write_wav(folder / "_background_noise_" / "white_noise.wav", 300.0, 2.0)
    (folder / "validation_list.txt").write_text("\n".join(val) + "\n")
    (folder / "testing_list.txt").write_text("\n".join(test) + "\n")
    return tmp_path


def test_speechcommands_logmel_from_the_official_lists(registry, speech_root):
    params = {"root": str(speech_root), "labels": ["yes", "no", "up"]}
    info = registry.create("dataset", "speechcommands", **params).info()
    assert info.split_sizes == {"train": 12, "val": 6, "test": 6}
    assert info.class_names == ("yes", "no", "up")
    data = check_dataset(registry, "speechcommands", params)
    x = data.train.tensors["audio"]
    assert x.shape == (12, 1, 40, 101)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3  # standardised on train
    # the tone of each word sits in a different mel band
    bands = [int(x[data.train.tensors["label"] == y].mean(dim=(0, 1, 3)).argmax()) for y in range(3)]
    assert bands == sorted(bands) and len(set(bands)) == 3


def test_speechcommands_waveforms_and_caps(registry, speech_root):
    from kdbench_datasets.speechcommands import read_clip

    params = {"root": str(speech_root), "labels": "all", "features": "waveform", "train_size": 5, "test_size": 3}
    data = check_dataset(registry, "speechcommands", params)
    assert data.info.class_names == ("down", "no", "up", "yes")  # every word folder, sorted
    assert (len(data.train), len(data.val), len(data.test)) == (5, 8, 3)
    assert data.train.tensors["audio"].shape == (5, 1, 16000)
    short = read_clip(speech_root / "SpeechCommands/speech_commands_v0.02/yes/s1_nohash_0.wav")
    assert short.shape == (16000,) and torch.all(short[9600:] == 0)  # 0.6 s, zero-padded to 1 s
    resampled = read_clip(speech_root / "SpeechCommands/speech_commands_v0.02/yes/s0_nohash_1.wav")
    assert resampled.shape == (16000,) and resampled[:14000].abs().max() > 0.4  # 8 kHz, 0.9 s, resampled


def test_speechcommands_errors(registry, speech_root, tmp_path):
    with pytest.raises(UserError, match="no word folder 'zero'.*labels can be: down, no, up, yes"):
        registry.create("dataset", "speechcommands", root=str(speech_root)).info()  # the digits preset
    with pytest.raises(UserError, match="pass download: true"):
        registry.create("dataset", "speechcommands", root=str(tmp_path / "nowhere")).info()
    with pytest.raises(UserError, match="labels must be"):
        registry.create("dataset", "speechcommands", labels="numbers")


# --- manifest -------------------------------------------------------------------------------


def write_png(path: Path, color: tuple[int, int, int], size: tuple[int, int], mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).convert(mode).save(path)


CAPTIONS = {"bird": "a small red bird sings", "dog": "a big dog, barking loudly", "cat": "the cat sleeps"}
COLORS = {"bird": (220, 30, 30), "dog": (30, 200, 40), "cat": (20, 40, 230)}


def manifest_rows(folder: Path, n_per_class: int = 4, with_split: bool = True) -> list[dict]:
    """Rows with an image (varied sizes and modes), a wav, a caption and a vector."""
    rows = []
    for c, label in enumerate(CAPTIONS):
        for i in range(n_per_class):
            image = f"img/{label}{i}.png"
            write_png(folder / image, COLORS[label], (40 + 8 * i, 30), mode=("RGB", "RGBA", "L")[i % 3])
            clip = f"wav/{label}{i}.wav"
            write_wav(folder / clip, 300.0 * (c + 1), 0.4 + 0.1 * i)
            row = {"photo": image, "clip": clip, "caption": CAPTIONS[label] + (" today" if i == 3 else ""),
                   "feats": [float(c), float(i), 1.0], "label": label}
            if with_split:
                row["split"] = ["train", "train", "val", "test"][i]
            rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()})
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


MODALITIES = {"photo": "image", "clip": "audio", "caption": "text", "feats": "vector"}


@pytest.fixture
def data_dir(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def manifest_params(path: Path, tmp_path: Path, **extra) -> dict:
    return {"path": str(path), "modalities": MODALITIES, "cache_dir": str(tmp_path / "cache"), **extra}


def test_manifest_csv_with_split_column(registry, data_dir, tmp_path):
    path = write_csv(data_dir / "data.csv", manifest_rows(data_dir))
    params = manifest_params(path, tmp_path, image_size=16, max_length=8)
    data = check_dataset(registry, "manifest", params)
    info = data.info
    assert info.class_names == ("bird", "cat", "dog") and info.split_sizes == {"train": 6, "val": 3, "test": 3}
    specs = info.modalities
    assert specs["photo"].shape == (3, 16, 16) and specs["clip"].shape == (1, 40, 101) and specs["feats"].shape == (3,)
    text = specs["caption"]
    assert text.kind == "text" and text.shape == (8,) and text.joiner == " " and text.vocab[:2] == ("", "<unk>")
    assert "today" not in text.vocab  # only in val/test rows: the vocabulary is the training split's
    assert "," in text.vocab and text.vocab_size == len(text.vocab)
    ids = data.test.tensors["caption"][0]  # "a small red bird sings today": 5 known words, then unknown, then padding
    assert " ".join(text.vocab[i] for i in ids[:5]) == "a small red bird sings" and ids[5] == 1 and ids[6:].eq(0).all()
    # images standardised per channel on train: the red class is high in R, low in B
    photo = data.train.tensors["photo"]
    birds = photo[data.train.tensors["label"] == 0]
    assert birds[:, 0].mean() > 0 > birds[:, 2].mean()
    assert torch.allclose(photo.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert data.train.tensors["caption"].dtype == torch.long


def test_manifest_jsonl_split_automatically_and_grey_waveforms(registry, data_dir, tmp_path):
    rows = manifest_rows(data_dir, n_per_class=5, with_split=False)
    path = write_jsonl(data_dir / "data.jsonl", rows)
    params = manifest_params(path, tmp_path, image_channels=1, audio_features="waveform", audio_seconds=0.5,
                             text_level="char", val_fraction=0.2, test_fraction=0.2)
    data = check_dataset(registry, "manifest", params)
    assert data.info.split_sizes == {"train": 9, "val": 3, "test": 3}
    for split in (data.train, data.val, data.test):
        assert len(split.tensors["label"].unique()) == 3  # stratified: every class in every split
    assert data.info.modalities["photo"].shape == (1, 32, 32)
    assert data.train.tensors["clip"].shape == (9, 1, 8000)
    assert data.info.modalities["caption"].joiner == "" and data.info.modalities["caption"].shape == (128,)


def test_manifest_is_decoded_once_and_cached_on_disk(registry, data_dir, tmp_path, monkeypatch):
    import kdbench_datasets.manifest as manifest

    path = write_csv(data_dir / "data.csv", manifest_rows(data_dir, n_per_class=4))
    params = manifest_params(path, tmp_path)
    first = registry.create("dataset", "manifest", **params).load()
    assert list((tmp_path / "cache").glob("*.safetensors"))
    monkeypatch.setattr(manifest, "_LOADED", {})  # a new process
    monkeypatch.setattr(manifest.Manifest, "_decode", lambda self, table: pytest.fail("decoded again"))
    second = registry.create("dataset", "manifest", **params).load()
    for key, value in first.train.tensors.items():
        assert torch.equal(value, second.train.tensors[key])


def test_manifest_errors(registry, data_dir, tmp_path):
    rows = manifest_rows(data_dir, n_per_class=4)

    def fails(rows_or_path, match: str, **extra) -> None:
        path = rows_or_path if isinstance(rows_or_path, Path) else write_csv(data_dir / "m.csv", rows_or_path)
        ds = registry.create("dataset", "manifest", **manifest_params(path, tmp_path, **extra))
        with pytest.raises(UserError, match=match):
            ds.info()
            ds.load()

    fails(data_dir / "absent.csv", "manifest file .*absent.csv not found")
    (data_dir / "m.txt").write_text("label\na\n")
    fails(data_dir / "m.txt", r"unknown format \.txt; use \.csv or \.jsonl")
    fails(rows, "has no column 'kind'", label_column="kind")
    fails([{k: v for k, v in r.items() if k != "caption"} for r in rows], "has no column 'caption'")
    missing = [dict(r) for r in rows]
    missing[4]["photo"] = "img/gone.png"
    fails(missing, r"line 6: photo file 'img/gone.png' not found \(looked for .*img/gone.png\)")
    unseen = [dict(r) for r in rows]
    unseen[2]["label"] = "zebra"  # a val row
    fails(unseen, "line 4: label 'zebra' is in the val split but never in train")
    no_test = [dict(r, split="train" if r["split"] == "test" else r["split"]) for r in rows]
    fails(no_test, "the test split is empty")
    fails([dict(r, split="holdout") for r in rows], "split 'holdout' is not train, val or test")
    ragged = [dict(r) for r in rows]
    ragged[1]["feats"] = [1.0, 2.0]
    fails(ragged, "line 3: vector 'feats' has 2 numbers")
    broken = [dict(r) for r in rows]
    (data_dir / "img" / "broken.png").write_text("not an image")
    broken[0]["photo"] = "img/broken.png"
    fails(broken, r"line 2: cannot read photo image .*broken.png")
    deaf = [dict(r) for r in rows]
    (data_dir / "wav" / "broken.wav").write_bytes(b"RIFF....not audio")
    deaf[1]["clip"] = "wav/broken.wav"
    fails(deaf, r"line 3: cannot read audio file .*broken.wav")
    with pytest.raises(UserError, match="kinds are image, audio, text, vector"):
        registry.create("dataset", "manifest", path="x.csv", modalities={"photo": "picture"})
    (data_dir / "bad.jsonl").write_text('{"label": "a"}\nnot json\n')
    fails(data_dir / "bad.jsonl", "line 2: not JSON", modalities={"label2": "text"})


def test_manifest_labels_sort_numerically(registry, data_dir, tmp_path):
    rows = [{"v": f"{i} {i % 3}", "label": str(y), "split": s}
            for i, (y, s) in enumerate([(2, "train"), (10, "train"), (2, "val"), (10, "test"), (1, "train"), (1, "test")])]
    path = write_csv(data_dir / "n.csv", rows)
    info = registry.create("dataset", "manifest", path=str(path), modalities={"v": "vector"}, cache_dir=None).info()
    assert info.class_names == ("1", "2", "10") and info.modalities["v"].shape == (2,)
    assert info.split_sizes == {"train": 3, "val": 1, "test": 2}
