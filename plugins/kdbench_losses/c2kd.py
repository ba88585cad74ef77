"""C2KD: Huo, Xu, Guo, Wang & Guo, "C2KD: Bridging the Modality Gap for Cross-Modal
Knowledge Distillation", CVPR 2024 (official code: github.com/huofushuo/C2KD,
``*/utils/helper.py: train_network_distill``).

A student proxy ``g_s`` and a teacher proxy ``g_t`` (small classifiers on the two
models' embeddings) sit between the models. Each proxy learns from its own model
(uni-modal knowledge) and, bidirectionally, from the other proxy (cross-modal
knowledge), on the non-target classes only and only for the samples whose proxies
rank the classes alike (On-the-Fly Selection Distillation, OFSD). With
``z_s`` / ``z_t`` the student's / teacher's logits, ``q_s = g_s(e_s)``,
``q_t = g_t(e_t)``, ``y`` the labels, ``KL(a -> b)`` = KL(softmax(a/T) || softmax(b/T))
averaged over the batch, ``sg`` = stop-gradient:

    keep_b  = [ tau_b(q_s[b], q_t[b]) > kappa ]                  Kendall tau-b over the C classes
    NT(a -> b) = T^2 / B * sum_b keep_b * KL(nt(a_b / T) || nt(b_b / T))
        nt(.) = softmax over the non-target classes (the target class removed, DKD's NCKD)

    c2kd       = KL(sg z_s -> q_s) + KL(sg q_s -> z_s) + NT(sg q_t -> q_s)     student side
    c2kd_proxy = KL(sg z_t -> q_t) + NT(sg q_s -> q_t)                       teacher proxy

(The trainer adds ``ce`` on ``z_s``.) The official code's total is
``XE_s + XE_t + c2kd + c2kd_proxy + KL(sg q_t -> z_t)``, all weights 1.

Departures, and where paper and code differ:

- The teacher is frozen in kdbench (its outputs arrive computed under ``no_grad``);
  the official code trains the teacher too (its cross-entropy ``XE_t`` and the KL
  from its proxy, ``KL(sg q_t -> z_t)``, are in its loss and its parameters are in the
  optimiser). Those two terms are dropped: the teacher-side updates reach only the
  loss's own teacher proxy, which is trained (by ``c2kd_proxy``) although the teacher
  is not. The "customised" teacher of the paper is therefore the teacher proxy alone.
- Non-target distribution: the paper distils "from non-target classes" to avoid the
  modality imbalance of the target class, i.e. DKD's NCKD (a distribution over the
  C-1 non-target classes); the official ``ntkl`` instead multiplies the target logit
  by 0 and keeps it in a C-way softmax, so some mass stays on the target class. We
  follow the paper by default (``target_mask="remove"``); ``target_mask="zero"``
  reproduces the official code.
- Selection: the paper filters samples whose soft labels are misaligned by Kendall's
  rank correlation against a threshold. We follow the official code for the details:
  tau-b (``scipy.stats.kendalltau``'s default) between the two PROXIES' logits over
  all C classes, keep when ``tau > kappa`` strictly, ``kappa = 0`` (``--krc 0.0``); a
  sample whose tau is undefined (constant logits: scipy returns NaN) is dropped, as
  NaN > kappa is false in the code. The masked KL is averaged over the whole batch
  (dropped samples count as 0), as the code's ``(mask * kl).mean()``, not over the
  kept samples.
- Temperature: the code uses none (T = 1). ``temperature`` softens every KL and
  scales by T^2 (Hinton et al.); at the default T = 1 this is exactly the code.
- Proxies: the official proxies read the last-but-one ResNet stage (avg-pool,
  1x1 conv + BN + LeakyReLU(0.1), then a linear classifier). kdbench's models differ
  in their taps, so the proxies read the embedding each head reads (the fused one,
  or ``student_modality`` / ``teacher_modality``'s), through the same block in its
  (B, D) form: ``Linear(D, D, bias=False) -> BatchNorm1d -> LeakyReLU(0.1) ->
  Linear(D, C)`` (``proxy="mlp"``), or one ``Linear(D, C)`` (``proxy="linear"``).
  Feature taps (4-D, 3-D, 2-D) are not read.

``default_weights`` ``ce: 1, c2kd: 1, c2kd_proxy: 1``: the official code sums all its
terms with weight 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.loss import DistillationLoss
from kdbench.types import ModelOutput

from .cm_align import pick_embedding

TARGET_MASKS = ("remove", "zero")
PROXIES = ("mlp", "linear")


def _proxy(kind: str, dim: int, num_classes: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(dim, num_classes)
    return nn.Sequential(
        nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.LeakyReLU(0.1), nn.Linear(dim, num_classes))


class C2KD(DistillationLoss):
    """C2KD (Huo et al., CVPR 2024): bidirectional, non-target, rank-selected
    distillation between a student proxy and a teacher proxy.

        keep_b     = [ kendall_tau_b(q_s[b], q_t[b]) > kappa ]
        NT(a -> b) = T^2/B sum_b keep_b KL(softmax_{c != y_b}(a_b/T) || softmax_{c != y_b}(b_b/T))
        c2kd       = KL(sg z_s -> q_s) + KL(sg q_s -> z_s) + NT(sg q_t -> q_s)
        c2kd_proxy = KL(sg z_t -> q_t) + NT(sg q_s -> q_t)

    where ``q_s``, ``q_t`` are the proxies' logits on the student's and teacher's
    embeddings. See the module docstring for every choice between paper and code and
    for the frozen-teacher departure (only the teacher proxy is trained on the
    teacher side).

    Args:
        krc_threshold: kappa, the Kendall rank correlation a sample must exceed to be
            distilled (0.0, the official ``--krc``).
        temperature: softening of every KL, with the T^2 factor (1.0: the official code
            uses none).
        target_mask: "remove" (the paper: softmax over the non-target classes) or
            "zero" (the official code: target logit set to 0, C-way softmax).
        proxy: "mlp" (the official proxy block on a (B, D) input) or "linear".
        student_modality: feed this modality's embedding of the student to the student
            proxy instead of its fused embedding.
        teacher_modality: feed this modality's embedding of the teacher to the teacher
            proxy instead of its fused embedding.
    """

    terms = ("c2kd", "c2kd_proxy")
    teacher_outputs = ("logits", "embedding", "modality_embeddings")  # all it reads of the teacher: cacheable
    default_weights = {"ce": 1.0, "c2kd": 1.0, "c2kd_proxy": 1.0}

    def __init__(self, krc_threshold: float = 0.0, temperature: float = 1.0, target_mask: str = "remove",
                 proxy: str = "mlp", student_modality: str | None = None,
                 teacher_modality: str | None = None) -> None:
        super().__init__()
        if not -1.0 <= krc_threshold < 1.0:
            raise ValueError("c2kd: krc_threshold must be in [-1, 1): Kendall's tau is at most 1")
        if temperature <= 0:
            raise ValueError("c2kd: temperature must be > 0")
        if target_mask not in TARGET_MASKS:
            raise ValueError(f"c2kd: unknown target_mask {target_mask!r}; available: {', '.join(TARGET_MASKS)}")
        if proxy not in PROXIES:
            raise ValueError(f"c2kd: unknown proxy {proxy!r}; available: {', '.join(PROXIES)}")
        self.krc_threshold = krc_threshold
        self.temperature = temperature
        self.target_mask = target_mask
        self.proxy = proxy
        self.student_modality = student_modality
        self.teacher_modality = teacher_modality
        self.student_proxy: nn.Module | None = None
        self.teacher_proxy: nn.Module | None = None

    def setup(self, student_probe: ModelOutput, teacher_probe: ModelOutput | None) -> None:
        if teacher_probe is None:
            raise ValueError("c2kd needs a teacher")
        s = pick_embedding(student_probe, self.student_modality, "student", "c2kd")
        t = pick_embedding(teacher_probe, self.teacher_modality, "teacher", "c2kd")
        num_classes = student_probe.logits.shape[1]
        if teacher_probe.logits.shape[1] != num_classes:
            raise ValueError(f"c2kd: student and teacher disagree on the number of classes "
                             f"({num_classes} vs {teacher_probe.logits.shape[1]})")
        self.student_proxy = _proxy(self.proxy, s.shape[1], num_classes).to(device=s.device, dtype=s.dtype)
        self.teacher_proxy = _proxy(self.proxy, t.shape[1], num_classes).to(device=t.device, dtype=t.dtype)

    @staticmethod
    def rank_agreement(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Kendall's tau-b between the rows of ``a`` and ``b`` (B, C) -> (B,); NaN where
        a row is constant (undefined, as in scipy)."""
        c = a.shape[1]
        i, j = torch.triu_indices(c, c, offset=1, device=a.device)
        da = torch.sign(a[:, i] - a[:, j])
        db = torch.sign(b[:, i] - b[:, j])
        # tau_b = (concordant - discordant) / sqrt(pairs untied in a * pairs untied in b)
        den = (da.abs().sum(1) * db.abs().sum(1)).sqrt()
        return (da * db).sum(1) / den  # 0/0 = NaN for a constant row

    def select(self, student_proxy_logits: torch.Tensor, teacher_proxy_logits: torch.Tensor) -> torch.Tensor:
        """The OFSD mask (B,): samples whose proxies' rankings agree beyond ``krc_threshold``."""
        with torch.no_grad():
            tau = self.rank_agreement(student_proxy_logits, teacher_proxy_logits)
            return tau > self.krc_threshold  # NaN > kappa is False: undefined tau is dropped

    def _kl(self, target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        return F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(target / t, dim=1),
                        log_target=True, reduction="batchmean") * t * t

    def _non_target(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gt = F.one_hot(labels, z.shape[1]).bool()
        if self.target_mask == "zero":
            return z.masked_fill(gt, 0.0)  # the official ntkl: target logit * 0, C-way softmax
        return z[~gt].view(z.shape[0], z.shape[1] - 1)  # drop the target column exactly

    def _nt_kl(self, target: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
               keep: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        log_q = F.log_softmax(self._non_target(logits, labels) / t, dim=1)
        log_p = F.log_softmax(self._non_target(target, labels) / t, dim=1)
        per_sample = (log_p.exp() * (log_p - log_q)).sum(1)
        return (per_sample * keep.to(per_sample.dtype)).sum() / logits.shape[0] * t * t

    def forward(self, student_out, teacher_out, batch):
        if self.student_proxy is None or self.teacher_proxy is None:
            raise RuntimeError("c2kd: call setup(student_probe, teacher_probe) before the first forward")
        labels = batch["label"]
        q_s = self.student_proxy(pick_embedding(student_out, self.student_modality, "student", "c2kd"))
        q_t = self.teacher_proxy(pick_embedding(teacher_out, self.teacher_modality, "teacher", "c2kd"))
        z_s, z_t = student_out.logits, teacher_out.logits.detach()
        keep = self.select(q_s, q_t)
        student_side = (self._kl(z_s.detach(), q_s) + self._kl(q_s.detach(), z_s)
                        + self._nt_kl(q_t.detach(), q_s, labels, keep))
        teacher_proxy = self._kl(z_t, q_t) + self._nt_kl(q_s.detach(), q_t, labels, keep)
        return {"c2kd": student_side, "c2kd_proxy": teacher_proxy}
