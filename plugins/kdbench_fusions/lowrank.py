"""Low-rank multimodal fusion (LMF).

Liu, Shen, Lakshminarasimhan, Liang, Zadeh and Morency, "Efficient Low-rank
Multimodal Fusion with Modality-Specific Factors", ACL 2018.

Tensor fusion's weight tensor, applied to ``[e_1; 1] ⊗ ... ⊗ [e_M; 1]``, is
replaced by a rank-``r`` decomposition with modality-specific factors
``W_m^(i)`` of shape ``(d_m + 1, dim)``, so the outer product is never formed::

    z_m = [e_m; 1]
    e = sum_{i=1}^{r} w_i * prod_m (z_m W_m^(i)) + b      (elementwise product over m)

``w`` (``r`` fusion weights) and ``b`` (``dim`` biases) are the paper's fusion
weights and bias, as in the authors' reference implementation
(github.com/Justin1904/Low-rank-Multimodal-Fusion). The paper prepends the 1;
appending it only permutes the factors' rows. Cost is linear in the number of
modalities and in ``dim``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kdbench.errors import IncompatibleError, UserError
from kdbench.types import FusionOutput


class LowRankFusion(nn.Module):
    """Low-rank multimodal fusion, Liu et al. ACL 2018.

    Computes ``e = sum_i w_i * prod_m ([e_m; 1] W_m^(i)) + b`` of width ``dim``.

    Args:
        embed_dims: modality -> embedding width, in the model's modality order.
        num_classes: unused (the model's head classifies).
        rank: rank ``r`` of the decomposition (number of factors per modality).
        dim: output width.
    """

    def __init__(self, embed_dims: dict[str, int], num_classes: int, rank: int = 4, dim: int = 32) -> None:
        super().__init__()
        if not embed_dims:
            raise IncompatibleError("fusion 'lowrank' needs at least one modality")
        if rank < 1 or dim < 1:
            raise UserError(f"fusion 'lowrank': rank and dim must be >= 1, got rank={rank}, dim={dim}")
        self.order = tuple(embed_dims)
        self.out_dim = int(dim)
        self.rank = int(rank)
        self.factors = nn.ParameterDict()
        for m, d in embed_dims.items():
            # Glorot-normal for a (d + 1) -> dim map, so each factor output starts at unit scale.
            std = math.sqrt(2.0 / (d + 1 + dim))
            self.factors[m] = nn.Parameter(torch.randn(rank, d + 1, dim) * std)
        # The reference initialises the (1, rank) fusion weights Glorot-normal and the bias at zero.
        self.fusion_weights = nn.Parameter(torch.randn(rank) * math.sqrt(2.0 / (1 + rank)))
        self.fusion_bias = nn.Parameter(torch.zeros(dim))

    def forward(self, embeddings: dict[str, torch.Tensor]) -> FusionOutput:
        product = None
        for m in self.order:
            e = embeddings[m]
            z = torch.cat([e, e.new_ones(e.shape[0], 1)], dim=1)
            f = torch.einsum("bi,rio->rbo", z, self.factors[m])  # (rank, B, dim)
            product = f if product is None else product * f
        fused = torch.einsum("r,rbo->bo", self.fusion_weights, product) + self.fusion_bias
        return FusionOutput(fused)
