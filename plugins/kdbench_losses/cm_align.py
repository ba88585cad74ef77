"""Cross-modal embedding alignment: a generic baseline, not one paper's method.

The student's embedding (its fused one, or the embedding of one modality it sees) is
mapped by a learned linear projection ``W`` to the teacher's width and pulled towards
the teacher's embedding (fused, or one of its modalities) on the same samples:

    mse:     cm-align = 1/(B*D_t) * sum_b ||W s_b + c - t_b||^2
    cosine:  cm-align = 1/B * sum_b (1 - cos(W s_b + c, t_b))

This is the idea of cross-modal feature regression, closest to Gupta, Hoffman &
Malik, "Cross Modal Distillation for Supervision Transfer", CVPR 2016 (an L2 loss
between a paired modality's features and a trained network's features, the student
learning from RGB-labelled pairs), combined with the linear regressor of FitNets
(Romero et al., ICLR 2015). Neither paper aligns fused multimodal embeddings; the
projection and the metric choice are kdbench's.

``mse`` is on the raw embeddings, as Gupta et al. and FitNets regress raw features:
it also transfers the teacher's scale. We do not L2-normalise first, because on unit
vectors ``||u - v||^2 = 2 - 2 cos(u, v)``, so normalised MSE would only be the
``cosine`` metric divided by ``D_t / 2``; ``cosine`` is the scale-free choice.

Only embeddings are used (``ModelOutput.embedding`` / ``modality_embeddings``, all
(B, D)); the feature taps (4-D, 3-D or 2-D) are not read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.loss import DistillationLoss
from kdbench.types import ModelOutput

METRICS = ("mse", "cosine")


def pick_embedding(out: ModelOutput, modality: str | None, side: str, method: str) -> torch.Tensor:
    """``out.embedding`` when ``modality`` is None, else ``out.modality_embeddings[modality]``.

    Raises:
        ValueError: naming the modalities ``side`` ("student" or "teacher") sees.
    """
    if modality is None:
        return out.embedding
    if modality not in out.modality_embeddings:
        seen = ", ".join(repr(m) for m in out.modality_embeddings) or "none"
        raise ValueError(
            f"{method}: {side}_modality={modality!r} is not a modality the {side} sees "
            f"(it sees: {seen}); name one of those, or leave {side}_modality unset to use "
            f"the {side}'s fused embedding")
    return out.modality_embeddings[modality]


class CrossModalAlign(DistillationLoss):
    """Project the student's embedding to the teacher's width and align them.

    A generic cross-modal baseline (closest published form: Gupta et al., CVPR 2016,
    "Cross Modal Distillation for Supervision Transfer"), not a paper's method.

        mse:     1/(B*D_t) * sum_b ||W s_b + c - t_b||^2   (raw embeddings)
        cosine:  1/B * sum_b (1 - cos(W s_b + c, t_b))

    ``W, c`` is a ``Linear(D_s, D_t)`` built in ``setup`` and trained with the student.
    The teacher side is its fused embedding, or ``teacher_modality``'s embedding when
    named (e.g. align an audio-only student with the teacher's audio encoder).

    Args:
        metric: "mse" or "cosine" (see the module docstring for why MSE is on the raw
            embeddings).
        student_modality: read this modality's embedding of the student instead of its
            fused embedding.
        teacher_modality: align to this modality's embedding of the teacher instead of
            its fused embedding.

    ``default_weights`` ``ce: 1, cm-align: 1``: there is no reference benchmark for this
    baseline; equal weights are the neutral choice (grid ``weights:`` override them).
    """

    terms = ("cm-align",)
    teacher_outputs = ("embedding", "modality_embeddings")  # all it reads of the teacher: cacheable
    default_weights = {"ce": 1.0, "cm-align": 1.0}

    def __init__(self, metric: str = "mse", student_modality: str | None = None,
                 teacher_modality: str | None = None) -> None:
        super().__init__()
        if metric not in METRICS:
            raise ValueError(f"cm-align: unknown metric {metric!r}; available: {', '.join(METRICS)}")
        self.metric = metric
        self.student_modality = student_modality
        self.teacher_modality = teacher_modality
        self.proj: nn.Linear | None = None

    def setup(self, student_probe: ModelOutput, teacher_probe: ModelOutput | None) -> None:
        if teacher_probe is None:
            raise ValueError("cm-align needs a teacher")
        s = pick_embedding(student_probe, self.student_modality, "student", "cm-align")
        t = pick_embedding(teacher_probe, self.teacher_modality, "teacher", "cm-align")
        self.proj = nn.Linear(s.shape[1], t.shape[1]).to(device=s.device, dtype=s.dtype)

    def forward(self, student_out, teacher_out, batch):
        if self.proj is None:
            raise RuntimeError("cm-align: call setup(student_probe, teacher_probe) before the first forward")
        s = self.proj(pick_embedding(student_out, self.student_modality, "student", "cm-align"))
        t = pick_embedding(teacher_out, self.teacher_modality, "teacher", "cm-align")
        if self.metric == "mse":
            value = F.mse_loss(s, t)
        else:
            value = (1.0 - F.cosine_similarity(s, t, dim=1)).mean()
        return {"cm-align": value}
