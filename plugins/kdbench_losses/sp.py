"""Similarity-preserving knowledge distillation, Tung & Mori, "Similarity-Preserving
Knowledge Distillation", ICCV 2019.

Each sample's feature map is flattened to a row of Q (B, C*H*W); the batch's
pairwise similarities G = Q Q^T (B, B) are row-wise L2-normalised, and the student
matches the teacher's:

    G~ = normalize_rows(Q Q^T)
    sp = sum over matched names n of ||G~_t[n] - G~_s[n]||_F^2 / B^2

(paper, eq. 2-4; as RepDistiller's ``Similarity`` computes it). G is B x B whatever
the feature's shape, so any rank works and the student and teacher may differ in
channels, spatial size and rank: 4-D, 3-D and 2-D taps are all flattened per sample.

Default weights ``ce: 1, sp: 3000``: RepDistiller's CIFAR-100 script
(``scripts/run_cifar_distill.sh``: ``--distill similarity -r 1 -a 0 -b 3000``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.loss import DistillationLoss
from kdbench.types import ModelOutput


class SP(DistillationLoss):
    """Tung & Mori ICCV 2019: match the batch's normalised similarity matrices.

    ``sp = sum_n ||normalize(Q_t Q_t^T) - normalize(Q_s Q_s^T)||_F^2 / B^2`` over the
    matched feature names n, Q the (B, -1) flattened tap.

    The paper sums over pairs of layers; RepDistiller's CIFAR runs use one pair (the
    last block's output). kdbench's default matches every shared name, as the paper's
    sum allows; the term then grows with the number of pairs, so with the default
    weight 3000 (tuned for one pair) you may prefer ``features: [<one tap>]``.

    Args:
        features: names of the feature taps to match; None = every name the student
            and teacher share, in the student's order.
    """

    terms = ("sp",)
    default_weights = {"ce": 1.0, "sp": 3000.0}

    def __init__(self, features: list[str] | None = None) -> None:
        super().__init__()
        if isinstance(features, str):
            features = [features]
        if features is not None and not features:
            raise ValueError("sp: features must name at least one feature tap (or be left out)")
        self.features = list(features) if features is not None else None
        self.names: list[str] | None = None

    def setup(self, student_probe: ModelOutput, teacher_probe: ModelOutput | None) -> None:
        if teacher_probe is None:
            raise ValueError("sp needs a teacher")
        self.names = self._resolve(student_probe, teacher_probe)

    def _resolve(self, student: ModelOutput, teacher: ModelOutput) -> list[str]:
        s_names, t_names = list(student.features), list(teacher.features)
        if self.features is None:
            shared = [n for n in s_names if n in teacher.features]
            if not shared:
                raise ValueError(f"sp: the student and teacher share no feature name "
                                 f"(student: {s_names}, teacher: {t_names}); pass features=[...]")
            return shared
        for name in self.features:
            for side, available in (("student", s_names), ("teacher", t_names)):
                if name not in available:
                    raise ValueError(f"sp: feature '{name}' is not among the {side}'s features (available: {available})")
        return list(self.features)

    @staticmethod
    def similarity(f: torch.Tensor) -> torch.Tensor:
        """Row-normalised Gram matrix (B, B) of the per-sample flattened features."""
        q = f.reshape(f.shape[0], -1)
        return F.normalize(q @ q.t())

    def forward(self, student_out, teacher_out, batch):
        names = self.names if self.names is not None else self._resolve(student_out, teacher_out)
        total = student_out.logits.new_zeros(())
        for name in names:
            f_s, f_t = student_out.features[name], teacher_out.features[name]
            b = f_s.shape[0]
            diff = self.similarity(f_t) - self.similarity(f_s)
            total = total + diff.pow(2).sum() / (b * b)
        return {"sp": total}
