"""Plain convolutional encoder: ``depth`` stages of Conv-BN-ReLU(-pool), channels
doubling from ``width``, then global average pooling.

2-D convolutions for images (C, H, W); 1-D for audio and sequences (C, T) and for
vectors (D,), which are read as a one-channel sequence.
"""

from __future__ import annotations

from torch import nn

from kdbench.errors import IncompatibleError
from kdbench.types import EncoderOutput, ModalitySpec


class CNN:
    """Conv-BN-ReLU stages (2-D for images, 1-D for audio, sequences and vectors).

    Args:
        width: channels of the first stage; stage i has ``width * 2**(i-1)``.
        depth: number of stages; taps ``layer1`` .. ``layer{depth}``.
        kernel_size: convolution kernel size.
    """

    def __init__(self, width: int = 16, depth: int = 3, kernel_size: int = 3) -> None:
        if width < 1 or depth < 1:
            raise IncompatibleError("cnn needs width >= 1 and depth >= 1")
        self.width, self.depth, self.kernel_size = width, depth, kernel_size

    def build(self, modality: str, spec: ModalitySpec) -> nn.Module:
        if spec.kind == "text":
            raise IncompatibleError(f"cnn cannot encode token ids of modality '{modality}' (kind text)")
        if len(spec.shape) == 3:
            return CNNEncoder(spec.shape[0], self.width, self.depth, self.kernel_size, dims=2)
        if len(spec.shape) == 2:
            return CNNEncoder(spec.shape[0], self.width, self.depth, self.kernel_size, dims=1)
        if len(spec.shape) == 1:
            return CNNEncoder(1, self.width, self.depth, self.kernel_size, dims=1, add_channel=True)
        raise IncompatibleError(f"cnn cannot encode modality '{modality}' of shape {spec.shape}")


class CNNEncoder(nn.Module):
    def __init__(self, in_ch: int, width: int, depth: int, k: int, dims: int, add_channel: bool = False) -> None:
        super().__init__()
        conv, bn, pool = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d)
        self.add_channel = add_channel
        stages, ch = [], in_ch
        for i in range(depth):
            out = width * 2**i
            layers = [conv(ch, out, k, padding=k // 2, bias=False), bn(out), nn.ReLU(inplace=True)]
            if i < depth - 1:
                layers.append(pool(2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
            ch = out
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool1d(1)
        self.embed_dim = ch

    def forward(self, x):
        if self.add_channel:
            x = x.unsqueeze(1)
        features = {}
        for i, stage in enumerate(self.stages, 1):
            x = stage(x)
            features[f"layer{i}"] = x
        return EncoderOutput(self.pool(x).flatten(1), features)
