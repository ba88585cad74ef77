"""Gated multimodal unit (GMU) fusion.

Arevalo, Solorio, Montes-y-Gómez and González, "Gated Multimodal Units for
Information Fusion", ICLR 2017 workshop track (arXiv:1702.01992).

The paper's bimodal unit is::

    h_v = tanh(W_v x_v),  h_t = tanh(W_t x_t),
    z = sigmoid(W_z [x_v; x_t]),
    h = z * h_v + (1 - z) * h_t

This module generalises it to ``M`` modalities with a softmax over modalities,
per output unit::

    h_m = tanh(W_m e_m)                       for every modality m
    z = softmax_m(W_z [e_1; ...; e_M] + b_z)  (B, M, dim), normalised over m
    e = sum_m z_m * h_m

For ``M = 2`` this is exactly the paper's form: a softmax over two scores ``a, b``
is ``(sigmoid(a - b), 1 - sigmoid(a - b))``, so ``W_z`` of the paper is the
difference of the two gate rows. For ``M = 1`` the gate is 1 and the unit reduces
to ``tanh(W_1 e_1)``. The paper's ``W_v, W_t`` have no bias; this module keeps
them bias-free and gives the gate a bias.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.errors import IncompatibleError, UserError
from kdbench.types import FusionOutput


class GatedFusion(nn.Module):
    """Gated multimodal unit, Arevalo et al. ICLR-W 2017 (softmax gates over M modalities).

    Computes ``e = sum_m z_m * tanh(W_m e_m)`` with gates
    ``z = softmax over modalities of W_z [e_1; ...; e_M]`` (the paper's bimodal
    sigmoid gate, generalised; identical for two modalities).

    Args:
        embed_dims: modality -> embedding width, in the model's modality order.
        num_classes: unused (the model's head classifies).
        dim: width of the hidden units ``h_m`` and of the output; ``None``
            (default) takes the widest embedding.
    """

    def __init__(self, embed_dims: dict[str, int], num_classes: int, dim: int | None = None) -> None:
        super().__init__()
        if not embed_dims:
            raise IncompatibleError("fusion 'gated' needs at least one modality")
        if dim is not None and dim < 1:
            raise UserError(f"fusion 'gated': dim must be >= 1 (or null for the widest embedding), got {dim}")
        self.order = tuple(embed_dims)
        self.out_dim = int(dim) if dim is not None else max(embed_dims.values())
        self.hidden = nn.ModuleDict({m: nn.Linear(d, self.out_dim, bias=False) for m, d in embed_dims.items()})
        self.gate = nn.Linear(sum(embed_dims.values()), len(self.order) * self.out_dim)

    def forward(self, embeddings: dict[str, torch.Tensor]) -> FusionOutput:
        inputs = [embeddings[m] for m in self.order]
        hidden = torch.stack([torch.tanh(self.hidden[m](x)) for m, x in zip(self.order, inputs)], dim=1)
        scores = self.gate(torch.cat(inputs, dim=1)).view(-1, len(self.order), self.out_dim)
        gates = torch.softmax(scores, dim=1)
        return FusionOutput((gates * hidden).sum(dim=1))
