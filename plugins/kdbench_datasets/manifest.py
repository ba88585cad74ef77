"""Your own multimodal data, described by a manifest: a CSV or JSON Lines file with
one row per sample, a ``label`` column, an optional ``split`` column and one column
per modality.

```
photo,clip,caption,label,split
img/001.png,wav/001.wav,a small red bird,bird,train
img/002.jpg,wav/002.wav,"a dog, barking",dog,val
```

``modalities`` maps each column to its kind, e.g. ``{photo: image, clip: audio,
caption: text}``; the column name becomes the modality name (``batch["photo"]``,
taps ``photo.layer1``). Paths are relative to the manifest's folder (absolute ones
and ``~`` work too). What each kind becomes:

- ``image``: decoded by PIL (PNG, JPEG, GIF, WebP, BMP, TIFF; EXIF rotation
  applied), converted to ``image_channels`` (3 RGB or 1 grey), the shorter side
  resized to ``image_size`` (antialiased bilinear) and centre-cropped to a square:
  (C, S, S), pixels in [0, 1] standardised per channel by the training split's
  mean and std.
- ``audio``: read with ``soundfile``, channels averaged, resampled to
  ``sample_rate`` (torchaudio), zero-padded at the end or trimmed to
  ``audio_seconds``; then ``audio_features: logmel`` gives log(mel + 1e-6) with 25
  ms windows every 10 ms and ``n_mels`` bands, (1, n_mels, frames), standardised by
  the training split's mean and std; ``waveform`` gives the samples (1, T).
- ``text``: tokens (``text_level: word``: lower-cased words and punctuation marks;
  ``char``: characters) mapped to ids of a vocabulary built from the training split
  only (tokens seen at least ``min_count`` times, most frequent first, at most
  ``max_vocab``; id 0 pads, id 1 is every unknown token), truncated or padded to
  ``max_length`` (default 32 words or 128 characters). ``ModalitySpec.vocab`` holds
  the tokens, so a pretrained encoder can recover the text.
- ``vector``: a JSON list (``[0.1, 2, 3]``, or a real list in JSONL) or numbers
  separated by spaces or commas; every row the same length; standardised per
  dimension by the training split's mean and std.

Classes are the distinct labels, sorted (numerically when every label is an
integer). Without a ``split`` column the rows are split with a seeded, stratified
draw: ``test_fraction`` and ``val_fraction`` of every class (the first sample of each
class always stays in training). With one, its values are ``train``, ``val`` (or
``validation``, ``valid``, ``dev``) and ``test``.

The manifest is checked when the grid is planned (``info()``): missing file or
column, a referenced file that is not there, an empty split, a label in val or test
that training never sees; each is a :class:`~kdbench.errors.UserError` naming the
line. Decoding happens in ``load()``, once per process; with ``cache_dir`` set the
decoded tensors are also kept on disk (safetensors), keyed by the hash of the
manifest, the parameters and the size and modification time of every file it names.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kdbench.errors import UserError
from kdbench.types import DatasetInfo, DatasetSplits, ModalitySpec, TensorSplit

KINDS = ("image", "audio", "text", "vector")
SPLITS = ("train", "val", "test")
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "dev": "val", "test": "test", "testing": "test"}
_RESERVED = ("label", "index")  # batch keys the trainer uses
_WORD = re.compile(r"\w+|[^\w\s]")
_CACHE_FORMAT = 1  # bump when what load() computes changes: old disk caches are then ignored

# decoded splits, by cache key: every Manifest of the same data shares one load per process
_LOADED: dict[str, DatasetSplits] = {}


@dataclass
class _Row:
    line: int  # where the row is in the manifest, for error messages
    values: dict[str, Any]
    label: int = -1
    split: str = ""


@dataclass
class _Table:
    rows: list[_Row]
    class_names: tuple[str, ...]
    splits: dict[str, list[_Row]]
    vector_dims: dict[str, int] = field(default_factory=dict)
    vocabs: dict[str, tuple[str, ...]] = field(default_factory=dict)


class Manifest:
    """Your own multimodal data: a CSV/JSONL manifest of labels, image and audio paths, text and vectors.

    Args:
        path: the manifest, ``.csv`` or ``.jsonl`` (``~`` expanded; relative to the
            working directory).
        modalities: column -> kind (image | audio | text | vector), e.g.
            ``{photo: image, clip: audio, caption: text}``.
        label_column: the column holding each row's class.
        split_column: the column holding train/val/test; when the manifest has no
            such column, the rows are split with ``val_fraction`` and ``test_fraction``.
        val_fraction: share of every class drawn for validation (no split column).
        test_fraction: share of every class drawn for testing (no split column).
        seed: the data seed (the automatic split), not the run seed.
        image_size: images become ``image_size`` x ``image_size``.
        image_channels: 3 (RGB) or 1 (grey).
        sample_rate: audio is resampled to this rate (Hz).
        audio_seconds: audio is padded or trimmed to this length.
        audio_features: ``logmel`` (1, n_mels, frames) or ``waveform`` (1, samples).
        n_mels: mel bands of the log-mel features.
        text_level: ``word`` or ``char`` tokens.
        max_length: tokens per text (default 32 words or 128 characters).
        lowercase: lower-case text before tokenising.
        min_count: a token enters the vocabulary when seen this often in training.
        max_vocab: at most this many tokens (the most frequent), besides pad and unknown.
        cache_dir: where decoded tensors are kept between processes; null: nowhere.
    """

    def __init__(
        self,
        path: str,
        modalities: dict[str, str],
        label_column: str = "label",
        split_column: str = "split",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        image_size: int = 32,
        image_channels: int = 3,
        sample_rate: int = 16000,
        audio_seconds: float = 1.0,
        audio_features: str = "logmel",
        n_mels: int = 40,
        text_level: str = "word",
        max_length: int | None = None,
        lowercase: bool = True,
        min_count: int = 1,
        max_vocab: int | None = None,
        cache_dir: str | None = "~/.cache/kdbench/manifest",
    ) -> None:
        self.path = Path(os.path.expanduser(str(path)))
        if not modalities:
            raise UserError("manifest: modalities must map at least one column to a kind, e.g. {photo: image}")
        for column, kind in modalities.items():
            if kind not in KINDS:
                raise UserError(f"manifest: column '{column}' has kind {kind!r}; kinds are {', '.join(KINDS)}")
            if column in _RESERVED or column in (label_column, split_column):
                raise UserError(f"manifest: '{column}' cannot be a modality (it names the label, split or index); rename the column")
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise UserError(
                f"manifest: val_fraction and test_fraction must be in [0, 1) with a sum below 1, "
                f"got {val_fraction} and {test_fraction}"
            )
        if image_channels not in (1, 3):
            raise UserError(f"manifest: image_channels must be 1 or 3, got {image_channels}")
        if audio_features not in ("logmel", "waveform"):
            raise UserError(f"manifest: audio_features must be logmel or waveform, got {audio_features!r}")
        if text_level not in ("word", "char"):
            raise UserError(f"manifest: text_level must be word or char, got {text_level!r}")
        for key, value in (("image_size", image_size), ("sample_rate", sample_rate), ("n_mels", n_mels),
                           ("min_count", min_count), ("max_length", max_length or 1), ("max_vocab", max_vocab or 1)):
            if value < 1:
                raise UserError(f"manifest: {key} must be >= 1, got {value}")
        if audio_seconds <= 0:
            raise UserError(f"manifest: audio_seconds must be > 0, got {audio_seconds}")
        self.modalities = dict(modalities)
        self.label_column, self.split_column = label_column, split_column
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        self.image_size, self.image_channels = image_size, image_channels
        self.sample_rate, self.audio_seconds, self.audio_features, self.n_mels = sample_rate, audio_seconds, audio_features, n_mels
        self.text_level, self.lowercase, self.min_count, self.max_vocab = text_level, lowercase, min_count, max_vocab
        self.max_length = max_length or (32 if text_level == "word" else 128)
        self.cache_dir = Path(os.path.expanduser(cache_dir)) if cache_dir else None
        self._table: _Table | None = None

    # --- reading and checking the manifest (cheap: no file is decoded) --------------

    def _where(self, row: _Row) -> str:
        return f"manifest {self.path} line {row.line}"

    def _read_rows(self) -> list[_Row]:
        if not self.path.is_file():
            raise UserError(f"manifest file {self.path} not found; set path: to a .csv or .jsonl file")
        suffix = self.path.suffix.lower()
        rows: list[_Row] = []
        try:
            if suffix == ".csv":
                with open(self.path, newline="", encoding="utf-8-sig") as f:
                    reader = csv.DictReader(f)
                    for values in reader:
                        rows.append(_Row(reader.line_num, {k: v for k, v in values.items() if k is not None}))
                    header = reader.fieldnames or []
            elif suffix in (".jsonl", ".ndjson"):
                with open(self.path, encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        if line.strip():
                            try:
                                values = json.loads(line)
                            except json.JSONDecodeError as exc:
                                raise UserError(f"manifest {self.path} line {n}: not JSON ({exc.msg})") from None
                            if not isinstance(values, dict):
                                raise UserError(f"manifest {self.path} line {n}: each line must be a JSON object")
                            rows.append(_Row(n, values))
                header = sorted({k for r in rows for k in r.values})
            else:
                raise UserError(f"manifest {self.path}: unknown format {suffix or '(no suffix)'}; use .csv or .jsonl")
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise UserError(f"manifest {self.path} cannot be read: {exc}") from None
        if not rows:
            raise UserError(f"manifest {self.path} has no rows")
        for column in (self.label_column, *self.modalities):
            if column not in header:
                raise UserError(
                    f"manifest {self.path} has no column '{column}' (columns: {', '.join(map(str, header))}); "
                    f"fix modalities: or label_column:"
                )
        for row in rows:
            for column in (self.label_column, *self.modalities):
                value = row.values.get(column)
                if column not in row.values or (value is None or value == "") and self.modalities.get(column) != "text":
                    raise UserError(f"{self._where(row)}: no value in column '{column}'")
        return rows

    def _parse(self) -> _Table:
        if self._table is not None:
            return self._table
        rows = self._read_rows()
        labels = sorted({str(r.values[self.label_column]).strip() for r in rows}, key=_label_key)
        index = {name: i for i, name in enumerate(labels)}
        for row in rows:
            row.label = index[str(row.values[self.label_column]).strip()]
        if any(self.split_column in r.values for r in rows):
            for row in rows:
                value = str(row.values.get(self.split_column) or "").strip().lower()
                if value not in _SPLIT_NAMES:
                    raise UserError(
                        f"{self._where(row)}: split {row.values.get(self.split_column)!r} is not train, val or test"
                    )
                row.split = _SPLIT_NAMES[value]
        else:
            self._auto_split(rows)
        splits = {s: [r for r in rows if r.split == s] for s in SPLITS}
        for name, members in splits.items():
            if not members:
                fix = (f"give some rows {self.split_column}: {name}" if any(self.split_column in r.values for r in rows)
                       else f"add rows or raise {name}_fraction" if name != "train" else "lower val_fraction and test_fraction")
                raise UserError(f"manifest {self.path}: the {name} split is empty; {fix}")
        seen = {r.label for r in splits["train"]}
        for row in splits["val"] + splits["test"]:
            if row.label not in seen:
                raise UserError(
                    f"{self._where(row)}: label '{labels[row.label]}' is in the {row.split} split but never in train; "
                    f"every class needs training rows: add some or fix the label"
                )
        table = _Table(rows, tuple(labels), splits)
        for column, kind in self.modalities.items():
            if kind in ("image", "audio"):
                for row in rows:
                    file = self._file(row, column)
                    if not file.is_file():
                        raise UserError(f"{self._where(row)}: {column} file '{row.values[column]}' not found (looked for {file})")
            elif kind == "vector":
                dims = set()
                for row in rows:
                    row.values[column] = vec = self._vector(row, column)
                    dims.add(len(vec))
                    if len(dims) > 1:
                        raise UserError(
                            f"{self._where(row)}: vector '{column}' has {len(vec)} numbers, "
                            f"earlier rows {min(dims - {len(vec)})}"
                        )
                table.vector_dims[column] = dims.pop()
            else:
                table.vocabs[column] = self._vocab([self._tokens(r.values[column]) for r in splits["train"]])
        self._table = table
        return table

    def _auto_split(self, rows: list[_Row]) -> None:
        """A seeded split, stratified by label: rows of each class are shuffled and
        ranked by their position within the class, so every split gets its share
        of every class; the first row of each class stays in training."""
        g = torch.Generator().manual_seed(self.seed)
        by_class: dict[int, list[_Row]] = {}
        for row in rows:
            by_class.setdefault(row.label, []).append(row)
        keyed = []
        for label in sorted(by_class):
            members = by_class[label]
            order = torch.randperm(len(members), generator=g).tolist()
            for rank, i in enumerate(order):
                keyed.append((math.inf if rank == 0 else (rank + 0.5) / len(members), float(torch.rand((), generator=g)), members[i]))
        keyed.sort(key=lambda t: (t[0], t[1]))
        n_test, n_val = round(self.test_fraction * len(rows)), round(self.val_fraction * len(rows))
        for k, (_, _, row) in enumerate(keyed):
            row.split = "test" if k < n_test else "val" if k < n_test + n_val else "train"

    def _file(self, row: _Row, column: str) -> Path:
        return self.path.parent / Path(os.path.expanduser(str(row.values[column]).strip()))

    def _vector(self, row: _Row, column: str) -> list[float]:
        value = row.values[column]
        try:
            if isinstance(value, str):
                text = value.strip()
                value = json.loads(text) if text.startswith("[") else [float(v) for v in re.split(r"[\s,]+", text) if v]
            numbers = [float(v) for v in value]
        except (ValueError, TypeError):
            raise UserError(
                f"{self._where(row)}: vector '{column}' must be a JSON list or numbers separated by spaces, "
                f"got {str(value)[:40]!r}"
            ) from None
        if not numbers or not all(math.isfinite(v) for v in numbers):
            raise UserError(f"{self._where(row)}: vector '{column}' must hold at least one finite number")
        return numbers

    def _tokens(self, text: Any) -> list[str]:
        text = "" if text is None else str(text)
        if self.lowercase:
            text = text.lower()
        return _WORD.findall(text) if self.text_level == "word" else list(text)

    def _vocab(self, texts: list[list[str]]) -> tuple[str, ...]:
        counts = Counter(t for tokens in texts for t in tokens)
        kept = sorted((t for t, c in counts.items() if c >= self.min_count), key=lambda t: (-counts[t], t))
        return ("", "<unk>", *kept[: self.max_vocab])

    # --- the dataset contract ---------------------------------------------------------

    def _spec(self, column: str, kind: str, table: _Table) -> ModalitySpec:
        if kind == "image":
            return ModalitySpec("image", (self.image_channels, self.image_size, self.image_size))
        if kind == "audio":
            samples = int(round(self.audio_seconds * self.sample_rate))
            if self.audio_features == "waveform":
                return ModalitySpec("audio", (1, samples))
            return ModalitySpec("audio", (1, self.n_mels, samples // int(0.010 * self.sample_rate) + 1))
        if kind == "vector":
            return ModalitySpec("vector", (table.vector_dims[column],))
        vocab = table.vocabs[column]
        return ModalitySpec("text", (self.max_length,), vocab_size=len(vocab), vocab=vocab,
                            joiner=" " if self.text_level == "word" else "")

    def info(self) -> DatasetInfo:
        table = self._parse()
        return DatasetInfo(
            name="manifest",
            num_classes=len(table.class_names),
            class_names=table.class_names,
            modalities={c: self._spec(c, k, table) for c, k in self.modalities.items()},
            split_sizes={s: len(rows) for s, rows in table.splits.items()},
        )

    def load(self) -> DatasetSplits:
        table = self._parse()
        info = self.info()
        key = self._cache_key(table)
        if key in _LOADED:
            return _LOADED[key]
        tensors = self._read_disk_cache(key)
        if tensors is None:
            tensors = self._decode(table)
            self._write_disk_cache(key, tensors)
        splits = {s: TensorSplit({k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(s + "/")}) for s in SPLITS}
        _LOADED[key] = DatasetSplits(info, splits["train"], splits["val"], splits["test"])
        return _LOADED[key]

    def _decode(self, table: _Table) -> dict[str, torch.Tensor]:
        """Every modality of every split, standardised with training statistics:
        ``{"<split>/<modality>": tensor, "<split>/label": tensor}``."""
        out: dict[str, torch.Tensor] = {}
        for split, rows in table.splits.items():
            out[f"{split}/label"] = torch.tensor([r.label for r in rows], dtype=torch.long)
        for column, kind in self.modalities.items():
            per_split = {}
            for split, rows in table.splits.items():
                if kind == "image":
                    per_split[split] = torch.stack([self._image(r, column) for r in rows]).float().div_(255.0)
                elif kind == "audio":
                    from kdbench_datasets.speechcommands import log_mel

                    chunks = []
                    for i in range(0, len(rows), 1024):  # waveforms are large: keep only a chunk of them
                        waves = torch.stack([self._audio(r, column) for r in rows[i : i + 1024]])
                        logmel = self.audio_features == "logmel"
                        chunks.append(log_mel(waves, self.n_mels, self.sample_rate) if logmel else waves.unsqueeze(1))
                    per_split[split] = torch.cat(chunks)
                elif kind == "vector":
                    per_split[split] = torch.tensor([r.values[column] for r in rows], dtype=torch.float32)
                else:
                    per_split[split] = self._token_ids([self._tokens(r.values[column]) for r in rows], table.vocabs[column])
            if kind != "text":
                # standardise with training statistics (per channel for images, per
                # dimension for vectors, one scalar for audio); val and test stay unseen
                train = per_split["train"]
                dims = {"image": (0, 2, 3), "vector": (0,)}.get(kind, tuple(range(train.dim())))
                mean = train.mean(dim=dims, keepdim=True)
                std = train.std(dim=dims, keepdim=True).nan_to_num(1.0).clamp_min(1e-6) if len(train) > 1 else torch.ones_like(mean)
                per_split = {s: (t - mean) / std for s, t in per_split.items()}
            for split, tensor in per_split.items():
                out[f"{split}/{column}"] = tensor.contiguous()
        return out

    def _image(self, row: _Row, column: str) -> torch.Tensor:
        """uint8 (C, S, S): decoded, shorter side resized to S, centre-cropped."""
        # PIL rather than torchvision.io, whose decoders are deprecated in favour of
        # torchcodec (which kdbench does not depend on); PIL reads every common format.
        from PIL import Image, ImageOps
        from torchvision.transforms.v2 import functional as F

        file = self._file(row, column)
        try:
            with Image.open(file) as pil:
                pil = ImageOps.exif_transpose(pil)  # phone photos store their rotation in EXIF
                img = F.pil_to_tensor(pil.convert("RGB" if self.image_channels == 3 else "L"))
        except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, ValueError ...
            raise UserError(f"{self._where(row)}: cannot read {column} image {file}: {exc}") from None
        img = F.resize(img, [self.image_size], antialias=True)
        return F.center_crop(img, [self.image_size, self.image_size])

    def _audio(self, row: _Row, column: str) -> torch.Tensor:
        from kdbench_datasets.speechcommands import read_clip

        try:
            return read_clip(self._file(row, column), self.audio_seconds, self.sample_rate)
        except UserError as exc:
            raise UserError(f"{self._where(row)}: {exc}") from None

    def _token_ids(self, texts: list[list[str]], vocab: tuple[str, ...]) -> torch.Tensor:
        ids = {t: i for i, t in enumerate(vocab)}
        out = torch.zeros(len(texts), self.max_length, dtype=torch.long)
        for n, tokens in enumerate(texts):
            row = [ids.get(t, 1) for t in tokens[: self.max_length]]
            out[n, : len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    # --- caching ----------------------------------------------------------------------

    def _cache_key(self, table: _Table) -> str:
        h = hashlib.sha256()
        h.update(self.path.read_bytes())
        params = {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in ("cache_dir", "path")}
        identity = {"format": _CACHE_FORMAT, "path": str(self.path.resolve()), **params}
        h.update(json.dumps(identity, sort_keys=True, default=str).encode())
        for column, kind in self.modalities.items():
            if kind in ("image", "audio"):
                for row in table.rows:
                    st = self._file(row, column).stat()
                    h.update(f"{column}:{row.line}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:32]

    def _read_disk_cache(self, key: str) -> dict[str, torch.Tensor] | None:
        if self.cache_dir is None or not (self.cache_dir / f"{key}.safetensors").is_file():
            return None
        from safetensors.torch import load_file

        try:
            return load_file(str(self.cache_dir / f"{key}.safetensors"))
        except Exception:  # a damaged cache file is rebuilt, never trusted
            return None

    def _write_disk_cache(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        if self.cache_dir is None:
            return
        from safetensors.torch import save_file

        target = self.cache_dir / f"{key}.safetensors"
        tmp = target.with_name(f".{key}.{os.getpid()}.tmp")
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(tmp), metadata={"manifest": str(self.path)})
            os.replace(tmp, target)  # atomic: parallel workers never read half a file
        except OSError:  # an unwritable cache only costs time
            tmp.unlink(missing_ok=True)


def _label_key(label: str) -> tuple[int, Any]:
    """Sort integer labels numerically ("2" before "10"), others as text."""
    try:
        return (0, int(label))
    except ValueError:
        return (1, label)
