"""Synthesise the spoken digits shipped with the ``digits`` dataset.

Writes ``plugins/kdbench_datasets/data/digits_audio.npz``: every digit word
("zero" .. "nine") spoken by espeak-ng (https://github.com/espeak-ng/espeak-ng,
GPL-3.0; the audio it produces is not covered by its licence) in many *voices*.
A voice is an espeak-ng accent (``en-us``, ``en-gb-scotland``, ...) combined with a
speaker variant (``+m3``, ``+f2``, ``+klatt``, ...): the variant sets the formants,
pitch range and voice quality, the accent the pronunciation. Each utterance also
gets a seeded speaking rate (``-s``, words per minute) and base pitch (``-p``).

Every file is written with ``espeak-ng -w`` (never ``--stdout``: its header
lacks the length), read with soundfile, resampled to 8 kHz (torchaudio's
band-limited sinc resampler), trimmed of the silence around the word (frames
40 dB below the loudest one), peak-normalised (the reading and trimming are the
dataset's own ``read_wav`` and ``trim``, which it applies to real recordings too), and zero-padded to ``--length``
samples (0.8 s by default). The archive holds:

- ``audio`` int16 (N, length): the waveforms, speech first, zeros after;
- ``label`` int64 (N,): the digit; ``length`` int64 (N,): samples of speech;
- ``voice`` (N,): ``"<accent>+<variant>"``; ``accent``, ``variant`` (N,);
- ``speed``, ``pitch`` int64 (N,): the espeak-ng ``-s`` and ``-p`` of each utterance;
- ``split`` (N,): ``train``, ``val`` or ``test``, by *variant*: the ``--test-variants``
  and ``--val-variants`` speak only in those splits, so test voices are unseen;
- ``sample_rate`` (8000), ``espeak_version``, ``settings`` (the command line, JSON).

Run it where espeak-ng is installed (``apt-get install espeak-ng``); the dataset
only reads the archive. More data: more ``--variants``/``--accents``,
``--accents-per-variant`` up to the number of accents, or ``--repeats`` (each
repeat draws a new rate and pitch)::

    python scripts/make_digits_audio.py --repeats 2 --out /tmp/digits_audio.npz
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from kdbench_datasets.digits import SAMPLE_RATE, WORDS, read_wav, trim

ACCENTS = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt3", "Annie", "Andy", "croak", "steph", "zac", "Alicia",
)
TEST_VARIANTS = ("m4", "f3", "klatt3", "Annie")
VAL_VARIANTS = ("m6", "f5", "Andy")
SPEEDS = (140, 155, 170, 185, 200)
PITCHES = (25, 40, 55, 70, 85)
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "plugins" / "kdbench_datasets" / "data" / "digits_audio.npz"


def speak(word: str, voice: str, speed: int, pitch: int, workdir: Path) -> np.ndarray:
    path = workdir / "word.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), word],
                   check=True, capture_output=True)
    return read_wav(path, SAMPLE_RATE)


def voices(accents: list[str], variants: list[str], per_variant: int) -> list[tuple[str, str]]:
    """Each variant speaks with ``per_variant`` accents, rotating through the list so
    that every accent is used about equally."""
    per_variant = min(per_variant, len(accents))
    return [(accents[(i + j) % len(accents)], v) for i, v in enumerate(variants) for j in range(per_variant)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--accents", nargs="+", default=list(ACCENTS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--accents-per-variant", type=int, default=3)
    p.add_argument("--test-variants", nargs="+", default=list(TEST_VARIANTS))
    p.add_argument("--val-variants", nargs="+", default=list(VAL_VARIANTS))
    p.add_argument("--speeds", nargs="+", type=int, default=list(SPEEDS), help="espeak-ng -s values to draw from")
    p.add_argument("--pitches", nargs="+", type=int, default=list(PITCHES), help="espeak-ng -p values to draw from")
    p.add_argument("--repeats", type=int, default=1,
                   help="utterances per (voice, digit), each with a new rate and pitch")
    p.add_argument("--length", type=int, default=6400, help="samples per utterance at 8 kHz (zero-padded)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    if shutil.which("espeak-ng") is None:
        print("espeak-ng is not installed: apt-get install espeak-ng", file=sys.stderr)
        return 2
    for name in args.test_variants + args.val_variants:
        if name not in args.variants:
            print(f"held-out variant {name!r} is not in --variants", file=sys.stderr)
            return 2
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
    rng = np.random.default_rng(args.seed)
    rows: list[dict] = []
    clipped = 0
    with tempfile.TemporaryDirectory() as tmp:
        for accent, variant in voices(args.accents, args.variants, args.accents_per_variant):
            split = "test" if variant in args.test_variants else "val" if variant in args.val_variants else "train"
            for digit, word in enumerate(WORDS):
                for _ in range(args.repeats):
                    speed, pitch = int(rng.choice(args.speeds)), int(rng.choice(args.pitches))
                    wave = trim(speak(word, f"{accent}+{variant}", speed, pitch, Path(tmp)))
                    wave = 0.9 * wave / max(float(np.abs(wave).max()), 1e-8)
                    clipped += len(wave) > args.length
                    wave = wave[: args.length]
                    padded = np.zeros(args.length, dtype=np.int16)
                    padded[: len(wave)] = np.round(wave * 32767).astype(np.int16)
                    rows.append({"audio": padded, "label": digit, "length": len(wave), "voice": f"{accent}+{variant}",
                                 "accent": accent, "variant": variant, "speed": speed, "pitch": pitch, "split": split})
    arrays = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    for key in ("label", "length", "speed", "pitch"):
        arrays[key] = arrays[key].astype(np.int64)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, sample_rate=np.int64(SAMPLE_RATE), espeak_version=np.str_(version),
                        settings=np.str_(json.dumps(settings)), **arrays)
    counts = {s: int((arrays["split"] == s).sum()) for s in ("train", "val", "test")}
    print(f"wrote {args.out}: {len(arrays['label'])} utterances {counts}, {args.out.stat().st_size / 1e6:.2f} MB"
          + (f"; {clipped} cut to {args.length} samples" if clipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
