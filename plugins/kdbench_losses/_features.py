"""Feature matching shared by the feature-distillation methods (fitnet, vid).

Taps are matched by name, never by position, and brought to the same rank and
spatial size before a regressor compares them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.types import ModelOutput


def match_features(student: ModelOutput, teacher: ModelOutput, names: list[str] | None, method: str) -> list[str]:
    """The feature names to match: ``names`` checked on both sides, or every shared
    name in the student's order."""
    s_names, t_names = list(student.features), list(teacher.features)
    if names is None:
        shared = [n for n in s_names if n in teacher.features]
        if not shared:
            raise ValueError(f"{method}: the student and teacher share no feature name "
                             f"(student: {s_names}, teacher: {t_names}); pass features=[...]")
        return shared
    for name in names:
        for side, available in (("student", s_names), ("teacher", t_names)):
            if name not in available:
                raise ValueError(f"{method}: feature '{name}' is not among the {side}'s features "
                                 f"(available: {available})")
    return list(names)


def align(f_s: torch.Tensor, f_t: torch.Tensor, name: str, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Same rank and spatial size: pool the larger map to the smaller, per dimension;
    global-average-pool both to (B, C) when the ranks differ."""
    for f in (f_s, f_t):
        if f.dim() not in (2, 3, 4):
            raise ValueError(f"{method}: feature '{name}' has shape {tuple(f.shape)}; "
                             "only (B, D), (B, C, L) and (B, C, H, W) taps are supported")
    if f_s.dim() != f_t.dim():
        return f_s.flatten(2).mean(2) if f_s.dim() > 2 else f_s, f_t.flatten(2).mean(2) if f_t.dim() > 2 else f_t
    if f_s.dim() > 2 and f_s.shape[2:] != f_t.shape[2:]:
        size = tuple(min(a, b) for a, b in zip(f_s.shape[2:], f_t.shape[2:]))
        pool = F.adaptive_avg_pool2d if f_s.dim() == 4 else F.adaptive_avg_pool1d
        if tuple(f_s.shape[2:]) != size:
            f_s = pool(f_s, size)
        if tuple(f_t.shape[2:]) != size:
            f_t = pool(f_t, size)
    return f_s, f_t
