"""FiLM fusion: one modality conditions the others.

Perez, Strub, de Vries, Dumoulin and Courville, "FiLM: Visual Reasoning with a
General Conditioning Layer", AAAI 2018.

The ``conditioner`` modality ``c`` feeds one FiLM generator per other modality
``m``, a linear map to a scale and a shift; ``m``'s embedding, projected to
``dim``, is modulated feature-wise::

    h_m = W_m e_m + b_m                          (dim,)
    [Δγ_m; β_m] = G_m e_c + g_m                  (2 * dim,)
    out_m = (1 + Δγ_m) * h_m + β_m
    e = [out_m for m != c, in the model's modality order]   ((M - 1) * dim,)

The fused embedding is the **concatenation of the modulated embeddings**; the
conditioner's own embedding is not part of it (it acts only through γ and β).
The generator predicts ``Δγ = γ - 1`` rather than ``γ``: the same functions (the
generator's bias absorbs the 1) but the modulation starts near the identity
instead of near ``γ = 0``, which would all but erase ``h_m`` at initialisation.

With **one modality** there is nothing to condition and the fusion is the
identity (``out_dim`` is that modality's width), so a grid's ``film`` fusion also
works for a student that sees a single modality.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.errors import IncompatibleError, UserError
from kdbench.types import FusionOutput


class FiLMFusion(nn.Module):
    """FiLM, Perez et al. AAAI 2018: one modality conditions the others (concatenated).

    Computes ``e = [(1 + Δγ_m(e_c)) * W_m e_m + β_m(e_c) for m != c]``; with one
    modality, ``e = e_1``.

    Args:
        embed_dims: modality -> embedding width, in the model's modality order.
        num_classes: unused (the model's head classifies).
        conditioner: the modality that produces γ and β; ``None`` (default) is the
            last modality of the model.
        dim: width each modulated modality is projected to; ``None`` (default)
            takes the widest embedding.
    """

    def __init__(
        self,
        embed_dims: dict[str, int],
        num_classes: int,
        conditioner: str | None = None,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        if not embed_dims:
            raise IncompatibleError("fusion 'film' needs at least one modality")
        if dim is not None and dim < 1:
            raise UserError(f"fusion 'film': dim must be >= 1 (or null for the widest embedding), got {dim}")
        self.order = tuple(embed_dims)
        if conditioner is not None and conditioner not in embed_dims:
            raise IncompatibleError(
                f"fusion 'film': conditioner '{conditioner}' is not among the model's modalities "
                f"({', '.join(self.order)}); set conditioner to one of them, or give this model its own fusion"
            )
        self.conditioner = conditioner if conditioner is not None else self.order[-1]
        self.modulated = tuple(m for m in self.order if m != self.conditioner)
        if not self.modulated:  # a single modality: nothing to condition, pass it through
            self.dim = embed_dims[self.conditioner]
            self.out_dim = self.dim
        else:
            self.dim = int(dim) if dim is not None else max(embed_dims.values())
            self.out_dim = self.dim * len(self.modulated)
        self.proj = nn.ModuleDict({m: nn.Linear(embed_dims[m], self.dim) for m in self.modulated})
        self.generators = nn.ModuleDict(
            {m: nn.Linear(embed_dims[self.conditioner], 2 * self.dim) for m in self.modulated}
        )

    def forward(self, embeddings: dict[str, torch.Tensor]) -> FusionOutput:
        cond = embeddings[self.conditioner]
        if not self.modulated:
            return FusionOutput(cond)
        outs = []
        for m in self.modulated:
            delta_gamma, beta = self.generators[m](cond).chunk(2, dim=1)
            outs.append((1 + delta_gamma) * self.proj[m](embeddings[m]) + beta)
        return FusionOutput(torch.cat(outs, dim=1))
