"""The base class of distillation methods (loss plugins).

A loss is an ``nn.Module`` built with explicit keyword hyper-parameters whose
defaults are the paper's. Class attributes tell the core what it needs to know
without knowing the method:

- ``needs_teacher``: False for methods trained without a teacher (the ``ce``
  baseline); the plan then runs them once per student, not once per teacher.
- ``terms``: the names of the terms ``forward`` returns, so a grid's ``weights:``
  can be checked before training.
- ``teacher_outputs``: the parts of the teacher's ``ModelOutput`` the method reads
  (``"logits"``, ``"embedding"``, ``"modality_embeddings"``), or None (the default)
  for "anything, features included". When it is a tuple and the data has no random
  augmentation, the core computes those teacher outputs once per (teacher, training
  split) and serves them by sample index instead of running the teacher every step.
- ``baseline``: True for the method every KD gain is measured against (``ce``):
  leaderboards pair each method with the baseline run of the same student.
- ``default_weights``: the paper's weights of its terms and of ``ce``; the grid's
  ``weights:`` override them; a term not listed weighs 1.

Instance attributes the core reads or sets:

- ``dataset_info``: set by the core before ``setup`` (class count, split sizes: e.g.
  the size of a memory bank indexed by ``batch["index"]``).
- ``pretrain_epochs`` / ``pretrain_weights``: a method with a stage before
  distillation (FitNet's hint training) sets these; the trainer then first trains for
  that many epochs with those term weights (``ce`` included, 0 to leave it out),
  without selecting a checkpoint, then distils with the grid's weights.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from kdbench.types import DatasetInfo, ModelOutput


class DistillationLoss(nn.Module):
    needs_teacher: ClassVar[bool] = True
    baseline: ClassVar[bool] = False
    teacher_outputs: ClassVar[tuple[str, ...] | None] = None
    terms: ClassVar[tuple[str, ...]] = ()
    default_weights: ClassVar[dict[str, float]] = {}
    dataset_info: DatasetInfo | None = None
    pretrain_epochs: int = 0
    pretrain_weights: dict[str, float] = {}

    def __init__(self) -> None:  # no hyper-parameters unless a subclass declares them
        super().__init__()

    def setup(self, student_probe: ModelOutput, teacher_probe: ModelOutput | None) -> None:
        """Build adapters/projectors from the shapes of one probe batch's outputs.

        Called once before training; parameters created here are trained with the
        student. The default does nothing.
        """

    def forward(
        self, student_out: ModelOutput, teacher_out: ModelOutput | None, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Named, unweighted loss terms; the term named after the method is the
        published formula."""
        raise NotImplementedError
