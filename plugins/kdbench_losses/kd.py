"""Knowledge distillation, Hinton, Vinyals & Dean, "Distilling the Knowledge in a
Neural Network", 2015.

    kd = T^2 * mean_batch sum_c p_t(c) * (log p_t(c) - log p_s(c)),
    p_t = softmax(z_t / T),  p_s = softmax(z_s / T)

i.e. KL(p_t || p_s) summed over classes, averaged over the batch and scaled by T^2
so the gradient's magnitude does not shrink with T (paper, section 2).
Default weights ``ce: 0.1, kd: 0.9`` are those of the CIFAR-100 benchmarks of
RepDistiller (Tian et al. 2020) and mdistiller (Zhao et al. 2022).
"""

from __future__ import annotations

import torch.nn.functional as F

from kdbench.loss import DistillationLoss


class KD(DistillationLoss):
    """Hinton et al. 2015: KL between temperature-softened teacher and student.

    Args:
        temperature: softening temperature T (4.0, as in RepDistiller and mdistiller).
    """

    terms = ("kd",)
    teacher_outputs = ("logits",)  # all it reads of the teacher: cacheable
    default_weights = {"ce": 0.1, "kd": 0.9}

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = temperature

    def forward(self, student_out, teacher_out, batch):
        t = self.temperature
        log_p_s = F.log_softmax(student_out.logits / t, dim=1)
        log_p_t = F.log_softmax(teacher_out.logits / t, dim=1)
        kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")
        return {"kd": kl * t * t}
