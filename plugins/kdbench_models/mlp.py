"""Multi-layer perceptron encoder: flatten, then ``depth`` Linear-ReLU layers."""

from __future__ import annotations

import math

from torch import nn

from kdbench.errors import IncompatibleError
from kdbench.types import EncoderOutput, ModalitySpec


class MLP:
    """Multi-layer perceptron on the flattened modality.

    Args:
        width: hidden units per layer (and the embedding size).
        depth: number of hidden layers; taps ``layer1`` .. ``layer{depth}``.
        dropout: dropout after every hidden layer.
    """

    def __init__(self, width: int = 64, depth: int = 2, dropout: float = 0.0) -> None:
        if width < 1 or depth < 1:
            raise IncompatibleError("mlp needs width >= 1 and depth >= 1")
        self.width, self.depth, self.dropout = width, depth, dropout

    def build(self, modality: str, spec: ModalitySpec) -> nn.Module:
        if spec.kind == "text":
            raise IncompatibleError(f"mlp cannot encode token ids of modality '{modality}' (kind text)")
        return MLPEncoder(math.prod(spec.shape), self.width, self.depth, self.dropout)


class MLPEncoder(nn.Module):
    def __init__(self, in_dim: int, width: int, depth: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(in_dim if i == 0 else width, width), nn.ReLU(), nn.Dropout(dropout))
            for i in range(depth)
        )
        self.embed_dim = width

    def forward(self, x):
        h = x.flatten(1)
        features = {}
        for i, layer in enumerate(self.layers, 1):
            h = layer(h)
            features[f"layer{i}"] = h
        return EncoderOutput(h, features)
