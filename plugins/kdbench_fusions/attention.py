"""Self-attention fusion over modality tokens.

Each modality embedding becomes one token: ``t_m = W_m e_m + b_m + p_m``, a linear
projection to a shared width ``dim`` plus a learned modality embedding ``p_m`` (so
attention can tell the modalities apart: the tokens carry no position). ``layers``
standard transformer encoder layers (Vaswani et al. 2017, post-norm, as
``nn.TransformerEncoderLayer``) run over the ``M`` tokens, and the fused embedding
is the mean of the output tokens. Mean pooling is chosen over a CLS token because
it adds no extra token and with one modality the result is simply that token
transformed; a CLS token would have to learn to read every modality through
attention alone.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.errors import IncompatibleError, UserError
from kdbench.types import FusionOutput


class AttentionFusion(nn.Module):
    """Self-attention over modality tokens (transformer encoder layer), mean-pooled.

    Computes ``e = mean_m Transformer([W_1 e_1 + p_1, ..., W_M e_M + p_M])_m``.

    Args:
        embed_dims: modality -> embedding width, in the model's modality order.
        num_classes: unused (the model's head classifies).
        dim: token width; must be divisible by ``heads``. ``None`` (default) takes
            the widest embedding rounded up to a multiple of ``heads``.
        heads: attention heads per layer.
        layers: number of transformer encoder layers.
        dropout: dropout inside the encoder layers.
        ff_dim: hidden width of each layer's feed-forward block; ``None`` (default)
            is ``4 * dim``, the ratio of Vaswani et al. (PyTorch's own default of
            2048 would dwarf a small student).
    """

    def __init__(
        self,
        embed_dims: dict[str, int],
        num_classes: int,
        dim: int | None = None,
        heads: int = 4,
        layers: int = 1,
        dropout: float = 0.0,
        ff_dim: int | None = None,
    ) -> None:
        super().__init__()
        if not embed_dims:
            raise IncompatibleError("fusion 'attention' needs at least one modality")
        if heads < 1 or layers < 1:
            raise UserError(f"fusion 'attention': heads and layers must be >= 1, got heads={heads}, layers={layers}")
        if dim is None:
            widest = max(embed_dims.values())
            dim = -(-widest // heads) * heads  # round up so that the heads split the width evenly
        if dim < 1 or dim % heads:
            raise UserError(
                f"fusion 'attention': dim ({dim}) must be a positive multiple of heads ({heads}); "
                f"set dim to e.g. {max(heads, dim // heads * heads or heads)} or change heads"
            )
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"fusion 'attention': dropout must be in [0, 1), got {dropout}")
        if ff_dim is not None and ff_dim < 1:
            raise UserError(f"fusion 'attention': ff_dim must be >= 1 (or null for 4 * dim), got {ff_dim}")
        self.order = tuple(embed_dims)
        self.out_dim = int(dim)
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in embed_dims.items()})
        self.modality_embedding = nn.Parameter(torch.randn(len(self.order), dim) * 0.02)
        # A plain list of layers rather than nn.TransformerEncoder: the latter's
        # nested-tensor path only matters for padded sequences and warns otherwise.
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim, heads, dim_feedforward=ff_dim or 4 * dim, dropout=dropout, batch_first=True
            )
            for _ in range(layers)
        )

    def forward(self, embeddings: dict[str, torch.Tensor]) -> FusionOutput:
        tokens = torch.stack([self.proj[m](embeddings[m]) for m in self.order], dim=1)
        tokens = tokens + self.modality_embedding
        for layer in self.layers:
            tokens = layer(tokens)
        return FusionOutput(tokens.mean(dim=1))
