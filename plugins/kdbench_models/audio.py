"""Audio encoders: a log-mel spectrogram CNN and a raw-waveform CNN.

- ``logmel-cnn``: torchaudio's ``MelSpectrogram`` (power spectrum of a Hann-windowed
  STFT, mapped to ``n_mels`` HTK mel bands), ``log(x + 1e-6)``, a per-band BatchNorm
  (``bn0`` of the PANNs CNNs, Kong et al. 2020, "PANNs: Large-Scale Pretrained Audio
  Neural Networks for Audio Pattern Recognition"), then ``depth`` 2-D Conv-BN-ReLU
  stages. A modality that already is a spectrogram (audio of shape (C, F, T)) skips
  the STFT and the log.
- ``wave-cnn``: M5 of Dai et al. 2017, "Very Deep Convolutional Neural Networks for
  Raw Waveforms" (ICASSP): a first convolution with a long kernel and a stride (80 and
  4: 10 ms at 8 kHz) acting as a learned filterbank, then kernel-3 convolutions, each
  stage followed by BatchNorm, ReLU and a max-pool of 4, then global average pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.errors import IncompatibleError, UserError
from kdbench.types import EncoderOutput, ModalitySpec


def _check_audio(name: str, modality: str, spec: ModalitySpec, ranks: tuple[int, ...], hint: str) -> None:
    if spec.kind != "audio" or len(spec.shape) not in ranks:
        raise IncompatibleError(
            f"{name} cannot encode modality '{modality}' (kind {spec.kind}, shape {spec.shape}): it reads {hint}"
        )


class LogMelCNN:
    """Log-mel spectrogram front end (torchaudio) feeding a 2-D CNN.

    A waveform (C, L) goes through ``MelSpectrogram`` and ``log(x + 1e-6)``; a
    spectrogram (C, F, T) is used as it is. A BatchNorm over the F bands (PANNs'
    ``bn0``) standardises every band, then ``depth`` stages of 3x3 Conv-BN-ReLU with a
    2x2 max-pool between stages (channels ``width * 2**(i-1)``), then global average
    pooling. Taps ``layer1`` .. ``layer{depth}``: (B, channels, F', T').

    The STFT defaults are Kaldi's filterbank framing: 25 ms windows, 10 ms hop, the FFT
    size rounded up to a power of two (16 kHz: 400/160/512; 8 kHz: 200/80/256). Frames
    are centred with zero padding (librosa's default since 0.10) rather than
    torchaudio's reflection, so that clips shorter than half a window still work.

    Args:
        width: channels of the first stage.
        depth: number of stages.
        sample_rate: of the waveform, in Hz (16000 for Speech Commands, 8000 for Free
            Spoken Digits); sets the mel scale and the default framing.
        n_mels: mel bands.
        n_fft: FFT size; ``None``: the 25 ms window rounded up to a power of two.
        win_length: window length in samples; ``None``: 25 ms (at most ``n_fft``).
        hop_length: hop in samples; ``None``: 10 ms.
    """

    def __init__(self, width: int = 16, depth: int = 4, sample_rate: int = 16000, n_mels: int = 40,
                 n_fft: int | None = None, win_length: int | None = None, hop_length: int | None = None) -> None:
        if width < 1 or depth < 1:
            raise UserError(f"logmel-cnn needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        if sample_rate < 1 or n_mels < 1:
            raise UserError(f"logmel-cnn needs sample_rate >= 1 and n_mels >= 1, got {sample_rate} and {n_mels}")
        win = win_length or max(1, round(0.025 * sample_rate))
        self.n_fft = n_fft or 1 << (win - 1).bit_length()
        self.win_length = min(win, self.n_fft)
        self.hop_length = hop_length or max(1, round(0.010 * sample_rate))
        if min(self.n_fft, self.win_length, self.hop_length) < 1:
            raise UserError("logmel-cnn needs n_fft, win_length and hop_length >= 1")
        self.width, self.depth, self.sample_rate, self.n_mels = width, depth, sample_rate, n_mels

    def build(self, modality: str, spec: ModalitySpec) -> nn.Module:
        _check_audio("logmel-cnn", modality, spec, (2, 3), "audio waveforms (C, L) or spectrograms (C, F, T)")
        if len(spec.shape) == 3:
            channels, bands = spec.shape[0], spec.shape[1]
            front = None
        else:
            import torchaudio

            channels, bands = spec.shape[0], self.n_mels
            front = torchaudio.transforms.MelSpectrogram(
                sample_rate=self.sample_rate, n_fft=self.n_fft, win_length=self.win_length,
                hop_length=self.hop_length, n_mels=self.n_mels, pad_mode="constant",
            )
        return LogMelCNNEncoder(front, channels, bands, self.width, self.depth)


class LogMelCNNEncoder(nn.Module):
    def __init__(self, front: nn.Module | None, channels: int, bands: int, width: int, depth: int) -> None:
        super().__init__()
        self.front = front
        self.bn0 = nn.BatchNorm2d(bands)
        stages, ch = [], channels
        for i in range(depth):
            out = width * 2**i
            layers = [nn.Conv2d(ch, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            if i < depth - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil: a one-frame spectrogram survives
            stages.append(nn.Sequential(*layers))
            ch = out
        self.stages = nn.ModuleList(stages)
        self.embed_dim = ch

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The log-mel spectrogram (B, C, n_mels, T) of waveforms (B, C, L)."""
        return torch.log(self.front(x) + 1e-6)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        if self.front is not None:
            x = self.features(x)
        # BatchNorm over the frequency bands: move F to the channel axis and back.
        x = self.bn0(x.transpose(1, 2)).transpose(1, 2)
        features = {}
        for i, stage in enumerate(self.stages, 1):
            x = stage(x)
            features[f"layer{i}"] = x
        return EncoderOutput(x.mean(dim=(2, 3)), features)


class WaveCNN:
    """Raw-waveform 1-D CNN with a strided front end (M5 of Dai et al. 2017).

    Stage 1 is a convolution with kernel ``first_kernel`` and stride ``first_stride``;
    later stages use kernel 3. Every stage is Conv-BN-ReLU-MaxPool(``pool``); channels
    are ``width, width, 2*width, 4*width, ...`` (M5 is ``width=128, depth=4``: 128,
    128, 256, 512). Global average pooling gives the embedding. Taps ``layer1`` ..
    ``layer{depth}``: (B, channels, L').

    Departures from the paper: convolutions are zero-padded (kernel // 2) and pools
    round up, so any clip length works (the paper's 32000-sample clips need neither);
    the default width is 32 rather than 128, a student-sized model.

    Args:
        width: channels of the first two stages.
        depth: number of stages (M5: 4).
        first_kernel: kernel of the first convolution (M5: 80).
        first_stride: stride of the first convolution (M5: 4).
        pool: max-pool size and stride after every stage (M5: 4).
    """

    def __init__(self, width: int = 32, depth: int = 4, first_kernel: int = 80, first_stride: int = 4,
                 pool: int = 4) -> None:
        if min(width, depth, first_kernel, first_stride, pool) < 1:
            raise UserError("wave-cnn needs width, depth, first_kernel, first_stride and pool >= 1")
        self.width, self.depth = width, depth
        self.first_kernel, self.first_stride, self.pool = first_kernel, first_stride, pool

    def build(self, modality: str, spec: ModalitySpec) -> nn.Module:
        _check_audio("wave-cnn", modality, spec, (2,),
                     "raw audio waveforms (C, L); for spectrograms use logmel-cnn or cnn")
        return WaveCNNEncoder(spec.shape[0], self.width, self.depth, self.first_kernel, self.first_stride, self.pool)


class WaveCNNEncoder(nn.Module):
    def __init__(self, channels: int, width: int, depth: int, first_kernel: int, first_stride: int, pool: int) -> None:
        super().__init__()
        stages, ch = [], channels
        for i in range(depth):
            out = width * 2 ** max(0, i - 1)
            k, s = (first_kernel, first_stride) if i == 0 else (3, 1)
            stages.append(nn.Sequential(
                nn.Conv1d(ch, out, k, stride=s, padding=k // 2, bias=False), nn.BatchNorm1d(out), nn.ReLU(inplace=True),
                nn.MaxPool1d(pool, ceil_mode=True),
            ))
            ch = out
        self.stages = nn.ModuleList(stages)
        self.embed_dim = ch

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        features = {}
        for i, stage in enumerate(self.stages, 1):
            x = stage(x)
            features[f"layer{i}"] = x
        return EncoderOutput(x.mean(dim=2), features)
