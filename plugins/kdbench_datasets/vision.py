"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100, read by torchvision's own dataset
classes (``torchvision.datasets.MNIST`` ...), so the files on disk are exactly the
ones torchvision downloads and reads.

Sources and licences:

- MNIST (LeCun, Cortes & Burges 1998): 60,000 train / 10,000 test 28x28 grey digits.
  No licence file ships with it; it is commonly redistributed under CC BY-SA 3.0.
- Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747): 60,000 / 10,000
  28x28 grey product photos, 10 classes; MIT licence. Debian ships it as the
  package ``dataset-fashion-mnist``; when it is installed and ``root`` holds no
  Fashion-MNIST, its four ``.gz`` files are unpacked into ``root`` and used (no
  download needed).
- CIFAR-10 / CIFAR-100 (Krizhevsky 2009, "Learning Multiple Layers of Features from
  Tiny Images"): 50,000 / 10,000 32x32 colour images, 10 or 100 (fine) classes; no
  licence stated by the authors.

Every image becomes a float tensor (C, H, W): pixels scaled to [0, 1], then
standardised per channel by the mean and std of the full official training set
(``_STATS`` below: MNIST 0.1307 / 0.3081, as in PyTorch's MNIST example;
Fashion-MNIST 0.2860 / 0.3530, computed from Debian's files; CIFAR-10
(0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616) and CIFAR-100
(0.5071, 0.4865, 0.4409) / (0.2673, 0.2564, 0.2762), the usual published values).
Fixed constants rather than statistics of the subset, so every subset and cap sees
the same input scale.

Splits: ``val`` is ``val_size`` images drawn (seeded) from the official training
set, ``train`` the rest (capped at ``train_size``), ``test`` the official test set
(capped at ``test_size``, a seeded subset). The caps keep small grids small. All
splits live in memory (:class:`~kdbench.types.TensorSplit`), except a CIFAR
training split with ``augment: true``: random 4-pixel-padded 32x32 crops and
horizontal flips (the standard CIFAR recipe of He et al. 2016) need a per-sample
torch Dataset, and make teacher outputs uncacheable (``DatasetInfo.augmented``).

Nothing is downloaded unless ``download: true``; with the default ``false`` a
missing file is a :class:`~kdbench.errors.UserError` that says where to put it.
"""

from __future__ import annotations

import functools
import gzip
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch

from kdbench.errors import UserError
from kdbench.types import DatasetInfo, DatasetSplits, ModalitySpec, TensorSplit

DEFAULT_ROOT = "~/.cache/kdbench/data"

# Per-channel mean and std of each training set, pixels in [0, 1].
_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The fine label names of CIFAR-100 in label order (its meta file lists them sorted).
CIFAR100_CLASSES = tuple(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel "
    "can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur "
    "dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion "
    "lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree "
    "pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea "
    "seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table "
    "tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman "
    "worm".split()
)


class _ImageDataset:
    """What the four datasets share: root, download, the seeded split and caps."""

    name = ""
    tv_class = ""  # the torchvision.datasets class name
    class_names: tuple[str, ...] = ()
    shape: tuple[int, int, int] = (1, 28, 28)
    official_sizes = (60000, 10000)  # train, test

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        download: bool = False,
        val_size: int = 5000,
        train_size: int | None = None,
        test_size: int | None = None,
        seed: int = 0,
    ) -> None:
        if val_size < 1:
            raise UserError(f"{self.name}: val_size must be >= 1, got {val_size}")
        for key, value in (("train_size", train_size), ("test_size", test_size)):
            if value is not None and value < 1:
                raise UserError(f"{self.name}: {key} must be >= 1 or null (all), got {value}")
        self.root = Path(os.path.expanduser(str(root)))
        self.download = download
        self.val_size, self.train_size, self.test_size = val_size, train_size, test_size
        self.seed = seed
        self.augment = False

    # --- files -----------------------------------------------------------------

    def missing(self) -> list[str]:
        """The files torchvision needs under ``root`` that are not there."""
        raise NotImplementedError

    def where(self) -> Path:
        """The folder torchvision reads the files from."""
        raise NotImplementedError

    def _check_present(self) -> None:
        if self.download:
            return
        missing = self.missing()
        if missing:
            raise UserError(self._missing_message(missing))

    def _missing_message(self, missing: list[str]) -> str:
        return (
            f"{self.name}: no data at {self.where()} (missing {', '.join(missing)}); pass download: true "
            f"to fetch it with torchvision (needs internet), or put the files there, or set root: to the "
            f"folder that holds {self.where().relative_to(self.root)}/"
        )

    def _prepare(self) -> None:
        """Make the files ready for torchvision (overridden: unpack .gz, Debian)."""

    def _read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (N, C, H, W) and long labels (N,) of one official split."""
        import torchvision

        cls = getattr(torchvision.datasets, self.tv_class)
        try:
            ds = cls(str(self.root), train=train, download=self.download and train)
        except Exception as exc:  # torchvision says RuntimeError; a failed download says URLError/OSError
            raise UserError(
                f"{self.name}: torchvision could not read {self.where()}: {exc}. Delete the folder and pass "
                f"download: true, or put the original files there"
            ) from None
        data = torch.as_tensor(ds.data)
        data = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)  # MNIST (N,H,W); CIFAR (N,H,W,C)
        return data.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long)

    # --- the dataset contract ----------------------------------------------------

    def _sizes(self, n_train: int, n_test: int) -> dict[str, int]:
        if self.val_size >= n_train:
            raise UserError(
                f"{self.name}: val_size {self.val_size} leaves no training images (the training set has "
                f"{n_train}); pass a smaller val_size"
            )
        train = n_train - self.val_size
        return {
            "train": min(train, self.train_size or train),
            "val": self.val_size,
            "test": min(n_test, self.test_size or n_test),
        }

    def _counts(self) -> tuple[int, int]:
        """The official split sizes (cheap; overridden where the files tell)."""
        return self.official_sizes

    def info(self) -> DatasetInfo:
        self._check_present()
        return self._info(self._sizes(*self._counts()))

    def _info(self, sizes: dict[str, int]) -> DatasetInfo:
        return DatasetInfo(
            name=self.name,
            num_classes=len(self.class_names),
            class_names=self.class_names,
            modalities={"image": ModalitySpec("image", self.shape)},
            split_sizes=sizes,
            augmented=self.augment,
        )

    def load(self) -> DatasetSplits:
        self._check_present()
        self._prepare()
        x_train, y_train = self._read(train=True)
        x_test, y_test = self._read(train=False)
        sizes = self._sizes(len(y_train), len(y_test))
        g = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(y_train), generator=g)
        val_idx = order[: self.val_size]
        train_idx = order[self.val_size :][: sizes["train"]]
        test_idx = torch.arange(len(y_test))  # the official test set, in order, unless capped
        if sizes["test"] < len(y_test):
            test_idx = torch.randperm(len(y_test), generator=g)[: sizes["test"]]
        mean, std = (torch.tensor(v).view(-1, 1, 1) for v in _STATS[self.name])

        def split(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> TensorSplit:
            # Subset first, then convert: 60,000 float images would be 4x the uint8 memory.
            return TensorSplit({"image": _normalise(x[idx], mean, std), "label": y[idx]})

        if self.augment:
            train: Any = AugmentedImages(x_train[train_idx], y_train[train_idx], mean, std)
        else:
            train = split(x_train, y_train, train_idx)
        return DatasetSplits(self._info(sizes), train, split(x_train, y_train, val_idx), split(x_test, y_test, test_idx))


def _normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x.float().div_(255.0) - mean) / std


