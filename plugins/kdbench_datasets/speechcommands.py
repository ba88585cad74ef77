"""Google Speech Commands (Warden 2018, arXiv:1804.03209), through torchaudio's
``SPEECHCOMMANDS``: one-second clips of spoken words, 16 kHz.

Source and licence: ``speech_commands_v0.02`` (default; 105,829 clips of 35 words by
2,618 speakers) or ``v0.01`` (64,727 clips, 30 words), from
download.tensorflow.org; CC BY 4.0.

Splits are the official ones: torchaudio's ``subset`` reads ``validation_list.txt``
and ``testing_list.txt`` (speakers never cross splits), ``training`` is the rest;
only clips of the chosen ``labels`` are kept. ``labels`` is a list of words or a
preset: ``digits`` (the default: "zero" .. "nine", 10 classes, about 31k / 3.7k /
4.1k clips in v0.02; it pairs with MNIST and the ``digits`` dataset), ``commands``
(the ten keywords of the classic 12-class task: yes, no, up, down, left, right, on,
off, stop, go; without its "unknown" and "silence" classes) or ``all`` (every word
folder, 35 classes in v0.02). Optional caps take seeded subsets of each split.

torchaudio lists the files and the split; the clips themselves are read with
``soundfile`` (torchaudio's own loading needs torchcodec, which kdbench does not
depend on). Each clip is resampled to 16 kHz if needed, zero-padded at the end or
trimmed to one second, and becomes one modality ``audio``:

- ``features: logmel`` (default): log(mel + 1e-6) of a 25 ms Hann window every 10 ms
  (``n_fft`` 512, ``win_length`` 400, ``hop_length`` 160, ``n_mels`` 40, the front
  end of the keyword-spotting literature), shape (1, n_mels, 101), standardised by
  the training split's mean and std (one scalar each);
- ``features: waveform``: the raw samples, shape (1, 16000), for encoders with their
  own front end (``logmel-cnn``, ``wave-cnn``).

All splits live in memory (:class:`~kdbench.types.TensorSplit`); the runner loads
them once per process.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from kdbench.errors import UserError
from kdbench.types import DatasetInfo, DatasetSplits, ModalitySpec, TensorSplit

DEFAULT_ROOT = "~/.cache/kdbench/data"
SAMPLE_RATE = 16000
VERSIONS = ("speech_commands_v0.02", "speech_commands_v0.01")

PRESETS = {
    "digits": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "commands": ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"),
}
# every word of each release, for ``labels: all`` before the data is there (download: true)
_WORDS_V1 = (
    "bed bird cat dog down eight five four go happy house left marvin nine no off on one right seven "
    "sheila six stop three tree two up wow yes zero".split()
)
ALL_WORDS = {
    "speech_commands_v0.01": tuple(sorted(_WORDS_V1)),
    "speech_commands_v0.02": tuple(sorted(_WORDS_V1 + "backward follow forward learn visual".split())),
}
_SUBSETS = {"train": "training", "val": "validation", "test": "testing"}


class SpeechCommands:
    """Google Speech Commands (Warden 2018) through torchaudio: log-mel audio 1x40x101, or waveforms.

    Args:
        root: folder holding ``SpeechCommands/<version>/`` (torchaudio's layout: one
            folder of ``<speaker>_nohash_<n>.wav`` per word, ``validation_list.txt``,
            ``testing_list.txt``); ``~`` is expanded.
        download: let torchaudio download (2.3 GB for v0.02) and unpack it into ``root``.
        version: ``speech_commands_v0.02`` or ``speech_commands_v0.01``.
        labels: the words to classify, in class order, or a preset: ``digits``,
            ``commands`` or ``all`` (every word folder, sorted). In YAML quote
            'yes', 'no', 'on' and 'off', which YAML otherwise reads as booleans.
        features: ``logmel`` (1, n_mels, frames) or ``waveform`` (1, 16000).
        n_mels: mel bands of the log-mel features.
        train_size: cap on training clips (a seeded subset); null for all.
        val_size: cap on validation clips; null for all.
        test_size: cap on test clips; null for all.
        seed: the data seed (the subsets), not the run seed.
    """

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        download: bool = False,
        version: str = "speech_commands_v0.02",
        labels: list[str] | str = "digits",
        features: str = "logmel",
        n_mels: int = 40,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        seed: int = 0,
    ) -> None:
        if version not in VERSIONS:
            raise UserError(f"speechcommands: version must be one of {', '.join(VERSIONS)}, got {version!r}")
        if features not in ("logmel", "waveform"):
            raise UserError(f"speechcommands: features must be logmel or waveform, got {features!r}")
        if isinstance(labels, str) and labels not in (*PRESETS, "all"):
            raise UserError(
                f"speechcommands: labels must be a list of words or one of {', '.join([*PRESETS, 'all'])}, got {labels!r}"
            )
        if not isinstance(labels, str) and (not labels or len(set(labels)) != len(labels)):
            raise UserError(f"speechcommands: labels must be a non-empty list of distinct words, got {labels!r}")
        if n_mels < 1:
            raise UserError(f"speechcommands: n_mels must be >= 1, got {n_mels}")
        self.root = Path(os.path.expanduser(str(root)))
        self.download = download
        self.version = version
        self.labels = labels
        self.features = features
        self.n_mels = n_mels
        self.caps = {"train": train_size, "val": val_size, "test": test_size}
        for split, cap in self.caps.items():
            if cap is not None and cap < 1:
                raise UserError(f"speechcommands: {split}_size must be >= 1 or null (all), got {cap}")
        self.seed = seed
        self._files: dict[str, list[tuple[Path, int]]] | None = None

    @property
    def folder(self) -> Path:
        return self.root / "SpeechCommands" / self.version

    def _present(self) -> bool:
        return self.folder.is_dir()

    def _check_present(self) -> None:
        if not self._present() and not self.download:
            raise UserError(
                f"speechcommands: no data at {self.folder}; pass download: true to fetch it with torchaudio "
                f"(2.3 GB, needs internet), or unpack {self.version}.tar.gz there, or set root: to the folder "
                f"that holds SpeechCommands/{self.version}/"
            )

    def class_names(self) -> tuple[str, ...]:
        if not isinstance(self.labels, str):
            names = tuple(self.labels)
        elif self.labels in PRESETS:
            names = PRESETS[self.labels]
        elif self._present():
            names = tuple(sorted(p.name for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("_")))
        else:
            names = ALL_WORDS[self.version]
        if self._present():
            unknown = [w for w in names if not (self.folder / w).is_dir()]
            if unknown:
                have = sorted(p.name for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("_"))
                raise UserError(
                    f"speechcommands: no word folder {', '.join(map(repr, unknown))} in {self.folder}; "
                    f"labels can be: {', '.join(have)}"
                )
        return names

    def _file_lists(self) -> dict[str, list[tuple[Path, int]]]:
        """(wav path, class index) of each split, after the label filter and caps."""
        if self._files is not None:
            return self._files
        from torchaudio.datasets import SPEECHCOMMANDS

        names = self.class_names()
        index = {w: i for i, w in enumerate(names)}
        g = torch.Generator().manual_seed(self.seed)
        files = {}
        for split, subset in _SUBSETS.items():
            try:
                ds = SPEECHCOMMANDS(str(self.root), url=self.version, download=self.download and split == "train", subset=subset)
            except Exception as exc:  # a failed download, a missing list file
                raise UserError(f"speechcommands: torchaudio could not read {self.folder}: {exc}") from None
            # get_metadata gives the path relative to <root>/SpeechCommands without reading audio
            chosen = []
            for n in range(len(ds)):
                relpath, _, label, _, _ = ds.get_metadata(n)
                if label in index:
                    chosen.append((self.root / "SpeechCommands" / relpath, index[label]))
            if not chosen:
                raise UserError(f"speechcommands: the {split} split has no clip of {', '.join(names)} in {self.folder}")
            cap = self.caps[split]
            if cap is not None and cap < len(chosen):
                keep = torch.randperm(len(chosen), generator=g)[:cap].sort().values
                chosen = [chosen[i] for i in keep.tolist()]
            files[split] = chosen
        self._files = files
        return files

    def _shape(self) -> tuple[int, ...]:
        if self.features == "waveform":
            return (1, SAMPLE_RATE)
        return (1, self.n_mels, SAMPLE_RATE // 160 + 1)

    def info(self) -> DatasetInfo:
        self._check_present()
        names = self.class_names()
        sizes = {k: len(v) for k, v in self._file_lists().items()} if self._present() else {}
        return DatasetInfo(
            name="speechcommands",
            num_classes=len(names),
            class_names=names,
            modalities={"audio": ModalitySpec("audio", self._shape())},
            split_sizes=sizes,
        )

    def load(self) -> DatasetSplits:
        self._check_present()
        files = self._file_lists()  # downloads first when asked
        labels = {split: torch.tensor([y for _, y in items], dtype=torch.long) for split, items in files.items()}
        feats = {split: self._features([path for path, _ in items]) for split, items in files.items()}
        if self.features == "logmel":
            # standardise with training statistics only: val and test stay unseen
            mean, std = feats["train"].mean(), feats["train"].std().clamp_min(1e-6)
            feats = {split: (f - mean) / std for split, f in feats.items()}
        splits = {split: TensorSplit({"audio": feats[split], "label": labels[split]}) for split in files}
        return DatasetSplits(self.info(), splits["train"], splits["val"], splits["test"])

    def _features(self, paths: list[Path], chunk: int = 1024) -> torch.Tensor:
        # in chunks: the log-mel of 31k clips is 0.5 GB, their waveforms 2 GB
        out = []
        for i in range(0, len(paths), chunk):
            waves = torch.stack([read_clip(p) for p in paths[i : i + chunk]])
            out.append(log_mel(waves, self.n_mels) if self.features == "logmel" else waves.unsqueeze(1))
        return torch.cat(out)


def read_clip(path: Path, seconds: float = 1.0, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """One mono clip as float32 (sample_rate * seconds,): read with soundfile,
    channels averaged, resampled if needed, zero-padded at the end or trimmed."""
    import soundfile

    try:
        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError on bad files
        raise UserError(f"cannot read audio file {path}: {exc}") from None
    wave = torch.from_numpy(data).mean(dim=1)
    if sr != sample_rate:
        import torchaudio

        wave = torchaudio.functional.resample(wave, sr, sample_rate)
    n = int(round(seconds * sample_rate))
    if len(wave) >= n:
        return wave[:n].contiguous()
    return torch.nn.functional.pad(wave, (0, n - len(wave)))


def log_mel(waves: torch.Tensor, n_mels: int = 40, sample_rate: int = SAMPLE_RATE, chunk: int = 2048) -> torch.Tensor:
    """log(mel + 1e-6) of (N, T) waveforms: (N, 1, n_mels, T // hop + 1); 25 ms Hann
    windows every 10 ms."""
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=512, win_length=int(0.025 * sample_rate),
        hop_length=int(0.010 * sample_rate), n_mels=n_mels,
    )
    with torch.no_grad():
        out = [mel(waves[i : i + chunk]) for i in range(0, len(waves), chunk)]
    return torch.log(torch.cat(out) + 1e-6).unsqueeze(1)
