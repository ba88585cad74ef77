"""Tri-modal digits: the same ten classes seen, heard and read, offline.

An AV-MNIST-style task (Vielzeuf et al. 2018, "CentralNet: a Multilayer Approach
for Multimodal Fusion") built only from data that ships with a plain install:

- ``image`` (1, 8, 8): scikit-learn's ``load_digits`` (1797 real handwritten digits
  from the UCI "Optical Recognition of Handwritten Digits" data, Alpaydin & Kaynak
  1998, CC BY 4.0; shipped with scikit-learn, BSD-3), pixel counts 0..16 scaled to
  [0, 1], then degraded: ``image_mask`` of the pixels zeroed, Gaussian noise of std
  ``image_noise`` added (values leave [0, 1]). The 1797 rows are partitioned,
  stratified and seeded, 60/15/25 % into train/val/test pools.
- ``audio``: the digit word spoken by espeak-ng, synthesised once by
  ``scripts/make_digits_audio.py`` and shipped as ``data/digits_audio.npz``
  (600 utterances, 8 kHz, 0.8 s: 60 voices = 20 speaker variants x 3 accents each,
  seeded rate and pitch). The split is by speaker variant, so **test voices are
  never heard in training**: test variants m4, f3, klatt3, Annie (120 utterances);
  validation m6, f5, Andy (90); train the other 13 (390: m1-m3, m5, m7, f1, f2, f4,
  klatt, croak, steph, zac, Alicia). The eight accents (en-gb, en-us,
  en-gb-scotland, en-gb-x-rp, en-gb-x-gbclan, en-gb-x-gbcwmd, en-029, en-us-nyc)
  all occur in train and in test. Each sample draws an utterance of its label and
  augments it (seeded): speed perturbation x0.9-1.1, gain +-6 dB, a random onset
  in the window, then white noise at ``audio_noise`` dB SNR (relative to the
  speech's RMS; the default -5 dB is noise louder than the word). Given to models as a
  log-mel spectrogram (torchaudio ``MelSpectrogram``: 256-point FFT, hop 128 = 16 ms,
  ``n_mels`` bands, log, standardised with the train split's mean and std), shape
  (1, n_mels, 51), or with ``audio="wave"`` as the waveform (1, 6400).
- ``text`` (``text_length``,): the digit written as a word in lower, Title or UPPER
  case ("seven"), a numeral ("7") or a Roman numeral ("VII"; zero is "N", *nulla*),
  each character hit by a typo with probability ``text_noise`` (dropped, doubled,
  swapped with the next, or replaced by a random character), then tokenised by
  character (id 0 is padding; ``vocab`` maps ids back to characters).

Pairing is by label only: a sample of class y draws an image, an utterance and a text
of class y independently (AV-MNIST pairs the same way), so the modalities carry
independent evidence about y and fusion helps. Labels are balanced in every split.
Everything is a function of the data ``seed`` (each modality has its own random
stream, so leaving one out does not change the others).

The defaults make every modality clearly imperfect alone while their fusion is
clearly better. Test accuracy measured with the defaults (3000/600/1000 samples, data
seed 0): a logistic regression per modality (standardised pixels, log-mel bins,
character counts) and their product of experts; kdbench networks trained alone
(``cnn`` width 16 depth 4, ``bow`` dim 64; Adam 3e-3, cosine, 12 epochs, batch 64,
best validation epoch, one seed):

=========================  ===================  ==========================
modality                   logistic regression  network
=========================  ===================  ==========================
image                      0.66                 0.66 (cnn)
audio (log-mel, -5 dB)     0.40                 0.84 (cnn)
text (characters)          0.67                 0.67 (bow)
all three                  0.87 (product)       0.92 concat, 0.93 late
=========================  ===================  ==========================

The ``cnn`` pools globally after its last stage, so on the log-mel it needs depth 4
(pooling to 4 x 7 first) to keep where a sound is in frequency and time: at depth 2
it reaches about 0.2 on the audio alone.

``real=True`` replaces the test split's audio by the ten human recordings of
Debian's ``asterisk-core-sounds-en-wav`` (``en_US_f_Allison/digits/0.wav`` ..
``9.wav``: Allison Smith, one American female voice, 8 kHz, CC BY-SA 3.0),
augmented and noised as above to make ``test_size`` samples: a synthetic-to-real
test. Validation stays synthetic, so selection never sees them. The gap is large;
measured with the audio-only cnn above (trained on synthetic voices,
same model for both columns):

=================  ========================  =====================
``audio_noise``    synthetic, unseen voices  real (Allison)
=================  ========================  =====================
None (clean)       1.00                      0.71
0 dB               0.94                      0.59
-5 dB (default)    0.84                      0.55
=================  ========================  =====================

Ten recordings of one speaker make a narrow test (each accuracy is mostly decided by
a handful of words), so read it as a sign of the gap, not a measure of it.
"""