class AugmentedImages(torch.utils.data.Dataset):
    """A training split with the standard CIFAR augmentation: zero-pad by ``pad``
    pixels, take a random crop of the original size, flip horizontally with
    probability 1/2, then standardise. Randomness comes from torch's global
    generator, which the trainer seeds."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, pad: int = 4) -> None:
        self.images, self.labels = images, labels  # uint8 (N, C, H, W): 4x smaller than floats
        self.mean, self.std, self.pad = mean, std, pad

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        img = self.images[i]
        _, h, w = img.shape
        padded = torch.nn.functional.pad(img, (self.pad,) * 4)
        top, left = (int(v) for v in torch.randint(0, 2 * self.pad + 1, (2,)))
        img = padded[:, top : top + h, left : left + w]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        return {"image": _normalise(img, self.mean, self.std), "label": self.labels[i]}


# --- MNIST and Fashion-MNIST: idx files under <root>/<ClassName>/raw/ ------------------


class _IdxDataset(_ImageDataset):
    def where(self) -> Path:
        return self.root / self.tv_class / "raw"

    def _legacy(self) -> bool:
        # torchvision still reads the processed/training.pt + test.pt of its old versions
        processed = self.root / self.tv_class / "processed"
        return (processed / "training.pt").is_file() and (processed / "test.pt").is_file()

    def missing(self) -> list[str]:
        if self._legacy():
            return []
        raw = self.where()
        return [f for f in _IDX_FILES if not (raw / f).is_file() and not (raw / f"{f}.gz").is_file()]

    def _prepare(self) -> None:
        # torchvision reads the idx files uncompressed and only unpacks the .gz files
        # it downloads itself; unpack .gz files that were put there by hand.
        raw = self.where()
        for f in _IDX_FILES:
            if not (raw / f).is_file() and (raw / f"{f}.gz").is_file():
                _gunzip(raw / f"{f}.gz", raw / f)

    def _counts(self) -> tuple[int, int]:
        # The idx headers hold the counts: 8 bytes read, not 50 MB.
        raw = self.where()
        counts = []
        for f in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
            n = _idx_count(raw / f) if (raw / f).is_file() else _idx_count(raw / f"{f}.gz") if (raw / f"{f}.gz").is_file() else None
            counts.append(n)
        if None in counts:
            return self.official_sizes
        return counts[0], counts[1]


def _idx_count(path: Path) -> int | None:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            header = f.read(8)
    except OSError:
        return None
    return int.from_bytes(header[4:8], "big") if len(header) == 8 else None


def _gunzip(src: Path, dst: Path) -> None:
    """Unpack ``src`` to ``dst`` atomically (parallel workers may race here)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        os.replace(tmp, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot unpack {src} to {dst}: {exc}; pass a writable root:") from None


class MNIST(_IdxDataset):
    """MNIST handwritten digits (LeCun et al. 1998) through torchvision: image 1x28x28.

    Args:
        root: folder holding ``MNIST/raw/`` (torchvision's layout: the four idx files,
            uncompressed or ``.gz``); ``~`` is expanded.
        download: let torchvision download the files into ``root`` when missing.
        val_size: images held out from the official training set for validation.
        train_size: cap on the training images (a seeded subset); null for all.
        test_size: cap on the official test images (a seeded subset); null for all.
        seed: the data seed (validation split and subsets), not the run seed.
    """

    name = "mnist"
    tv_class = "MNIST"
    class_names = tuple(str(i) for i in range(10))


class FashionMNIST(_IdxDataset):
    """Fashion-MNIST (Xiao et al. 2017) through torchvision, or Debian's dataset-fashion-mnist: image 1x28x28.

    When ``root`` holds no Fashion-MNIST and the Debian package ``dataset-fashion-mnist``
    is installed (its files found with ``dpkg -L``), its ``.gz`` files are unpacked into
    ``<root>/FashionMNIST/raw/``, where torchvision reads them: the same files as the
    download, without the network.

    Args:
        root: folder holding ``FashionMNIST/raw/`` (the four idx files, uncompressed
            or ``.gz``); ``~`` is expanded.
        download: let torchvision download the files into ``root`` when missing and
            the Debian package is not installed.
        val_size: images held out from the official training set for validation.
        train_size: cap on the training images (a seeded subset); null for all.
        test_size: cap on the official test images (a seeded subset); null for all.
        seed: the data seed (validation split and subsets), not the run seed.
    """

    name = "fashion-mnist"
    tv_class = "FashionMNIST"
    class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

    def missing(self) -> list[str]:
        missing = super().missing()
        return [] if missing and debian_fashion_mnist() else missing

    def _missing_message(self, missing: list[str]) -> str:
        return super()._missing_message(missing) + " (or: apt-get install dataset-fashion-mnist)"

    def _prepare(self) -> None:
        if super().missing():
            debian = debian_fashion_mnist()
            if debian:  # the same files as the download: preferred even with download: true
                raw = self.where()
                try:
                    raw.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise UserError(f"fashion-mnist: cannot create {raw} for Debian's files: {exc}; pass a writable root:") from None
                for f in _IDX_FILES:
                    if not (raw / f).is_file():
                        _gunzip(debian[f], raw / f)
        super()._prepare()

    def _counts(self) -> tuple[int, int]:
        return self.official_sizes if super().missing() else super()._counts()


@functools.lru_cache(maxsize=1)
def debian_fashion_mnist() -> dict[str, Path] | None:
    """The four ``.gz`` files of Debian's ``dataset-fashion-mnist``, by idx name, or
    None when the package is not installed (``dpkg -L`` lists its files)."""
    if shutil.which("dpkg") is None:
        return None
    try:
        listing = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if listing.returncode != 0:
        return None
    found = {}
    for line in listing.stdout.splitlines():
        path = Path(line.strip())
        if path.name.endswith(".gz") and path.name[:-3] in _IDX_FILES and path.is_file():
            found[path.name[:-3]] = path
    return found if len(found) == len(_IDX_FILES) else None


# --- CIFAR: python pickles under <root>/cifar-10-batches-py or cifar-100-python --------


class _CifarDataset(_ImageDataset):
    shape = (3, 32, 32)
    official_sizes = (50000, 10000)

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        download: bool = False,
        val_size: int = 5000,
        train_size: int | None = None,
        test_size: int | None = None,
        seed: int = 0,
        augment: bool = False,
    ) -> None:
        super().__init__(root, download, val_size, train_size, test_size, seed)
        self.augment = augment

    def _tv(self) -> Any:
        import torchvision

        return getattr(torchvision.datasets, self.tv_class)

    def where(self) -> Path:
        return self.root / self._tv().base_folder

    def missing(self) -> list[str]:
        cls = self._tv()
        files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return [f for f in files if not (self.where() / f).is_file()]


