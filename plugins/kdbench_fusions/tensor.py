"""Tensor fusion (Tensor Fusion Network).

Zadeh, Chen, Poria, Cambria and Morency, "Tensor Fusion Network for Multimodal
Sentiment Analysis", EMNLP 2017.

Every modality embedding, optionally projected to ``dim`` first, is extended with
a constant 1, and the fused embedding is the flattened outer product over all
modalities::

    z_m = [W_m e_m + b_m; 1]                (d_m + 1,)
    e = vec(z_1 ⊗ z_2 ⊗ ... ⊗ z_M)          (prod_m (d_m + 1),)

The constant 1 keeps the unimodal terms (and, for three modalities, the bimodal
ones) inside the product next to the multiplicative interactions. The flattening
is row-major in the model's modality order: entry ``(i_1, ..., i_M)`` is
``z_1[i_1] * ... * z_M[i_M]``. The paper prepends the 1; appending it only
permutes the entries.

**Size warning.** The width grows as the product of the ``d_m + 1``: three
modalities of width 64 give 274,625 features, and the model's linear head then
holds that many weights per class. This is why the embeddings are projected to a
small ``dim`` (16: 17^3 = 4,913 for three modalities) by default, and why a width
above ``max_dim`` is refused.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kdbench.errors import IncompatibleError, UserError
from kdbench.types import FusionOutput


class TensorFusion(nn.Module):
    """Tensor fusion network, Zadeh et al. EMNLP 2017: outer product of [e_m; 1].

    Computes ``e = vec([W_1 e_1; 1] ⊗ ... ⊗ [W_M e_M; 1])`` of width
    ``prod_m (d_m + 1)``, which grows exponentially with the number of modalities.

    Args:
        embed_dims: modality -> embedding width, in the model's modality order.
        num_classes: unused (the model's head classifies).
        dim: project every embedding to this width first (a linear layer);
            ``None`` uses the embeddings as they are.
        max_dim: refuse (``IncompatibleError``) an output wider than this.
    """

    def __init__(
        self,
        embed_dims: dict[str, int],
        num_classes: int,
        dim: int | None = 16,
        max_dim: int = 1_000_000,
    ) -> None:
        super().__init__()
        if not embed_dims:
            raise IncompatibleError("fusion 'tensor' needs at least one modality")
        if dim is not None and dim < 1:
            raise UserError(f"fusion 'tensor': dim must be >= 1 (or null for no projection), got {dim}")
        self.order = tuple(embed_dims)
        widths = {m: (dim if dim is not None else d) for m, d in embed_dims.items()}
        self.out_dim = math.prod(w + 1 for w in widths.values())
        if self.out_dim > max_dim:
            shown = " x ".join(f"({w}+1)" for w in widths.values())
            raise IncompatibleError(
                f"fusion 'tensor': the outer product of {len(widths)} modalities would be {shown} = "
                f"{self.out_dim:,} wide, more than max_dim={max_dim:,}; "
                + (f"lower dim (the projection width, now {dim})" if dim is not None
                   else "set dim (a projection width, e.g. 16; it is null, so the embeddings' own widths are used)")
                + " or raise max_dim"
            )
        self.proj = nn.ModuleDict(
            {m: nn.Linear(d, dim) if dim is not None else nn.Identity() for m, d in embed_dims.items()}
        )

    def forward(self, embeddings: dict[str, torch.Tensor]) -> FusionOutput:
        fused = None
        for m in self.order:
            z = self.proj[m](embeddings[m])
            z = torch.cat([z, z.new_ones(z.shape[0], 1)], dim=1)
            # One modality at a time: (B, P) x (B, d+1) -> (B, P * (d+1)), row-major.
            fused = z if fused is None else (fused.unsqueeze(2) * z.unsqueeze(1)).flatten(1)
        return FusionOutput(fused)
