"""Decoupled knowledge distillation, Zhao, Cui, Song, Qiu & Liang, "Decoupled
Knowledge Distillation", CVPR 2022 (reference code: megvii-research/mdistiller,
``mdistiller/distillers/DKD.py``).

KD's KL is split at the target class ``y`` (``batch["label"]``) into two parts:

    p = softmax(z / T)                                   (student p^s, teacher p^t)
    b = [p_y, 1 - p_y]                                   binary target / non-target
    TCKD = T^2 / B * sum_batch sum_{j in {y, not y}} b^t_j * (log b^t_j - log b^s_j)
    q = softmax(z / T - 1000 * onehot(y))                non-target distribution
    NCKD = T^2 / B * sum_batch sum_c q^t_c * (log q^t_c - log q^s_c)
    dkd  = alpha * TCKD + beta * NCKD

NCKD removes the target class the way the authors do, by subtracting 1000 from
its temperature-scaled logit before the softmax, so ``q`` is the distribution over
the other classes. Terms where the teacher's probability is exactly 0 count
0 * log 0 = 0.

Default weights ``ce: 1.0, dkd: 1.0`` and ``alpha=1, beta=8, T=4`` are mdistiller's
defaults (``CFG.DKD.CE_WEIGHT = 1.0``, ``ALPHA = 1.0``, ``BETA = 8.0``, ``T = 4.0``),
used by its CIFAR-100 configs. mdistiller also ramps the DKD term in linearly over
its first 20 epochs (``CFG.DKD.WARMUP = 20``); that ramp is a property of the
training schedule, not of the loss, so it lives in the grid:
``{name: dkd, warmup: {dkd: 20}}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.loss import DistillationLoss
from kdbench.types import ModelOutput

_MASK = 1000.0  # what mdistiller subtracts from the target logit to drop it from NCKD


def _binary_log_probs(logits: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """log [p_y, 1 - p_y] of softmax(logits), (B, 2), computed in log space.

    mdistiller sums the probabilities and then takes ``torch.log``: when one side
    underflows to exactly 0 (a confident model) that gives log 0 = -inf and a NaN
    KL. ``log p_y = z_y - logsumexp(z)`` and ``log(1 - p_y) = logsumexp(z_not y) -
    logsumexp(z)`` are the same numbers, finite whatever the margin.
    """
    log_z = torch.logsumexp(logits, dim=1, keepdim=True)
    log_target = (logits * target_mask).sum(dim=1, keepdim=True) - log_z
    log_other = torch.logsumexp(logits.masked_fill(target_mask.bool(), float("-inf")), dim=1, keepdim=True) - log_z
    return torch.cat([log_target, log_other], dim=1)


def _kl_sum(log_p_teacher: torch.Tensor, log_p_student: torch.Tensor) -> torch.Tensor:
    """sum of p_t * (log p_t - log p_s) over every element; both logs are finite,
    so an exactly-0 teacher probability contributes 0 * finite = 0 (0 log 0 = 0)."""
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum()


class DKD(DistillationLoss):
    """Decoupled KD (Zhao et al., CVPR 2022): alpha * TCKD + beta * NCKD.

    ``dkd = alpha * TCKD + beta * NCKD``, each a KL summed over classes, times T^2,
    divided by the batch size, exactly as mdistiller's ``dkd_loss`` (see the module
    docstring for the formulas). The target class is ``batch["label"]``. Only the
    logits are read, so features of any rank are ignored. The 20-epoch linear
    warm-up of the paper is not in the loss: set ``warmup: {dkd: 20}`` in the grid.

    Args:
        alpha: weight of TCKD, the target-class (binary) part (1.0, mdistiller).
        beta: weight of NCKD, the non-target part (8.0, mdistiller's default and
            its CIFAR-100 setting for most pairs).
        temperature: softening temperature T (4.0, mdistiller).
    """

    terms = ("dkd",)
    teacher_outputs = ("logits",)  # all it reads of the teacher: cacheable
    default_weights = {"ce": 1.0, "dkd": 1.0}

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.alpha = alpha
        self.beta = beta
        self.temperature = temperature

    def forward(self, student_out: ModelOutput, teacher_out: ModelOutput | None,
                batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if teacher_out is None:
            raise ValueError("dkd needs the teacher's outputs")
        if "label" not in batch:
            raise ValueError("dkd needs the target class: batch['label'] is missing")
        z_s, z_t = student_out.logits, teacher_out.logits
        if z_s.shape != z_t.shape:
            raise ValueError(f"dkd: student logits {tuple(z_s.shape)} and teacher logits {tuple(z_t.shape)} differ")
        if z_s.shape[1] < 2:
            raise ValueError("dkd needs at least 2 classes (a target and a non-target part)")
        t = self.temperature
        batch_size = z_s.shape[0]
        target = batch["label"].reshape(-1).to(device=z_s.device, dtype=torch.long)
        mask = F.one_hot(target, z_s.shape[1]).to(z_s.dtype)
        s, te = z_s / t, z_t.to(z_s.dtype) / t

        tckd = _kl_sum(_binary_log_probs(te, mask), _binary_log_probs(s, mask)) * t**2 / batch_size
        log_q_t = F.log_softmax(te - _MASK * mask, dim=1)
        log_q_s = F.log_softmax(s - _MASK * mask, dim=1)
        nckd = _kl_sum(log_q_t, log_q_s) * t**2 / batch_size
        return {"dkd": self.alpha * tckd + self.beta * nckd}
