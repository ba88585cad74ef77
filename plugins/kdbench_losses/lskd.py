"""Logit-standardised KD, Sun, Ren, Li, Wang & Cao, "Logit Standardization in
Knowledge Distillation", CVPR 2024 (reference code:
sunshangquan/logit-standardization-KD, ``mdistiller/distillers/KD.py`` with
``--logit-stand``).

Teacher and student logits are each z-scored per sample before Hinton's KD, so the
student matches the teacher's logit *relations* rather than their range:

    std(z) = sqrt( sum_c (z_c - mean(z))^2 / (C - 1) )      (unbiased, torch.std)
    n(z)   = (z - mean(z)) / (std(z) + 1e-7)                 per sample, over classes
    lskd   = T^2 * mean_batch sum_c p_t(c) * (log p_t(c) - log p_s(c)),
    p_t = softmax(n(z_t) / T),  p_s = softmax(n(z_s) / T)

i.e. a softmax whose temperature is the base temperature T times the sample's own
logit standard deviation (the paper's "weighted standard deviation" temperature).
The 1e-7 (added to the std, not the variance) and the unbiased std are the
official code's; so is the T^2 factor, kept from KD.

Because of the z-score, adding a constant to a sample's logits or multiplying
them by a positive factor leaves the loss unchanged (up to the 1e-7).

Defaults ``T = 2`` and weights ``ce: 0.1, lskd: 9.0`` are the official CIFAR-100
setting for KD + logit standardisation (README: ``--logit-stand --base-temp 2
--kd-weight 9``; ``CFG.KD.LOSS.CE_WEIGHT = 0.1`` kept from mdistiller's KD, as
the authors confirm in the repository's issue #8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.loss import DistillationLoss
from kdbench.types import ModelOutput

_EPS = 1e-7  # the official code's guard against a zero standard deviation


def _standardize(logits: torch.Tensor) -> torch.Tensor:
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True)  # unbiased (C - 1), as torch.std in the official code
    return (logits - mean) / (std + _EPS)


class LSKD(DistillationLoss):
    """KD on z-scored logits (Sun et al., CVPR 2024).

    ``lskd = T^2 * mean_batch KL(softmax(n(z_t)/T) || softmax(n(z_s)/T))`` with
    ``n(z) = (z - mean_c z) / (std_c z + 1e-7)`` (unbiased std) per sample; see
    the module docstring. Only the logits are read, so features of any rank are
    ignored. A sample whose logits are all equal standardises to zeros (uniform
    probabilities), which is finite.

    Args:
        temperature: base temperature T (2.0, the official CIFAR-100 setting
            ``--base-temp 2``).
    """

    terms = ("lskd",)
    teacher_outputs = ("logits",)  # all it reads of the teacher: cacheable
    default_weights = {"ce": 0.1, "lskd": 9.0}

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, student_out: ModelOutput, teacher_out: ModelOutput | None,
                batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if teacher_out is None:
            raise ValueError("lskd needs the teacher's outputs")
        z_s, z_t = student_out.logits, teacher_out.logits
        if z_s.shape != z_t.shape:
            raise ValueError(f"lskd: student logits {tuple(z_s.shape)} and teacher logits {tuple(z_t.shape)} differ")
        if z_s.shape[1] < 2:
            raise ValueError("lskd needs at least 2 classes (the standard deviation over one class is undefined)")
        t = self.temperature
        log_p_s = F.log_softmax(_standardize(z_s) / t, dim=1)
        log_p_t = F.log_softmax(_standardize(z_t.to(z_s.dtype)) / t, dim=1)
        kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")
        return {"lskd": kl * t * t}
