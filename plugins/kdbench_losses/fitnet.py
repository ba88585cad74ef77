"""FitNets, Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin
Deep Nets", ICLR 2015.

A regressor r maps the student's guided layer (the hint's counterpart) onto the
teacher's hint layer, and the student learns to match it:

    fitnet = sum over matched names n of mean_elements (r_n(f_s[n]) - f_t[n])^2

the mean squared error over every element, as RepDistiller's ``HintLoss``
(``nn.MSELoss``) computes it. The regressor is RepDistiller's ``ConvReg``: a
convolution, batch normalisation and a ReLU (the teacher's taps are post-ReLU, as in
the paper, whose regressor uses the teacher's non-linearity). Per feature rank:

- 4-D (B, C, H, W): ``Conv2d`` 1x1 -> ``BatchNorm2d`` -> ReLU;
- 3-D (B, C, L):    ``Conv1d`` 1   -> ``BatchNorm1d`` -> ReLU;
- 2-D (B, D):       ``Linear``     -> ``BatchNorm1d`` -> ReLU.

When the spatial (or length) sizes differ, the larger map is adaptively
average-pooled to the smaller one, per dimension, before the regressor (a larger
student map) or as the target (a larger teacher map). When the two ranks differ
(e.g. an MLP student's (B, D) tap against a CNN teacher's (B, C, H, W) one), both are
global-average-pooled to (B, C) and the 2-D regressor is used.

Default weights ``ce: 1, fitnet: 100``: RepDistiller's CIFAR-100 script
(``scripts/run_cifar_distill.sh``: ``--distill hint -r 1 -a 0 -b 100``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from kdbench.loss import DistillationLoss
from kdbench_losses._features import align, match_features
from kdbench.types import ModelOutput


class FitNet(DistillationLoss):
    """Romero et al. ICLR 2015: regress the student's hint onto the teacher's.

    ``fitnet = sum_n mean((ReLU(BN(W_n * f_s[n])) - f_t[n])^2)`` over the matched
    feature names n, with the regressor W_n a 1x1 convolution (4-D), a size-1
    ``Conv1d`` (3-D) or a ``Linear`` layer (2-D), built in ``setup``.

    Departures from the references, and why:

    - Regressor kernel: the paper and RepDistiller pick a "valid" convolution whose
      kernel makes the sizes agree (RepDistiller: stride-2 3x3 conv when the student's
      map is twice the teacher's, a transposed conv when half, else a kernel of
      ``1 + s_H - t_H``); both give a 1x1 conv when the sizes already agree, which is
      what this regressor always is. Size differences are handled by adaptive
      average pooling of the larger map instead, as RepDistiller does for AT and VID:
      it works for any size ratio and any rank.
    - Hint layer: FitNet uses ONE hint. By default it is the LAST feature name the
      student and teacher share, in the student's order (RepDistiller's
      ``--hint_layer 2`` is a position, which kdbench never uses); name others with
      ``features``.
    - Two-stage training: RepDistiller adds the hint loss to cross-entropy in one
      stage (``hint_epochs=0``, the default). ``hint_epochs > 0`` gives the paper's
      first stage: the core trains the student (and the regressor) on the hint loss
      alone for that many epochs, never selecting a checkpoint among them, then
      distils with the grid's weights. The paper's second stage is Hinton KD without
      the hint; to drop the hint there, set the grid's weight ``fitnet: 0``. (The
      paper's stage 1 updates only the layers up to the guided one; here the whole
      student is in the optimiser, but layers after the hint get no gradient from it.)

    Args:
        features: names of the feature taps to match (in ``ModelOutput.features``);
            None = the last name the student and teacher share, in the student's order.
        hint_epochs: epochs of the hint-only stage before distillation; 0 = one stage.
    """

    terms = ("fitnet",)
    default_weights = {"ce": 1.0, "fitnet": 100.0}

    def __init__(self, features: list[str] | None = None, hint_epochs: int = 0) -> None:
        super().__init__()
        if isinstance(features, str):
            features = [features]
        if features is not None and not features:
            raise ValueError("fitnet: features must name at least one feature tap (or be left out)")
        if int(hint_epochs) != hint_epochs or hint_epochs < 0:
            raise ValueError(f"fitnet: hint_epochs must be an integer >= 0, got {hint_epochs}")
        self.features = list(features) if features is not None else None
        self.hint_epochs = int(hint_epochs)
        if self.hint_epochs > 0:
            # read by the core (kdbench.loss.DistillationLoss): a hint-only stage first
            self.pretrain_epochs = self.hint_epochs
            self.pretrain_weights = {"ce": 0.0, "fitnet": 1.0}
        self.names: list[str] = []
        self.regressors = nn.ModuleList()

    def setup(self, student_probe: ModelOutput, teacher_probe: ModelOutput | None) -> None:
        if teacher_probe is None:
            raise ValueError("fitnet needs a teacher")
        self.names = match_features(student_probe, teacher_probe, self.features, "fitnet")
        if self.features is None:
            self.names = self.names[-1:]  # one hint: the deepest shared tap
        self.regressors = nn.ModuleList()
        for name in self.names:
            f_s, f_t = align(student_probe.features[name], teacher_probe.features[name], name, "fitnet")
            self.regressors.append(_regressor(f_s.dim(), f_s.shape[1], f_t.shape[1]))

    def forward(self, student_out, teacher_out, batch):
        if not self.names:
            raise RuntimeError("fitnet: call setup(student_probe, teacher_probe) before the loss")
        total = student_out.logits.new_zeros(())
        for name, regressor in zip(self.names, self.regressors):
            f_s, f_t = align(student_out.features[name], teacher_out.features[name], name, "fitnet")
            total = total + F.mse_loss(regressor(f_s), f_t)
        return {"fitnet": total}


def _regressor(rank: int, c_s: int, c_t: int) -> nn.Module:
    """RepDistiller's ConvReg (conv, BN, ReLU) at 1x1, for a tap of ``rank``."""
    if rank == 4:
        return nn.Sequential(nn.Conv2d(c_s, c_t, kernel_size=1), nn.BatchNorm2d(c_t), nn.ReLU())
    if rank == 3:
        return nn.Sequential(nn.Conv1d(c_s, c_t, kernel_size=1), nn.BatchNorm1d(c_t), nn.ReLU())
    return nn.Sequential(nn.Linear(c_s, c_t), nn.BatchNorm1d(c_t), nn.ReLU())
