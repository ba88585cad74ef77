"""Relational knowledge distillation, Park, Kim, Lu & Cho, "Relational Knowledge
Distillation", CVPR 2019.

RKD transfers the *structure* of a batch of embeddings rather than the embeddings
themselves, so student and teacher may differ in width (no projection is needed).
With e_i the (flattened) embedding of sample i of a batch of B:

    d_ij   = ||e_i - e_j||_2,  computed as sqrt(max(|e_i|^2 + |e_j|^2 - 2 e_i.e_j, 1e-12)),
             with d_ii = 0
    psi_D  = d_ij / mu,   mu = mean of the off-diagonal d_ij (the positive distances)
    u_ij   = (e_j - e_i) / ||e_j - e_i||          (0 when j = i)
    psi_A  = <u_ij, u_ik>  for all i, j, k         (cosine of the angle at vertex i)

    rkd = distance_weight * mean_{i,j} smoothL1(psi_D^s - psi_D^t)
        + angle_weight    * mean_{i,j,k} smoothL1(psi_A^s - psi_A^t)

with smooth-L1 of threshold 1 (Huber) and the means over all B^2 and B^3 entries
(diagonal and degenerate triplets included), as RepDistiller's ``RKDLoss`` computes
it (``distiller_zoo/RKD.py``; the same in mdistiller and torchdistill).

Departure: a batch of one sample has no positive distance, where the reference
divides 0 by an empty mean (NaN); here the distance term is then 0.

Default weights ``ce: 1, rkd: 1``: RepDistiller's CIFAR-100 script
(``scripts/run_cifar_distill.sh``: ``--distill rkd -r 1 -a 0 -b 1``), with the
distance and angle weights 25 and 50 inside the term (RepDistiller's ``w_d``,
``w_a``; mdistiller's ``DISTANCE_WEIGHT``, ``ANGLE_WEIGHT``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.loss import DistillationLoss


def _distances(e: torch.Tensor, eps: float) -> torch.Tensor:
    """Pairwise Euclidean distances normalised by their mean off-diagonal value."""
    sq = e.pow(2).sum(1)
    # The Gram form is the reference's; the clamp keeps sqrt's gradient finite at 0.
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps).sqrt()
    eye = torch.eye(len(e), dtype=torch.bool, device=e.device)
    d = d.masked_fill(eye, 0.0)
    # Off-diagonal entries are >= sqrt(eps) > 0, so this is the reference's
    # d[d > 0].mean() without a data-dependent shape; clamp_min(1): B = 1 gives 0, not NaN.
    mean = d.sum() / (d > 0).sum().clamp_min(1)
    return d / mean.clamp_min(torch.finfo(d.dtype).tiny)


def _angles(e: torch.Tensor) -> torch.Tensor:
    """Cosines <u_ij, u_ik> of all triplets, flattened (B^3)."""
    diff = e.unsqueeze(0) - e.unsqueeze(1)  # diff[i, j] = e_j - e_i
    unit = F.normalize(diff, p=2, dim=2)  # the zero vectors (j = i) stay 0
    return torch.bmm(unit, unit.transpose(1, 2)).flatten()


class RKD(DistillationLoss):
    """Park et al. CVPR 2019: match the batch's distance and angle relations.

    ``rkd = distance_weight * smoothL1(psi_D(e_s), psi_D(e_t))
    + angle_weight * smoothL1(psi_A(e_s), psi_A(e_t))`` on the embeddings (the
    representation the head reads, RepDistiller's ``feat[-1]``). Features are not
    used; the embeddings are flattened to (B, D), and student and teacher widths
    may differ.

    Args:
        distance_weight: weight of the distance term (25, RepDistiller's ``w_d``).
        angle_weight: weight of the angle term (50, RepDistiller's ``w_a``).
        eps: floor of the squared distances before the square root (1e-12, the
            reference's ``pdist`` eps).
    """

    terms = ("rkd",)
    teacher_outputs = ("embedding",)  # all it reads of the teacher: cacheable
    default_weights = {"ce": 1.0, "rkd": 1.0}

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0, eps: float = 1e-12) -> None:
        super().__init__()
        if distance_weight < 0 or angle_weight < 0:
            raise ValueError("rkd: distance_weight and angle_weight must be >= 0, "
                             f"got {distance_weight}, {angle_weight}")
        if eps <= 0:
            raise ValueError(f"rkd: eps must be > 0, got {eps}")
        self.distance_weight = distance_weight
        self.angle_weight = angle_weight
        self.eps = eps

    def forward(self, student_out, teacher_out, batch):
        if teacher_out is None:
            raise ValueError("rkd needs a teacher")
        s = student_out.embedding.flatten(1)
        t = teacher_out.embedding.flatten(1)
        if len(s) != len(t):
            raise ValueError(f"rkd: student and teacher batch sizes differ ({len(s)} vs {len(t)})")
        with torch.no_grad():  # the teacher's relations are targets
            t_d = _distances(t, self.eps)
            t_a = _angles(t)
        loss_d = F.smooth_l1_loss(_distances(s, self.eps), t_d)
        loss_a = F.smooth_l1_loss(_angles(s), t_a)
        return {"rkd": self.distance_weight * loss_d + self.angle_weight * loss_a}