from __future__ import annotations

import functools
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.errors import UserError
from kdbench.types import DatasetInfo, DatasetSplits, ModalitySpec, TensorSplit

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ROMAN = ("N", "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX")
TEXT_FORMS = ("word", "numeral", "roman")
MODALITIES = ("image", "audio", "text")
# Characters, id 0 is padding: every character a form or a typo can produce.
VOCAB = ("", *"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_CHAR_ID = {c: i for i, c in enumerate(VOCAB) if c}

AUDIO_FILE = Path(__file__).resolve().parent / "data" / "digits_audio.npz"
# Where Debian's asterisk-core-sounds-en-wav puts Allison's digits (the en/ path is
# the package's language link); the first folder holding 0.wav .. 9.wav is used.
ASTERISK_DIRS = (
    "/usr/share/asterisk/sounds/en_US_f_Allison/digits",
    "/usr/share/asterisk/sounds/en/digits",
)
SAMPLE_RATE = 8000
N_FFT, HOP = 256, 128
SPEECH_RMS = 0.1
IMAGE_FRACTIONS = (0.60, 0.15, 0.25)  # train / val / test pools of the 1797 images
SPLITS = ("train", "val", "test")

# One process trains many runs on the same data: load (and compute log-mels) once.
# A few variants at most are kept (a grid rarely has more); the oldest goes first.
_CACHE: dict[Any, dict[str, dict[str, torch.Tensor]]] = {}
_CACHE_SIZE = 4


def clear_cache() -> None:
    """Forget the splits computed in this process (tests use it)."""
    _CACHE.clear()


class Digits:
    """Tri-modal spoken/written/handwritten digits (scikit-learn digits, espeak-ng speech, text), offline.

    Args:
        modalities: a subset of ``image``, ``audio``, ``text`` (default: all three).
        train_size, val_size, test_size: samples per split (labels balanced).
        seed: the data seed: image pools, pairing, augmentation, noise and typos.
        image_noise: std of the Gaussian noise added to the [0, 1] image.
        image_mask: fraction of the 64 pixels zeroed in every image.
        audio: ``logmel`` (1, n_mels, frames) or ``wave`` (1, samples).
        audio_noise: signal-to-noise ratio of the added white noise, in dB; ``None``
            adds none.
        audio_augment: speed (x0.9-1.1), gain (+-6 dB) and onset perturbation.
        n_mels: mel bands of the log-mel spectrogram.
        text_noise: per-character typo probability.
        text_forms: which of ``word``, ``numeral``, ``roman`` a text is drawn from.
        text_length: tokens per text (padded with id 0, longer texts cut).
        real: test audio from the ten human recordings of Debian's
            ``asterisk-core-sounds-en-wav`` instead of unseen synthetic voices.
        real_root: a folder holding ``0.wav`` .. ``9.wav`` to use for ``real``
            instead of the Debian package's.
        audio_file: an archive written by ``scripts/make_digits_audio.py`` (default:
            the one shipped with kdbench).
    """

    def __init__(
        self,
        modalities: list[str] | None = None,
        train_size: int = 3000,
        val_size: int = 600,
        test_size: int = 1000,
        seed: int = 0,
        image_noise: float = 0.3,
        image_mask: float = 0.3,
        audio: str = "logmel",
        audio_noise: float | None = -5.0,
        audio_augment: bool = True,
        n_mels: int = 32,
        text_noise: float = 0.5,
        text_forms: list[str] | None = None,
        text_length: int = 12,
        real: bool = False,
        real_root: str | None = None,
        audio_file: str | None = None,
    ) -> None:
        self.modalities = list(modalities or MODALITIES)
        for m in self.modalities:
            if m not in MODALITIES:
                raise UserError(f"digits has no modality {m!r}; choose from {', '.join(MODALITIES)}")
        if len(set(self.modalities)) != len(self.modalities):
            raise UserError(f"digits: modalities {self.modalities} list one twice")
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        for split, n in self.sizes.items():
            if n < 1:
                raise UserError(f"digits: {split}_size must be >= 1, got {n}")
        if audio not in ("logmel", "wave"):
            raise UserError(f"digits: audio must be 'logmel' or 'wave', got {audio!r}")
        if not 0.0 <= image_mask < 1.0:
            raise UserError(f"digits: image_mask is a fraction of pixels in [0, 1), got {image_mask}")
        if image_noise < 0:
            raise UserError(f"digits: image_noise is a standard deviation >= 0, got {image_noise}")
        if not 0.0 <= text_noise <= 1.0:
            raise UserError(f"digits: text_noise is a probability in [0, 1], got {text_noise}")
        self.text_forms = list(text_forms or TEXT_FORMS)
        bad = [f for f in self.text_forms if f not in TEXT_FORMS]
        if bad or not self.text_forms:
            raise UserError(f"digits: text_forms must be a non-empty subset of {', '.join(TEXT_FORMS)}, got {self.text_forms}")
        if text_length < 4:
            raise UserError(f"digits: text_length must be >= 4 (a Roman VIII), got {text_length}")
        if n_mels < 1:
            raise UserError(f"digits: n_mels must be >= 1, got {n_mels}")
        if real and "audio" not in self.modalities:
            raise UserError("digits: real=True replaces the test audio; add 'audio' to modalities or drop real")
        self.seed = seed
        self.image_noise, self.image_mask = image_noise, image_mask
        self.audio, self.audio_noise, self.audio_augment, self.n_mels = audio, audio_noise, audio_augment, n_mels
        self.text_noise, self.text_length = text_noise, text_length
        self.real, self.real_root = real, real_root
        self.audio_file = Path(audio_file) if audio_file else AUDIO_FILE

    # -- info ---------------------------------------------------------------

    def info(self) -> DatasetInfo:
        specs = {}
        for m in self.modalities:
            if m == "image":
                specs[m] = ModalitySpec("image", (1, 8, 8))
            elif m == "audio":
                length = _archive_length(self.audio_file)
                shape = (1, length) if self.audio == "wave" else (1, self.n_mels, length // HOP + 1)
                specs[m] = ModalitySpec("audio", shape)
            else:
                specs[m] = ModalitySpec("text", (self.text_length,), vocab_size=len(VOCAB), vocab=VOCAB, joiner="")
        return DatasetInfo(
            name="digits",
            num_classes=10,
            class_names=WORDS,
            modalities=specs,
            split_sizes=dict(self.sizes),
        )

    # -- load ---------------------------------------------------------------

    def load(self) -> DatasetSplits:
        info = self.info()
        key = self._cache_key()
        if key not in _CACHE:
            while len(_CACHE) >= _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = self._build()
        built = _CACHE[key]
        splits = [TensorSplit(dict(built[s])) for s in SPLITS]
        return DatasetSplits(info, *splits)

    def _cache_key(self) -> tuple:
        params = (tuple(self.modalities), tuple(sorted(self.sizes.items())), self.seed, self.image_noise,
                  self.image_mask, self.audio, self.audio_noise, self.audio_augment, self.n_mels, self.text_noise,
                  tuple(self.text_forms), self.text_length, self.real, self.real_root)
        stamp = self.audio_file.stat().st_mtime_ns if "audio" in self.modalities and self.audio_file.exists() else None
        return (*params, str(self.audio_file), stamp)

    def _rng(self, split: str, stream: int) -> np.random.Generator:
        """An independent random stream per (seed, split, stream)."""
        return np.random.default_rng([self.seed, SPLITS.index(split), stream])

    def _build(self) -> dict[str, dict[str, torch.Tensor]]:
        out: dict[str, dict[str, torch.Tensor]] = {}
        labels = {}
        for split in SPLITS:
            n = self.sizes[split]
            labels[split] = self._rng(split, 0).permutation(np.arange(n) % 10)
            out[split] = {"label": torch.from_numpy(labels[split]).long()}
        if "image" in self.modalities:
            pixels, _ = _load_sklearn_digits()
            pools = image_pools(self.seed)
            for split in SPLITS:
                out[split]["image"] = self._images(pixels, pools[split], labels[split], self._rng(split, 1))
        if "audio" in self.modalities:
            archive = _read_archive(self.audio_file)
            waves = {}
            for split in SPLITS:
                if split == "test" and self.real:
                    pool = _real_recordings(self.real_root)
                else:
                    keep = archive["split"] == split
                    if not keep.any():
                        raise UserError(f"digits: {self.audio_file} has no {split} utterances; regenerate it with "
                                        "scripts/make_digits_audio.py")
                    pool = [(int(y), archive["audio"][i, : archive["length"][i]].astype(np.float32) / 32767)
                            for i, y in zip(np.flatnonzero(keep), archive["label"][keep])]
                waves[split] = self._waves(pool, labels[split], archive["audio"].shape[1], self._rng(split, 2))
            if self.audio == "wave":
                for split in SPLITS:
                    out[split]["audio"] = waves[split].unsqueeze(1)
            else:
                mels = {split: self._logmel(waves[split]) for split in SPLITS}
                mean, std = mels["train"].mean(), mels["train"].std()
                for split in SPLITS:
                    out[split]["audio"] = ((mels[split] - mean) / std).unsqueeze(1)
        if "text" in self.modalities:
            for split in SPLITS:
                out[split]["text"] = self._texts(labels[split], self._rng(split, 3))
        return out

    def _images(self, pixels: np.ndarray, pool: dict[int, np.ndarray], labels: np.ndarray,
                rng: np.random.Generator) -> torch.Tensor:
        n = len(labels)
        rows = [pool[y][rng.integers(len(pool[y]))] for y in labels]
        x = pixels[rows].astype(np.float32) / 16.0
        masked = round(self.image_mask * 64)
        if masked:
            order = rng.random((n, 64)).argsort(axis=1)[:, :masked]
            np.put_along_axis(x, order, 0.0, axis=1)
        x = x + self.image_noise * rng.standard_normal(x.shape).astype(np.float32)
        return torch.from_numpy(x.reshape(n, 1, 8, 8))

    def _waves(self, pool: list[tuple[int, np.ndarray]], labels: np.ndarray, length: int,
               rng: np.random.Generator) -> torch.Tensor:
        by_label: dict[int, list[np.ndarray]] = {}
        for y, wave in pool:
            by_label.setdefault(y, []).append(wave)
        n = len(labels)
        pick, onset = rng.random(n), rng.random(n)
        factor = rng.uniform(0.9, 1.1, n)  # Kaldi-style speed perturbation: tempo and pitch together
        gain = 10 ** (rng.uniform(-6.0, 6.0, n) / 20) if self.audio_augment else np.ones(n)
        out = np.zeros((n, length), dtype=np.float32)
        for i, y in enumerate(labels):
            choices = by_label[int(y)]
            wave = choices[int(pick[i] * len(choices))]
            wave = wave * (gain[i] * SPEECH_RMS / max(float(np.sqrt(np.mean(wave**2))), 1e-8))
            start = 0
            if self.audio_augment:
                wave = np.interp(np.arange(0, len(wave) - 1, factor[i]), np.arange(len(wave)), wave)[:length]
                start = int(onset[i] * (length - len(wave) + 1))
            wave = wave[:length]
            out[i, start : start + len(wave)] = wave
        if self.audio_noise is not None:
            scale = (gain * SPEECH_RMS / 10 ** (self.audio_noise / 20)).astype(np.float32)
            out += scale[:, None] * rng.standard_normal((n, length), dtype=np.float32)
        return torch.from_numpy(out)

    def _logmel(self, waves: torch.Tensor) -> torch.Tensor:
        import torchaudio

        mel = torchaudio.transforms.MelSpectrogram(sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP,
                                                   n_mels=self.n_mels, f_min=20.0, f_max=SAMPLE_RATE / 2)
        with torch.no_grad():
            return torch.log(mel(waves) + 1e-6)

    def _texts(self, labels: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        ids = np.zeros((len(labels), self.text_length), dtype=np.int64)
        for i, y in enumerate(labels):
            text = typos(render(int(y), self.text_forms[rng.integers(len(self.text_forms))], rng), self.text_noise, rng)
            codes = [_CHAR_ID[c] for c in text[: self.text_length]]
            ids[i, : len(codes)] = codes
        return torch.from_numpy(ids)


# -- text -------------------------------------------------------------------


def render(digit: int, form: str, rng: np.random.Generator) -> str:
    """The digit written in ``form``: a word (lower, Title or UPPER case), a numeral or a Roman numeral."""
    if form == "numeral":
        return str(digit)
    if form == "roman":
        return ROMAN[digit]
    word = WORDS[digit]
    return (word, word.title(), word.upper())[rng.integers(3)]


def typos(text: str, rate: float, rng: np.random.Generator) -> str:
    """Hit each character with probability ``rate`` by a typo: drop it, double it,
    swap it with the next one (the last character is replaced instead), or replace
    it by a random character of the vocabulary. Never empty: a text that loses every
    character becomes one random character (pure noise)."""
    chars, out, i = list(text), [], 0
    while i < len(chars):
        c = chars[i]
        if rng.random() < rate:
            kind = rng.integers(4)
            if kind == 1:
                out += [c, c]
            elif kind == 2 and i + 1 < len(chars):
                out += [chars[i + 1], c]
                i += 1
            elif kind == 3 or kind == 2:
                out.append(VOCAB[1 + rng.integers(len(VOCAB) - 1)])
            # kind 0: dropped
        else:
            out.append(c)
        i += 1
    return "".join(out) or VOCAB[1 + rng.integers(len(VOCAB) - 1)]


def decode(ids: torch.Tensor | list[int]) -> str:
    """Token ids back to the text (padding dropped)."""
    return "".join(VOCAB[int(i)] for i in ids)


def forms(digit: int) -> set[str]:
    """Every noise-free text of ``digit``."""
    w = WORDS[digit]
    return {w, w.title(), w.upper(), str(digit), ROMAN[digit]}


# -- images -----------------------------------------------------------------


def image_pools(seed: int) -> dict[str, dict[int, np.ndarray]]:
    """Row indices into the 1797 scikit-learn digits by split and class: each class
    partitioned 60/15/25 % (seeded) into train/val/test, so no image is in two splits."""
    _, target = _load_sklearn_digits()
    rng = np.random.default_rng([seed, 99])
    pools: dict[str, dict[int, np.ndarray]] = {s: {} for s in SPLITS}
    for y in range(10):
        rows = rng.permutation(np.flatnonzero(target == y))
        a = round(IMAGE_FRACTIONS[0] * len(rows))
        b = a + round(IMAGE_FRACTIONS[1] * len(rows))
        pools["train"][y], pools["val"][y], pools["test"][y] = rows[:a], rows[a:b], rows[b:]
    return pools


@functools.lru_cache(maxsize=1)
def _load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """``sklearn.datasets.load_digits()``'s pixels (N, 64) and targets (N,).

    Importing scikit-learn takes seconds (it pulls in scipy), so the CSV that
    ``load_digits`` parses is read directly from the installed package when it is
    where scikit-learn keeps it; otherwise ``load_digits`` is called.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise UserError("the digits dataset needs scikit-learn for its images: pip install scikit-learn")
    for folder in spec.submodule_search_locations or ():
        csv = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            table = np.loadtxt(csv, delimiter=",")
            return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target


# -- audio ------------------------------------------------------------------


def _archive_length(path: Path) -> int:
    """Samples per utterance, read from the .npy header inside the archive (cheap)."""
    _check_archive(path)
    with zipfile.ZipFile(path) as z, z.open("audio.npy") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = read_header(f)
    return int(shape[1])


def _check_archive(path: Path) -> None:
    if not path.exists():
        raise UserError(
            f"digits: the spoken-digit archive {path} is missing; reinstall kdbench, or write it with "
            "`python scripts/make_digits_audio.py --out <file>` (needs espeak-ng) and pass audio_file"
        )


def _read_archive(path: Path) -> dict[str, np.ndarray]:
    _check_archive(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in ("audio", "label", "length", "split")}
        if int(z["sample_rate"]) != SAMPLE_RATE:
            raise UserError(f"digits: {path} is at {int(z['sample_rate'])} Hz, not {SAMPLE_RATE}; regenerate it")
    return arrays


def archive_settings(path: Path = AUDIO_FILE) -> dict[str, Any]:
    """How an archive was generated (the make_digits_audio.py options)."""
    with np.load(path) as z:
        return json.loads(str(z["settings"]))


def find_real_digits(root: str | None = None) -> Path | None:
    """The folder holding the real recordings ``0.wav`` .. ``9.wav``: ``root`` if
    given, else the first of Debian's asterisk-core-sounds-en-wav folders that has them."""
    for folder in [root] if root else ASTERISK_DIRS:
        path = Path(folder)
        if all((path / f"{d}.wav").is_file() for d in range(10)):
            return path
    return None


def _real_recordings(root: str | None) -> list[tuple[int, np.ndarray]]:
    folder = find_real_digits(root)
    if folder is None:
        where = f"real_root={root!r} holds no 0.wav .. 9.wav" if root else "Debian's asterisk-core-sounds-en-wav is not installed"
        raise UserError(
            f"digits: real=True needs ten recordings of spoken digits, but {where}; install them with "
            "`apt-get install asterisk-core-sounds-en-wav`, or set real_root to a folder holding 0.wav .. 9.wav"
        )
    return [(d, trim(read_wav(folder / f"{d}.wav"))) for d in range(10)]


def read_wav(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A wav file as mono float32 at ``sample_rate`` (soundfile reads: torchaudio's
    own loading needs torchcodec; torchaudio's sinc resampler resamples)."""
    try:
        import soundfile as sf
    except ImportError:
        raise UserError("reading wav files needs soundfile: pip install soundfile") from None
    import torchaudio.functional as AF

    wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if sr != sample_rate:
        wave = AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), sr, sample_rate).numpy()
    return wave


def trim(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, floor_db: float = 40.0) -> np.ndarray:
    """Cut the silence around a word: keep from the first to the last 10 ms frame
    whose energy is within ``floor_db`` of the loudest frame's."""
    hop = sample_rate // 100
    n = len(wave) // hop
    if n == 0:
        return wave
    energy = (wave[: n * hop].reshape(n, hop) ** 2).mean(axis=1)
    loud = np.flatnonzero(energy > energy.max() * 10 ** (-floor_db / 10))
    return wave[loud[0] * hop : (loud[-1] + 1) * hop]
