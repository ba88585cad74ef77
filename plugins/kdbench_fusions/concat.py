"""Concatenation fusion (early fusion on embeddings).

``e = [e_1; e_2; ...; e_M]`` in the model's modality order; with one modality it is
the identity. The model's linear head reads ``e``.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.types import FusionOutput


class ConcatFusion(nn.Module):
    """Early fusion: concatenate the modality embeddings."""

    def __init__(self, embed_dims: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.order = tuple(embed_dims)
        self.out_dim = sum(embed_dims.values())

    def forward(self, embeddings: dict[str, torch.Tensor]) -> FusionOutput:
        return FusionOutput(torch.cat([embeddings[m] for m in self.order], dim=1))
