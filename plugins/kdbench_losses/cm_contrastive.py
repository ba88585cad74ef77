"""Cross-modal contrastive distillation: symmetric InfoNCE between the student's and
the teacher's embeddings of the same samples.

The objective is CLIP's (Radford et al., "Learning Transferable Visual Models From
Natural Language Supervision", ICML 2021) with the student and the teacher as the two
towers; as a distillation method it is the in-batch form of contrastive
representation distillation (Tian, Krishnan & Isola, "Contrastive Representation
Distillation", ICLR 2020), without CRD's memory bank of negatives:

    u_b = normalize(W_s s_b),  v_b = normalize(W_t t_b)           (both of width ``dim``)
    L_ij = exp(lambda) * <u_i, v_j>,   exp(lambda) clamped at 100
    cm-contrastive = 1/2 * [ 1/B sum_i -log softmax_j(L_ij)[i]       (rows: student -> teacher)
                           + 1/B sum_j -log softmax_i(L_ij)[j] ]     (cols: teacher -> student)

Positives are on the diagonal (the same sample seen by the two models), the other
samples of the batch are the negatives. ``lambda = log(1 / temperature)`` is a
learnable parameter initialised at ``log(1 / 0.07)`` as in CLIP. CLIP clips it after
each optimiser step so that the logit scale never exceeds 100; kdbench's trainer owns
the optimiser, so we clamp ``exp(lambda)`` at 100 in the forward instead (the scale
then receives no gradient while clamped, which likewise stops it from growing).

Both projections are ``Linear`` layers built in ``setup`` and trained with the
student (the teacher's projection too: the teacher itself stays frozen). Only
embeddings are used; the feature taps are not read.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.loss import DistillationLoss
from kdbench.types import ModelOutput

from .cm_align import pick_embedding

MAX_LOGIT_SCALE = 100.0  # CLIP, section 2.5: "clipped to prevent scaling the logits by more than 100"


class CrossModalContrastive(DistillationLoss):
    """Symmetric InfoNCE (CLIP, Radford et al. 2021; in-batch CRD, Tian et al. 2020)
    between projected, L2-normalised student and teacher embeddings.

        cm-contrastive = (CE(rows) + CE(cols)) / 2,
        logits = min(exp(lambda), 100) * normalize(W_s s) @ normalize(W_t t)^T,
        targets = the diagonal

    Args:
        dim: width of the shared space the two projections map to (128, CRD's
            ``feat_dim``).
        temperature: initial temperature, ``lambda = log(1 / temperature)`` (0.07, CLIP).
        learn_temperature: train ``lambda`` with the student (CLIP) or keep it fixed.
        student_modality: use this modality's embedding of the student instead of its
            fused embedding.
        teacher_modality: use this modality's embedding of the teacher instead of its
            fused embedding.

    ``default_weights`` ``ce: 1, cm-contrastive: 0.8`` are CRD's in RepDistiller's
    CIFAR-100 runs (``-a 0 -b 0.8``), the nearest benchmarked contrastive KD objective.
    """

    terms = ("cm-contrastive",)
    teacher_outputs = ("embedding", "modality_embeddings")  # all it reads of the teacher: cacheable
    default_weights = {"ce": 1.0, "cm-contrastive": 0.8}

    def __init__(self, dim: int = 128, temperature: float = 0.07, learn_temperature: bool = True,
                 student_modality: str | None = None, teacher_modality: str | None = None) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError("cm-contrastive: dim must be >= 1")
        if temperature <= 0:
            raise ValueError("cm-contrastive: temperature must be > 0")
        self.dim = dim
        self.student_modality = student_modality
        self.teacher_modality = teacher_modality
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("logit_scale", log_scale)
        self.proj_student: nn.Linear | None = None
        self.proj_teacher: nn.Linear | None = None

    def setup(self, student_probe: ModelOutput, teacher_probe: ModelOutput | None) -> None:
        if teacher_probe is None:
            raise ValueError("cm-contrastive needs a teacher")
        s = pick_embedding(student_probe, self.student_modality, "student", "cm-contrastive")
        t = pick_embedding(teacher_probe, self.teacher_modality, "teacher", "cm-contrastive")
        self.proj_student = nn.Linear(s.shape[1], self.dim).to(device=s.device, dtype=s.dtype)
        self.proj_teacher = nn.Linear(t.shape[1], self.dim).to(device=t.device, dtype=t.dtype)
        self.to(device=s.device)

    def forward(self, student_out, teacher_out, batch):
        if self.proj_student is None or self.proj_teacher is None:
            raise RuntimeError("cm-contrastive: call setup(student_probe, teacher_probe) before the first forward")
        s = pick_embedding(student_out, self.student_modality, "student", "cm-contrastive")
        t = pick_embedding(teacher_out, self.teacher_modality, "teacher", "cm-contrastive")
        u = F.normalize(self.proj_student(s), dim=1)
        v = F.normalize(self.proj_teacher(t), dim=1)
        scale = self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        logits = scale * u @ v.t()
        target = torch.arange(logits.shape[0], device=logits.device)
        value = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        return {"cm-contrastive": value}
