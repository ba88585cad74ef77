"""The CIFAR ResNets of the KD literature, as RepDistiller defines them.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), section 4.2:
the CIFAR variant is a 3x3 stem and three stages of ``n`` BasicBlocks (two 3x3
Conv-BN, identity shortcut), ``depth = 6n + 2``, stages at strides 1, 2, 2, then
global average pooling. The widths follow RepDistiller's ``models/resnet.py``
(Tian et al., "Contrastive Representation Distillation", ICLR 2020), whose zoo
most KD papers report on CIFAR-100:

==============  =====  ======================  =========  ==================
name            depth  widths (stem; stages)   embedding  params (100 cls)
==============  =====  ======================  =========  ==================
``resnet20``    20     16; 16, 32, 64          64         0.28M
``resnet56``    56     16; 16, 32, 64          64         0.86M
``resnet8x4``   8      32; 64, 128, 256        256        1.23M
``resnet32x4``  32     32; 64, 128, 256        256        7.43M
==============  =====  ======================  =========  ==================

Like RepDistiller (and unlike He et al.'s option A), a shortcut that changes
width or stride is a 1x1 Conv-BN projection. Departures, all shape-only:

- the stem reads the modality's channel count ``C`` instead of 3;
- pooling is adaptive (RepDistiller's ``AvgPool2d(8)`` is the same thing at
  32x32 input), so any ``H, W`` works; an 8x8 input ends at 2x2;
- the classifier is not part of the encoder: kdbench's head (a ``Linear`` on the
  embedding) is RepDistiller's ``fc``.

Taps ``layer1``..``layer3`` are the stage outputs after the final ReLU (the
``f1``..``f3`` of RepDistiller's ``is_feat=True`` list); the embedding is their
pooled last stage (``f4``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from kdbench.errors import IncompatibleError
from kdbench.types import EncoderOutput, ModalitySpec


def image_in_channels(model: str, modality: str, spec: ModalitySpec) -> int:
    """The channel count of a 2-D map this image encoder can read, or raise.

    Images ``(C, H, W)`` are accepted, and so are audio modalities of rank 3: a
    ``(C, F, T)`` spectrogram (log-mel, ...) is a ``C``-channel image, which is how
    image CNNs are commonly applied to sound. Waveforms ``(C, T)``, vectors,
    sequences and token ids are refused.
    """
    if spec.kind in ("image", "audio") and len(spec.shape) == 3 and min(spec.shape) >= 1:
        return int(spec.shape[0])
    if spec.kind == "audio":
        hint = "give it a (C, F, T) spectrogram, or use logmel-cnn or wave-cnn for waveforms"
    else:
        hint = "use it on an image (C, H, W) modality; cnn or mlp read the other kinds"
    raise IncompatibleError(
        f"{model} is a 2-D image encoder and cannot encode modality '{modality}' "
        f"(kind {spec.kind}, shape {tuple(spec.shape)}); {hint}"
    )


def kaiming_init(module: nn.Module) -> None:
    """RepDistiller's (and torchvision's) init: He-normal (fan-out) convolutions,
    BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """Two 3x3 Conv-BN with a ReLU between, a shortcut, then a ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class CIFARResNetEncoder(nn.Module):
    """Stem Conv-BN-ReLU, three stages of BasicBlocks, global average pooling."""

    def __init__(self, in_channels: int, depth: int, widths: tuple[int, int, int, int]) -> None:
        super().__init__()
        n = (depth - 2) // 6  # depth = 6n + 2
        stem, *stages = widths
        self.conv1 = nn.Conv2d(in_channels, stem, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        layers, planes = [], stem
        for i, width in enumerate(stages):
            blocks = [BasicBlock(planes, width, stride=1 if i == 0 else 2)]
            blocks += [BasicBlock(width, width) for _ in range(n - 1)]
            layers.append(nn.Sequential(*blocks))
            planes = width
        self.layers = nn.ModuleList(layers)
        self.embed_dim = planes
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        x = F.relu(self.bn1(self.conv1(x)))
        features = {}
        for i, layer in enumerate(self.layers, 1):
            x = layer(x)
            features[f"layer{i}"] = x
        return EncoderOutput(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1), features)


class _CIFARResNet:
    depth: int
    widths: tuple[int, int, int, int]
    name: str

    def build(self, modality: str, spec: ModalitySpec) -> nn.Module:
        return CIFARResNetEncoder(image_in_channels(self.name, modality, spec), self.depth, self.widths)


class ResNet20(_CIFARResNet):
    """CIFAR ResNet-20 (He et al. 2016): 3 stages of 3 BasicBlocks, widths 16/32/64.

    Reads images (C, H, W) and (C, F, T) spectrograms; taps ``layer1``..``layer3``;
    embedding: 64 pooled channels. No parameters.
    """

    name, depth, widths = "resnet20", 20, (16, 16, 32, 64)


class ResNet56(_CIFARResNet):
    """CIFAR ResNet-56 (He et al. 2016): 3 stages of 9 BasicBlocks, widths 16/32/64.

    Reads images (C, H, W) and (C, F, T) spectrograms; taps ``layer1``..``layer3``;
    embedding: 64 pooled channels. No parameters.
    """

    name, depth, widths = "resnet56", 56, (16, 16, 32, 64)


class ResNet8x4(_CIFARResNet):
    """CIFAR ResNet-8x4 (RepDistiller): a 32-channel stem and 3 stages of 1 BasicBlock, widths 64/128/256.

    Reads images (C, H, W) and (C, F, T) spectrograms; taps ``layer1``..``layer3``;
    embedding: 256 pooled channels. No parameters.
    """

    name, depth, widths = "resnet8x4", 8, (32, 64, 128, 256)


class ResNet32x4(_CIFARResNet):
    """CIFAR ResNet-32x4 (RepDistiller): a 32-channel stem and 3 stages of 5 BasicBlocks, widths 64/128/256.

    Reads images (C, H, W) and (C, F, T) spectrograms; taps ``layer1``..``layer3``;
    embedding: 256 pooled channels. No parameters.
    """

    name, depth, widths = "resnet32x4", 32, (32, 64, 128, 256)
