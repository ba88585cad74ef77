"""Wide Residual Networks on small images, as RepDistiller defines them.

Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016): WRN-d-k is a 3x3 stem
of 16 channels and three groups of ``n = (d - 4) / 6`` pre-activation blocks
(BN-ReLU-Conv3x3, BN-ReLU-(dropout)-Conv3x3, plus a shortcut) of widths
``16k, 32k, 64k`` at strides 1, 2, 2, then BN-ReLU and global average pooling.
The block follows RepDistiller's ``models/wrn.py`` (Tian et al., ICLR 2020): where
the width or stride changes, the shortcut is a 1x1 convolution fed by the block's
shared BN-ReLU. Dropout is off by default, as in the KD literature's zoo.

===============  =========  ================
name             embedding  params (100 cls)
===============  =========  ================
``wrn-16-2``     128        0.70M
``wrn-40-2``     128        2.26M
===============  =========  ================

Departures, all shape-only: the stem reads the modality's channel count; pooling
is adaptive (RepDistiller's ``avg_pool2d(8)`` at 32x32); the classifier is
kdbench's head. Taps ``layer1``..``layer3`` are the raw group outputs (before the
next block's BN-ReLU), RepDistiller's ``f1``..``f3``; the embedding is the pooled
BN-ReLU of the last one (``f4``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from kdbench.errors import UserError
from kdbench.types import EncoderOutput, ModalitySpec

from .cifar_resnet import image_in_channels, kaiming_init


class WideBlock(nn.Module):
    """Pre-activation block: BN-ReLU-Conv3x3-BN-ReLU-(dropout)-Conv3x3 plus a shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.shortcut = None
        if in_planes != planes or stride != 1:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(pre)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        # A projecting shortcut reads the activated input (as in the reference code);
        # an identity one the raw input.
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WRNEncoder(nn.Module):
    """Stem conv, three groups of wide blocks, BN-ReLU, global average pooling."""

    def __init__(self, in_channels: int, depth: int, widen_factor: int, drop_rate: float) -> None:
        super().__init__()
        n = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        layers, planes = [], 16
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(*(
                WideBlock(planes if j == 0 else width, width, stride if j == 0 else 1, drop_rate) for j in range(n)
            )))
            planes = width
        self.layers = nn.ModuleList(layers)
        self.bn = nn.BatchNorm2d(planes)
        self.embed_dim = planes
        # RepDistiller's normal(0, sqrt(2 / (k*k*out))) is He-normal with fan-out.
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        x = self.conv1(x)
        features = {}
        for i, layer in enumerate(self.layers, 1):
            x = layer(x)
            features[f"layer{i}"] = x
        x = F.relu(self.bn(x))
        return EncoderOutput(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1), features)


class _WRN:
    name: str
    depth: int
    widen_factor: int

    def __init__(self, drop_rate: float = 0.0) -> None:
        if not 0.0 <= drop_rate < 1.0:
            raise UserError(f"{self.name}: drop_rate must be in [0, 1), got {drop_rate}")
        self.drop_rate = drop_rate

    def build(self, modality: str, spec: ModalitySpec) -> nn.Module:
        channels = image_in_channels(self.name, modality, spec)
        return WRNEncoder(channels, self.depth, self.widen_factor, self.drop_rate)


class WRN16x2(_WRN):
    """Wide ResNet 16-2 (Zagoruyko & Komodakis 2016): 3 groups of 2 blocks, widths 32/64/128.

    Reads images (C, H, W) and (C, F, T) spectrograms; taps ``layer1``..``layer3``;
    embedding: 128 pooled channels.

    Args:
        drop_rate: dropout between the two convolutions of every block (0: off, as
            in RepDistiller; the WRN paper used 0.3 on some runs).
    """

    name, depth, widen_factor = "wrn-16-2", 16, 2


class WRN40x2(_WRN):
    """Wide ResNet 40-2 (Zagoruyko & Komodakis 2016): 3 groups of 6 blocks, widths 32/64/128.

    Reads images (C, H, W) and (C, F, T) spectrograms; taps ``layer1``..``layer3``;
    embedding: 128 pooled channels.

    Args:
        drop_rate: dropout between the two convolutions of every block (0: off, as
            in RepDistiller; the WRN paper used 0.3 on some runs).
    """

    name, depth, widen_factor = "wrn-40-2", 40, 2
