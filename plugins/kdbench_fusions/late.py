"""Late fusion: one linear classifier per modality, logits averaged.

``logits = sum_m w_m * W_m e_m`` with ``w_m = 1/M`` or, when ``learned``,
``w = softmax(a)`` over learnable scores ``a`` (initialised equal). The embedding
exposed to distillation losses is the concatenation ``[e_1; ...; e_M]``.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.types import FusionOutput


class LateFusion(nn.Module):
    """Late fusion: average per-modality classifiers' logits (optionally learned weights).

    Args:
        learned: learn the modality weights (softmax over scores) instead of 1/M.
    """

    classifies = True  # the model needs no head of its own

    def __init__(self, embed_dims: dict[str, int], num_classes: int, learned: bool = False) -> None:
        super().__init__()
        self.order = tuple(embed_dims)
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in embed_dims.items()})
        self.scores = nn.Parameter(torch.zeros(len(self.order)), requires_grad=learned)
        self.out_dim = sum(embed_dims.values())

    def forward(self, embeddings: dict[str, torch.Tensor]) -> FusionOutput:
        weights = torch.softmax(self.scores, dim=0)
        logits = sum(w * self.heads[m](embeddings[m]) for w, m in zip(weights, self.order))
        return FusionOutput(torch.cat([embeddings[m] for m in self.order], dim=1), logits)
