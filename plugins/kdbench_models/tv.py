"""torchvision's ResNet-18 and MobileNetV3-Small, adapted to small images.

The networks are built by torchvision (``weights=None``: random init, nothing is
downloaded) and changed only where small inputs need it:

``resnet18`` (He et al., CVPR 2016; torchvision ``resnet18``)
    - ``conv1``: 7x7 stride-2 convolution from 3 channels -> 3x3 stride-1 (padding 1)
      from ``C`` channels (the common CIFAR adaptation, e.g. kuangliu/pytorch-cifar
      and the KD papers that use ResNet-18 on CIFAR-100);
    - ``maxpool`` removed;
    - ``fc`` removed (kdbench's head replaces it).
    Stages keep torchvision's strides 1, 2, 2, 2, so 32x32 ends at 4x4 and 8x8 at
    1x1. Taps ``layer1``..``layer4`` (64, 128, 256, 512 channels); embedding: the
    512 pooled channels. 11.22M parameters with a 100-class head.

``mobilenet_v3_small`` (Howard et al., "Searching for MobileNetV3", ICCV 2019;
torchvision ``mobilenet_v3_small``)
    - the stem convolution (``features[0][0]``): stride 2 from 3 channels ->
      stride 1 from ``C`` channels (kernel 3, padding 1 unchanged);
    - the classifier's last ``Linear(1024, 1000)`` removed (kdbench's head replaces
      it); its ``Linear(576, 1024)``-Hardswish-Dropout stays in the encoder, as the
      paper's pre-logits layer, so the embedding is 1024-d.
    The 13 feature blocks are grouped by output resolution into taps ``layer1``
    (blocks 0-1, 16 ch, /2), ``layer2`` (2-3, 24 ch, /4), ``layer3`` (4-8, 48 ch, /8)
    and ``layer4`` (9-12, 576 ch, /16): 32x32 ends at 2x2, 8x8 at 1x1.

Both re-initialise the replaced stem as torchvision initialises its convolutions
(He-normal, fan-out). Pretrained ImageNet weights are not offered: the changed
stem would not match them, and nothing may be downloaded.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import mobilenet_v3_small, resnet18

from kdbench.errors import UserError
from kdbench.types import EncoderOutput, ModalitySpec

from .cifar_resnet import image_in_channels


def _stem(in_channels: int, out_channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class ResNet18Encoder(nn.Module):
    """torchvision ResNet-18 with a 3x3 stride-1 stem, no max-pool and no fc."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        net = resnet18(weights=None, num_classes=1)  # a 1-class fc: it is dropped anyway
        self.conv1 = _stem(in_channels, 64)
        self.bn1, self.relu = net.bn1, net.relu
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.embed_dim = 512

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        x = self.relu(self.bn1(self.conv1(x)))
        features = {}
        for i, layer in enumerate(self.layers, 1):
            x = layer(x)
            features[f"layer{i}"] = x
        return EncoderOutput(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1), features)


class MobileNetV3SmallEncoder(nn.Module):
    """torchvision MobileNetV3-Small with a stride-1 stem and no last Linear."""

    # feature blocks [start, stop) of each tap: one group per output resolution
    STAGES = ((0, 2), (2, 4), (4, 9), (9, 13))

    def __init__(self, in_channels: int, dropout: float) -> None:
        super().__init__()
        net = mobilenet_v3_small(weights=None, num_classes=1, dropout=dropout)
        stem = net.features[0][0]
        net.features[0][0] = _stem(in_channels, stem.out_channels)
        self.layers = nn.ModuleList(nn.Sequential(*net.features[a:b]) for a, b in self.STAGES)
        self.pre_logits = net.classifier[:-1]  # Linear(576, 1024), Hardswish, Dropout
        self.embed_dim = net.classifier[-1].in_features

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        features = {}
        for i, layer in enumerate(self.layers, 1):
            x = layer(x)
            features[f"layer{i}"] = x
        pooled = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return EncoderOutput(self.pre_logits(pooled), features)


class ResNet18:
    """torchvision ResNet-18 adapted to small inputs (3x3 stride-1 stem, no max-pool).

    Reads images (C, H, W) and (C, F, T) spectrograms; taps ``layer1``..``layer4``;
    embedding: 512 pooled channels. No parameters; random init (no pretrained weights).
    """

    def build(self, modality: str, spec: ModalitySpec) -> nn.Module:
        return ResNet18Encoder(image_in_channels("resnet18", modality, spec))


class MobileNetV3Small:
    """torchvision MobileNetV3-Small adapted to small inputs (stride-1 stem).

    Reads images (C, H, W) and (C, F, T) spectrograms; taps ``layer1``..``layer4``;
    embedding: the 1024-d pre-logits layer. Random init (no pretrained weights).

    Args:
        dropout: dropout of the pre-logits layer (torchvision's default 0.2).
    """

    def __init__(self, dropout: float = 0.2) -> None:
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"mobilenet_v3_small: dropout must be in [0, 1), got {dropout}")
        self.dropout = dropout

    def build(self, modality: str, spec: ModalitySpec) -> nn.Module:
        return MobileNetV3SmallEncoder(image_in_channels("mobilenet_v3_small", modality, spec), self.dropout)
