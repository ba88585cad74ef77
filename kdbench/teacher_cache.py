"""The teacher-output cache: a frozen teacher's outputs on the training split,
computed once and served by sample index.

Many methods read only the teacher's logits or embeddings (``teacher_outputs`` on
the loss). Without random augmentation those are the same at every epoch and for
every student of that teacher, so running the teacher at every step is wasted work:
the cache runs it once over the training split (in evaluation mode, as distillation
does) and a :class:`CachedTeacher` then stands in for the teacher, answering each
batch from ``batch["index"]``. Each sample is run through the teacher in a batch of
the training batch size, the same arithmetic as without the cache (see the test
that compares both).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from kdbench.types import ModelOutput, TensorSplit

FIELDS = ("logits", "embedding", "modality_embeddings")


def cacheable(loss: nn.Module, split: object, augmented: bool) -> bool:
    wanted = getattr(loss, "teacher_outputs", None)
    return wanted is not None and set(wanted) <= set(FIELDS) and isinstance(split, TensorSplit) and not augmented


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, split: TensorSplit, batch_size: int) -> dict[str, torch.Tensor]:
    """Logits, embedding and modality embeddings of every sample of ``split``."""
    teacher.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    n = len(split)
    device = split.tensors["label"].device
    for start in range(0, n, batch_size):
        out = teacher(split.batch(torch.arange(start, min(start + batch_size, n), device=device)))
        for key, value in (("logits", out.logits), ("embedding", out.embedding),
                           *((f"modality.{m}", e) for m, e in out.modality_embeddings.items())):
            parts.setdefault(key, []).append(value)
    return {k: torch.cat(v) for k, v in parts.items()}


class CachedTeacher(nn.Module):
    """Answers ``teacher(batch)`` from cached outputs, by ``batch["index"]``.

    It has no features: only methods that declare they read none get it.
    """

    def __init__(self, outputs: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.outputs = outputs

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        idx = batch["index"]
        return ModelOutput(
            self.outputs["logits"][idx],
            self.outputs["embedding"][idx],
            OrderedDict(),
            {k.split(".", 1)[1]: v[idx] for k, v in self.outputs.items() if k.startswith("modality.")},
        )
