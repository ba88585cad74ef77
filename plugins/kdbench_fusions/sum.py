"""Sum fusion: project every modality embedding to one width and add them.

``e = sum_m (W_m e_m + b_m)`` over the modalities in the model's order, with one
linear projection per modality to a shared width ``dim``. Summation is the fusion
used by, e.g., the "additive" baselines of multimodal benchmarks: unlike
concatenation its width does not grow with the number of modalities. With one
modality it is a single linear projection.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.errors import IncompatibleError, UserError
from kdbench.types import FusionOutput


class SumFusion(nn.Module):
    """Project every modality embedding to one width and sum them.

    Computes ``e = sum_m (W_m e_m + b_m)``; the model's head reads ``e``.

    Args:
        embed_dims: modality -> embedding width, in the model's modality order.
        num_classes: unused (the model's head classifies).
        dim: the shared width; ``None`` (default) takes the widest embedding.
    """

    def __init__(self, embed_dims: dict[str, int], num_classes: int, dim: int | None = None) -> None:
        super().__init__()
        if not embed_dims:
            raise IncompatibleError("fusion 'sum' needs at least one modality")
        if dim is not None and dim < 1:
            raise UserError(f"fusion 'sum': dim must be >= 1 (or null for the widest embedding), got {dim}")
        self.order = tuple(embed_dims)
        self.out_dim = int(dim) if dim is not None else max(embed_dims.values())
        self.proj = nn.ModuleDict({m: nn.Linear(d, self.out_dim) for m, d in embed_dims.items()})

    def forward(self, embeddings: dict[str, torch.Tensor]) -> FusionOutput:
        fused = sum(self.proj[m](embeddings[m]) for m in self.order)
        return FusionOutput(fused)
