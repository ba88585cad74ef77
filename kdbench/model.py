"""A model is per-modality encoders + a fusion + a head.

Model plugins build encoders for one modality each; fusion plugins map the modality
embeddings to one embedding. This module puts them together; it knows no model,
fusion or method by name.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from kdbench.errors import IncompatibleError, UserError
from kdbench.registry import Registry
from kdbench.spec import ComponentRef, ModelRef
from kdbench.types import DatasetInfo, ModelOutput


class MultimodalModel(nn.Module):
    """Encoders (one per modality it sees), a fusion and a linear head.

    Modalities of the batch that the model does not see are ignored, which is
    what lets a student see fewer modalities than its teacher.
    """

    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.modalities = tuple(encoders)
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        # A fusion that classifies itself (late fusion) needs no head; an unused
        # head would inflate the parameter count.
        self.head = None if getattr(fusion, "classifies", False) else nn.Linear(fusion.out_dim, num_classes)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        features: OrderedDict[str, torch.Tensor] = OrderedDict()
        embeddings: dict[str, torch.Tensor] = {}
        for modality, encoder in self.encoders.items():
            out = encoder(batch[modality])
            embeddings[modality] = out.embedding
            for stage, tensor in out.features.items():
                features[f"{modality}.{stage}"] = tensor
        fused = self.fusion(embeddings)
        logits = fused.logits if self.head is None else self.head(fused.embedding)
        return ModelOutput(logits, fused.embedding, features, embeddings)


def build_model(registry: Registry, model: ModelRef, fusion: ComponentRef, info: DatasetInfo) -> MultimodalModel:
    """Build ``model`` with ``fusion`` for the dataset described by ``info``.

    Raises ``UserError`` when the model asks for a modality the dataset lacks or an
    encoder cannot encode one.
    """
    modalities = model.modalities or tuple(info.modalities)
    missing = [m for m in modalities if m not in info.modalities]
    if missing:
        raise UserError(
            f"model '{model.label}' asks for modality {', '.join(map(repr, missing))} but dataset "
            f"'{info.name}' has only: {', '.join(info.modalities)}"
        )
    encoders = {}
    for modality in modalities:
        ref = model.encoders.get(modality, model)
        family = registry.create("model", ref.name, **ref.params)
        try:
            encoder = family.build(modality, info.modalities[modality])
        except IncompatibleError as exc:
            raise IncompatibleError(
                f"model '{model.label}': {exc}; pick another encoder for it with "
                f"encoders: {{{modality}: <model>}} or leave it out with modalities: [...]"
            ) from None
        if getattr(encoder, "frozen", False):  # a pretrained encoder used as is: never trained further
            for p in encoder.parameters():
                p.requires_grad_(False)
        encoders[modality] = encoder
    chosen = model.fusion or fusion
    dims = {m: int(e.embed_dim) for m, e in encoders.items()}
    fusion_module = registry.create("fusion", chosen.name, dims, info.num_classes, **chosen.params)
    return MultimodalModel(encoders, fusion_module, info.num_classes)
