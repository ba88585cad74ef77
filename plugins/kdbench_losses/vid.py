"""Variational information distillation, Ahn, Hu, Damianou, Lawrence & Dai,
"Variational Information Distillation for Knowledge Transfer", CVPR 2019.

VID maximises a variational lower bound on the mutual information between teacher
and student features with a Gaussian q(t | s): its mean mu(s) is regressed from the
student's features and its variance sigma^2 is learned per teacher channel. The term
is q's negative log-likelihood of the teacher's features, without the constant
0.5 * log(2 pi):

    mu      = W3 * ReLU(W2 * ReLU(W1 * f_s))             (1x1 convolutions, no bias)
    sigma^2 = log(1 + exp(alpha)) + eps                   (one alpha per teacher channel)
    vid     = sum over matched names n of
              mean_{b, c, positions} 0.5 * ((mu - f_t)^2 / sigma^2 + log sigma^2)

as RepDistiller's ``VIDLoss`` (code from the paper's authors) computes it, with
alpha initialised so that sigma^2 = ``init_pred_var`` (5.0) and eps = 1e-5; the
regressor's hidden width is the teacher's channel count, as RepDistiller builds it
(``VIDLoss(s, t, t)``). The paper's softplus variance is computed with
``F.softplus`` (the same function, stable for large alpha).

Per feature rank: 4-D (B, C, H, W) uses 1x1 ``Conv2d``; 3-D (B, C, L) size-1
``Conv1d``; 2-D (B, D) ``Linear`` layers (the 1x1 convolution of a map with no
positions). When the spatial (length) sizes differ, the larger map is adaptively
average-pooled to the smaller, per dimension, as RepDistiller does; when the ranks
differ both taps are global-average-pooled to (B, C).

Default weights ``ce: 1, vid: 1``: RepDistiller's CIFAR-100 script
(``scripts/run_cifar_distill.sh``: ``--distill vid -r 1 -a 0 -b 1``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.loss import DistillationLoss
from kdbench_losses._features import align, match_features
from kdbench.types import ModelOutput


class VID(DistillationLoss):
    """Ahn et al. CVPR 2019: Gaussian likelihood of the teacher's features given the
    student's, with a learned mean regressor and per-channel variance.

    ``vid = sum_n mean(0.5 * ((mu_n(f_s) - f_t)^2 / sigma_n^2 + log sigma_n^2))``,
    ``sigma_n^2 = softplus(alpha_n) + eps``.

    Args:
        features: names of the feature taps to match; None = every name the student
            and teacher share, in the student's order (RepDistiller matches every
            intermediate block output).
        init_pred_var: initial variance sigma^2 of every channel (5.0, RepDistiller).
        eps: floor added to the variance (1e-5, RepDistiller).
    """

    terms = ("vid",)
    default_weights = {"ce": 1.0, "vid": 1.0}

    def __init__(self, features: list[str] | None = None, init_pred_var: float = 5.0, eps: float = 1e-5) -> None:
        super().__init__()
        if isinstance(features, str):
            features = [features]
        if features is not None and not features:
            raise ValueError("vid: features must name at least one feature tap (or be left out)")
        if eps < 0:
            raise ValueError(f"vid: eps must be >= 0, got {eps}")
        if init_pred_var <= eps:
            raise ValueError(f"vid: init_pred_var must be > eps ({eps}), got {init_pred_var}")
        self.features = list(features) if features is not None else None
        self.init_pred_var, self.eps = init_pred_var, eps
        self.names: list[str] = []
        self.regressors = nn.ModuleList()
        self.log_scales = nn.ParameterList()

    def setup(self, student_probe: ModelOutput, teacher_probe: ModelOutput | None) -> None:
        if teacher_probe is None:
            raise ValueError("vid needs a teacher")
        self.names = match_features(student_probe, teacher_probe, self.features, "vid")
        self.regressors, self.log_scales = nn.ModuleList(), nn.ParameterList()
        # softplus^-1(init_pred_var - eps), so that the initial variance is init_pred_var
        alpha0 = math.log(math.expm1(self.init_pred_var - self.eps))
        for name in self.names:
            f_s, f_t = align(student_probe.features[name], teacher_probe.features[name], name, "vid")
            c_s, c_t = f_s.shape[1], f_t.shape[1]
            self.regressors.append(_regressor(f_s.dim(), c_s, c_t, c_t))
            self.log_scales.append(nn.Parameter(torch.full((c_t,), alpha0)))

    def forward(self, student_out, teacher_out, batch):
        if not self.names:
            raise RuntimeError("vid: call setup(student_probe, teacher_probe) before the loss")
        total = student_out.logits.new_zeros(())
        for name, regressor, alpha in zip(self.names, self.regressors, self.log_scales):
            f_s, f_t = align(student_out.features[name], teacher_out.features[name], name, "vid")
            mean = regressor(f_s)
            var = (F.softplus(alpha) + self.eps).view(1, -1, *([1] * (f_t.dim() - 2)))
            total = total + (0.5 * ((mean - f_t).pow(2) / var + var.log())).mean()
        return {"vid": total}


def _regressor(rank: int, c_in: int, c_mid: int, c_out: int) -> nn.Module:
    """RepDistiller's three bias-free 1x1 layers with ReLUs between, for ``rank``."""
    if rank == 2:
        layer = lambda i, o: nn.Linear(i, o, bias=False)  # noqa: E731
    else:
        conv = nn.Conv2d if rank == 4 else nn.Conv1d
        layer = lambda i, o: conv(i, o, kernel_size=1, bias=False)  # noqa: E731
    return nn.Sequential(layer(c_in, c_mid), nn.ReLU(), layer(c_mid, c_mid), nn.ReLU(), layer(c_mid, c_out))