class CIFAR10(_CifarDataset):
    """CIFAR-10 (Krizhevsky 2009) through torchvision: image 3x32x32, 10 classes.

    Args:
        root: folder holding ``cifar-10-batches-py/`` (torchvision's layout: the
            python pickles ``data_batch_1..5``, ``test_batch``, ``batches.meta``,
            checked against their MD5 sums by torchvision); ``~`` is expanded.
        download: let torchvision download and unpack the archive into ``root``.
        val_size: images held out from the official training set for validation.
        train_size: cap on the training images (a seeded subset); null for all.
        test_size: cap on the official test images (a seeded subset); null for all.
        seed: the data seed (validation split and subsets), not the run seed.
        augment: random padded crops and horizontal flips of the training images
            (a per-sample split; teacher outputs are then not cached).
    """

    name = "cifar10"
    tv_class = "CIFAR10"
    class_names = CIFAR10_CLASSES


class CIFAR100(_CifarDataset):
    """CIFAR-100 (Krizhevsky 2009) through torchvision: image 3x32x32, 100 fine classes.

    Args:
        root: folder holding ``cifar-100-python/`` (torchvision's layout: the python
            pickles ``train``, ``test``, ``meta``, checked against their MD5 sums by
            torchvision); ``~`` is expanded.
        download: let torchvision download and unpack the archive into ``root``.
        val_size: images held out from the official training set for validation.
        train_size: cap on the training images (a seeded subset); null for all.
        test_size: cap on the official test images (a seeded subset); null for all.
        seed: the data seed (validation split and subsets), not the run seed.
        augment: random padded crops and horizontal flips of the training images
            (a per-sample split; teacher outputs are then not cached).
    """

    name = "cifar100"
    tv_class = "CIFAR100"
    class_names = CIFAR100_CLASSES
