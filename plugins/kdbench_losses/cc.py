"""Correlation congruence, Peng, Jin, Liu, Li, Wu, Liu, Zhou & Zhang, "Correlation
Congruence for Knowledge Distillation", ICCV 2019.

CC matches the correlation between the samples of a batch, measured by a Gaussian
RBF kernel approximated by its P-order Taylor series. With f_i
the L2-normalised (projected) embedding of sample i:

    k(f_i, f_j) = exp(-gamma ||f_i - f_j||^2)
                = exp(-2 gamma) exp(2 gamma f_i.f_j)            (unit vectors)
               ~= exp(-2 gamma) sum_{p=0..P} (2 gamma)^p / p! (f_i.f_j)^p  =: C_ij
    cc          = ||C_t - C_s||_F^2 / B^2  =  mean_{i,j} (C_t_ij - C_s_ij)^2

with gamma = 0.4 and P = 2 (the Knowledge-Distillation-Zoo's values; torchdistill
reads both from its config).

Reference implementations differ; this follows the paper's equations, as the
Knowledge-Distillation-Zoo ``CC`` (AberHu, ``kd_losses/cc.py``) computes them:

- normalisation: the paper's squared Frobenius norm over B^2 (an MSE over the matrix
  entries); torchdistill's ``CCKDLoss`` (gaussian kernel) divides the *unsquared*
  Frobenius norm by B^2.
- L2 normalisation before the kernel: the Taylor form equals the RBF only for unit
  vectors; torchdistill applies the series to its raw linear outputs.
- RepDistiller's ``Correlation`` is a different formula altogether (the mean over
  consecutive samples of sum_d |f_s - f_t|_i |f_s - f_t|_{i+1}, "code emailed by the
  author"); it is not what this computes.

Projection: each side's C is B x B, so the kernel itself needs no common width.
RepDistiller and torchdistill nevertheless project BOTH embeddings with a trained
linear layer (RepDistiller ``LinearEmbed`` to 128, no normalisation; torchdistill
``Linear4CCKD``). A trained teacher-side projection can collapse (two projections
that send every sample to one direction give C_s = C_t and cc = 0 whatever the
student), so by default only the student is given a linear adapter, to the
teacher's width, when the widths differ; the teacher's kernel is computed on its own
embedding. ``feat_dim=128`` restores the references' two projections.

Default weights ``ce: 1, cc: 100``: the Knowledge-Distillation-Zoo's CIFAR script
(``example_train_script.sh``: ``--kd_mode cc --lambda_kd 100 --gamma 0.4 --P_order 2``),
whose formula this is. RepDistiller's ``-b 0.02`` belongs to its different formula.
The paper's full objective also adds a KD term; add ``kd`` as a separate method.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.loss import DistillationLoss
from kdbench.types import ModelOutput


class CC(DistillationLoss):
    """Peng et al. ICCV 2019: match the batch's Gaussian-RBF correlation matrices.

    ``cc = mean_{i,j} (C_t - C_s)^2`` with
    ``C_ij = exp(-2 gamma) sum_{p<=P} (2 gamma)^p / p! cos(f_i, f_j)^p`` on the
    (projected) embeddings (RepDistiller's ``feat[-1]``). Features are not used; the
    embeddings are flattened to (B, D).

    Args:
        gamma: the RBF kernel's gamma (0.4, Knowledge-Distillation-Zoo's).
        p_order: the order P of the Taylor series (2, Knowledge-Distillation-Zoo's).
        feat_dim: None (default) projects the student's embedding linearly to the
            teacher's width when they differ and leaves the teacher's alone; an int
            projects both with trained linear layers to that width, as RepDistiller
            (128) and torchdistill do.
    """

    terms = ("cc",)
    teacher_outputs = ("embedding",)  # all it reads of the teacher: cacheable
    default_weights = {"ce": 1.0, "cc": 100.0}

    def __init__(self, gamma: float = 0.4, p_order: int = 2, feat_dim: int | None = None) -> None:
        super().__init__()
        if gamma <= 0:
            raise ValueError(f"cc: gamma must be > 0, got {gamma}")
        if int(p_order) != p_order or p_order < 0:
            raise ValueError(f"cc: p_order must be an integer >= 0, got {p_order}")
        if feat_dim is not None and feat_dim < 1:
            raise ValueError(f"cc: feat_dim must be >= 1 or None, got {feat_dim}")
        self.gamma = gamma
        self.p_order = int(p_order)
        self.feat_dim = feat_dim
        self.embed_s: nn.Module = nn.Identity()
        self.embed_t: nn.Module = nn.Identity()
        # exp(-2 gamma) (2 gamma)^p / p!, p = 0..P
        self.coefficients = [math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p)
                             for p in range(self.p_order + 1)]

    def setup(self, student_probe: ModelOutput, teacher_probe: ModelOutput | None) -> None:
        if teacher_probe is None:
            raise ValueError("cc needs a teacher")
        d_s = student_probe.embedding.flatten(1).shape[1]
        d_t = teacher_probe.embedding.flatten(1).shape[1]
        if self.feat_dim is not None:
            self.embed_s = nn.Linear(d_s, self.feat_dim)
            self.embed_t = nn.Linear(d_t, self.feat_dim)
        elif d_s != d_t:
            self.embed_s = nn.Linear(d_s, d_t)

    def correlation(self, f: torch.Tensor) -> torch.Tensor:
        """C_ij, the P-order Taylor approximation of exp(-gamma ||f_i - f_j||^2)."""
        f = F.normalize(f, p=2, dim=1)
        cos = f @ f.t()
        corr = torch.full_like(cos, self.coefficients[0])
        power = torch.ones_like(cos)
        for c in self.coefficients[1:]:
            power = power * cos
            corr = corr + c * power
        return corr

    def forward(self, student_out, teacher_out, batch):
        if teacher_out is None:
            raise ValueError("cc needs a teacher")
        s = self.embed_s(student_out.embedding.flatten(1))
        t = self.embed_t(teacher_out.embedding.flatten(1))
        if len(s) != len(t):
            raise ValueError(f"cc: student and teacher batch sizes differ ({len(s)} vs {len(t)})")
        return {"cc": F.mse_loss(self.correlation(s), self.correlation(t))}
