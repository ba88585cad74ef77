"""Probabilistic knowledge transfer, Passalis & Tefas, "Learning Deep Representations
with Probabilistic Knowledge Transfer", ECCV 2018.

PKT matches the conditional probability that sample i picks sample j as its
neighbour, estimated from cosine similarities within the batch, so student and
teacher may differ in width. With e_i the (flattened) embedding of sample i:

    x_i   = e_i / (||e_i|| + eps)
    k_ij  = (x_i . x_j + 1) / 2                  (cosine kernel mapped to [0, 1])
    p_ij  = k_ij / sum_j k_ij                     (rows -> conditional probabilities)
    pkt   = mean_{i,j} p^t_ij * log((p^t_ij + eps) / (p^s_ij + eps)),   eps = 1e-7

i.e. KL(P_t || P_s) averaged over all B^2 entries (not summed over j), as the
authors' code and RepDistiller's ``PKT.cosine_similarity_loss`` compute it
(``distiller_zoo/PKT.py``). The paper's loss sums the KL over i and j;
the reference's mean divides it by B^2, which the weight 30000 absorbs.
The reference also overwrites NaN entries of the normalised embeddings with 0; here
a NaN embedding is left to surface (the trainer stops on a non-finite loss) rather
than hidden; a zero embedding already normalises to 0 through the eps.

Default weights ``ce: 1, pkt: 30000``: RepDistiller's CIFAR-100 script
(``scripts/run_cifar_distill.sh``: ``--distill pkt -r 1 -a 0 -b 30000``; mdistiller
uses the same 30000).
"""

from __future__ import annotations

import torch

from kdbench.loss import DistillationLoss


def _conditional_probabilities(e: torch.Tensor, eps: float) -> torch.Tensor:
    x = e / (e.pow(2).sum(1, keepdim=True).sqrt() + eps)
    k = (x @ x.t() + 1.0) / 2.0
    return k / k.sum(1, keepdim=True)


class PKT(DistillationLoss):
    """Passalis & Tefas ECCV 2018: KL between cosine-kernel neighbour distributions.

    ``pkt = mean_{i,j} p_t * log((p_t + eps) / (p_s + eps))`` with
    ``p_ij = k_ij / sum_j k_ij`` and ``k_ij = (cos(e_i, e_j) + 1) / 2`` on the
    embeddings (RepDistiller's ``feat[-1]``). Features are not used; the embeddings
    are flattened to (B, D), and student and teacher widths may differ.

    Args:
        eps: the reference's 1e-7, added to the norms and inside the log ratio.
    """

    terms = ("pkt",)
    teacher_outputs = ("embedding",)  # all it reads of the teacher: cacheable
    default_weights = {"ce": 1.0, "pkt": 30000.0}

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError(f"pkt: eps must be > 0, got {eps}")
        self.eps = eps

    def forward(self, student_out, teacher_out, batch):
        if teacher_out is None:
            raise ValueError("pkt needs a teacher")
        s = student_out.embedding.flatten(1)
        t = teacher_out.embedding.flatten(1)
        if len(s) != len(t):
            raise ValueError(f"pkt: student and teacher batch sizes differ ({len(s)} vs {len(t)})")
        p_s = _conditional_probabilities(s, self.eps)
        p_t = _conditional_probabilities(t, self.eps)
        # An entry p_t = 0 (opposite embeddings) gives 0 * log(eps / (p_s + eps)) = 0 and a
        # p_s = 0 a finite log(p_t / eps): the eps is what keeps the term finite.
        return {"pkt": (p_t * torch.log((p_t + self.eps) / (p_s + self.eps))).mean()}
