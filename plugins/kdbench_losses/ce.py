"""The no-teacher baseline: the student trained with cross-entropy alone.

It adds no term: the trainer always adds ``ce``. Every KD gain in a leaderboard
is measured against this method on the same student, fusion and seed.
"""

from __future__ import annotations

from kdbench.loss import DistillationLoss


class CrossEntropyOnly(DistillationLoss):
    """No teacher: cross-entropy alone."""

    needs_teacher = False
    baseline = True

    def forward(self, student_out, teacher_out, batch):
        return {}
