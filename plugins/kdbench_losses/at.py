"""Attention transfer, Zagoruyko & Komodakis, "Paying More Attention to Attention:
Improving the Performance of Convolutional Neural Networks via Attention Transfer",
ICLR 2017.

The spatial attention map of a feature map f (B, C, H, W) is the channel mean of
its p-th power, flattened and L2-normalised per sample:

    at(f) = normalize(mean_c f^p, over the H*W positions)
    at    = sum over matched names n of mean_{b, j} (at(f_s[n])_bj - at(f_t[n])_bj)^2

as RepDistiller's ``Attention`` computes it (the mean, not the paper's sum, over
positions of the squared difference; f^p, not |f|^p: identical for the default
p = 2, and for the post-ReLU taps of kdbench's models whatever p). When the spatial
sizes differ, the larger feature map is adaptively average-pooled to the smaller one
(per dimension) BEFORE at(), as RepDistiller does. 3-D features (B, C, L) get the
same treatment over their length. 2-D features (B, D) have no spatial attention:
they are skipped by the default matching, as are names whose student and teacher
ranks differ; naming one explicitly is a ValueError.

Default weights ``ce: 1, at: 1000``: RepDistiller's CIFAR-100 script
(``scripts/run_cifar_distill.sh``: ``--distill attention -r 1 -a 0 -b 1000``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.loss import DistillationLoss
from kdbench.types import ModelOutput


class AT(DistillationLoss):
    """Zagoruyko & Komodakis ICLR 2017: match normalised spatial attention maps.

    ``at = sum_n mean((at(f_s[n]) - at(f_t[n]))^2)``, with
    ``at(f) = F.normalize(f.pow(p).mean(1).view(B, -1))`` after pooling the larger of
    the two maps to the smaller one's spatial size.

    Args:
        features: names of the feature taps to match; None = every name the student
            and teacher share whose taps are both 4-D or both 3-D (student's order;
            RepDistiller matches every intermediate block output).
        p: the power of the activations (2, the paper's and RepDistiller's).
    """

    terms = ("at",)
    default_weights = {"ce": 1.0, "at": 1000.0}

    def __init__(self, features: list[str] | None = None, p: float = 2.0) -> None:
        super().__init__()
        if isinstance(features, str):
            features = [features]
        if features is not None and not features:
            raise ValueError("at: features must name at least one feature tap (or be left out)")
        if p <= 0:
            raise ValueError(f"at: p must be > 0, got {p}")
        self.features = list(features) if features is not None else None
        self.p = p
        self.names: list[str] | None = None

    def setup(self, student_probe: ModelOutput, teacher_probe: ModelOutput | None) -> None:
        if teacher_probe is None:
            raise ValueError("at needs a teacher")
        self.names = self._resolve(student_probe, teacher_probe)

    def _resolve(self, student: ModelOutput, teacher: ModelOutput) -> list[str]:
        s_names, t_names = list(student.features), list(teacher.features)
        if self.features is None:
            shared = [n for n in s_names if n in teacher.features
                      and student.features[n].dim() == teacher.features[n].dim() in (3, 4)]
            if not shared:
                raise ValueError("at: the student and teacher share no feature name with spatial maps "
                                 f"(4-D or 3-D on both sides; student: {s_names}, teacher: {t_names}); "
                                 "pass features=[...]")
            return shared
        for name in self.features:
            for side, out, available in (("student", student, s_names), ("teacher", teacher, t_names)):
                if name not in available:
                    raise ValueError(f"at: feature '{name}' is not among the {side}'s features (available: {available})")
                if out.features[name].dim() not in (3, 4):
                    raise ValueError(f"at: the {side}'s feature '{name}' has shape {tuple(out.features[name].shape)}; "
                                     "attention transfer needs spatial maps, (B, C, H, W) or (B, C, L)")
            if student.features[name].dim() != teacher.features[name].dim():
                raise ValueError(f"at: feature '{name}' is {student.features[name].dim()}-D on the student and "
                                 f"{teacher.features[name].dim()}-D on the teacher; their attention maps do not match")
        return list(self.features)

    def attention(self, f: torch.Tensor) -> torch.Tensor:
        """at(f): the L2-normalised channel mean of f^p, one row per sample."""
        return F.normalize(f.pow(self.p).mean(1).reshape(f.shape[0], -1))

    def forward(self, student_out, teacher_out, batch):
        names = self.names if self.names is not None else self._resolve(student_out, teacher_out)
        total = student_out.logits.new_zeros(())
        for name in names:
            f_s, f_t = student_out.features[name], teacher_out.features[name]
            if f_s.shape[2:] != f_t.shape[2:]:
                size = tuple(min(a, b) for a, b in zip(f_s.shape[2:], f_t.shape[2:]))
                pool = F.adaptive_avg_pool2d if f_s.dim() == 4 else F.adaptive_avg_pool1d
                if tuple(f_s.shape[2:]) != size:
                    f_s = pool(f_s, size)
                if tuple(f_t.shape[2:]) != size:
                    f_t = pool(f_t, size)
            total = total + (self.attention(f_s) - self.attention(f_t)).pow(2).mean()
        return {"at": total}
