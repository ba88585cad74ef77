"""DIST, Huang, You, Wang, Qian & Xu, "Knowledge Distillation from A Stronger
Teacher", NeurIPS 2022 (reference code: hunto/DIST_KD and
hunto/image_classification_sota, ``lib/models/losses/dist_kd.py``).

DIST replaces KD's exact match of probabilities with a match of their relations,
measured by Pearson correlation, so the student need not copy the scale of a much
stronger teacher:

    P^s = softmax(Z^s / tau),  P^t = softmax(Z^t / tau)           (B, C)
    rho(u, v) = <u - mean(u), v - mean(v)> / (||u - mean(u)|| * ||v - mean(v)|| + 1e-8)
    inter = 1 - (1/B) sum_i rho(P^s[i, :], P^t[i, :])     (each sample across classes)
    intra = 1 - (1/C) sum_c rho(P^s[:, c], P^t[:, c])     (each class across the batch)
    dist  = tau^2 * (beta * inter + gamma * intra)

The 1e-8 is added to the product of the norms, as in the official code (not
clamped, not inside the square roots): it keeps rho finite when a row or column is
constant (e.g. the intra term of a batch of one, where rho = 0 and intra = 1).

Defaults ``beta = gamma = tau = 1`` and weights ``ce: 1.0, dist: 1.0`` are those of
the official ImageNet code (``DIST(beta=1, gamma=1)`` on plain softmax, combined with
the classification loss at ``ori_loss_weight = kd_loss_weight = 1``); the official
repositories ship no CIFAR-100 configuration.
"""

from __future__ import annotations

import torch

from kdbench.loss import DistillationLoss
from kdbench.types import ModelOutput

_EPS = 1e-8  # the official code's epsilon in the cosine of the centred vectors


def _mean_pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over rows of the Pearson correlation of a's and b's rows, with the
    official epsilon added to the denominator."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    rho = (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + _EPS)
    return rho.mean()


class DIST(DistillationLoss):
    """DIST (Huang et al., NeurIPS 2022): inter- and intra-class Pearson relations.

    ``dist = tau^2 * (beta * (1 - mean_i rho(P^s_i, P^t_i)) + gamma * (1 - mean_c
    rho(P^s_c, P^t_c)))`` over rows (samples) and columns (classes) of the
    temperature-softened probabilities; see the module docstring. Only the logits
    are read, so features of any rank are ignored. The intra-class part correlates
    classes across the batch, so it depends on the batch (a batch of one makes it
    a constant 1).

    Args:
        beta: weight of the inter-class relation (1.0, official code).
        gamma: weight of the intra-class relation (1.0, official code).
        tau: softmax temperature (1.0, the official ImageNet setting, whose code
            has no tau). The relations are multiplied by tau^2 as in the paper's
            formulas and in ports that expose tau (e.g. MMRazor's ``DISTLoss``);
            with tau = 1 this is the official code exactly.
    """

    terms = ("dist",)
    teacher_outputs = ("logits",)  # all it reads of the teacher: cacheable
    default_weights = {"ce": 1.0, "dist": 1.0}

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, tau: float = 1.0) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.beta = beta
        self.gamma = gamma
        self.tau = tau

    def forward(self, student_out: ModelOutput, teacher_out: ModelOutput | None,
                batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if teacher_out is None:
            raise ValueError("dist needs the teacher's outputs")
        z_s, z_t = student_out.logits, teacher_out.logits
        if z_s.shape != z_t.shape:
            raise ValueError(f"dist: student logits {tuple(z_s.shape)} and teacher logits {tuple(z_t.shape)} differ")
        p_s = torch.softmax(z_s / self.tau, dim=1)
        p_t = torch.softmax(z_t.to(z_s.dtype) / self.tau, dim=1)
        inter = 1 - _mean_pearson(p_s, p_t)
        intra = 1 - _mean_pearson(p_s.t(), p_t.t())
        return {"dist": self.tau**2 * (self.beta * inter + self.gamma * intra)}
