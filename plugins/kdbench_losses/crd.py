"""Contrastive representation distillation, Tian, Krishnan & Isola, "Contrastive
Representation Distillation", ICLR 2020.

CRD maximises a lower bound on the mutual information between the student's and
the teacher's representations with noise-contrastive estimation (NCE) against a
memory bank of past embeddings. As RepDistiller's ``CRDLoss`` (``crd/criterion.py``,
``crd/memory.py``) computes it:

    v_s = normalize(W_s e_s + b_s),  v_t = normalize(W_t e_t + b_t)   (feat_dim 128)
    memories M_s, M_t: N x feat_dim, N = the train split's size, row n = sample n

For a sample of index i, with K negatives j_1..j_K and j_0 = i:

    h_s(k) = exp(M_t[j_k] . v_s / T) / Z_s       (student anchor, teacher memory)
    h_t(k) = exp(M_s[j_k] . v_t / T) / Z_t       (teacher anchor, student memory)
    nce(h) = -1/B sum_batch [ log(h(0) / (h(0) + K/N + eps))
                              + sum_{k=1..K} log((K/N) / (h(k) + K/N + eps)) ]
    crd    = nce(h_s) + nce(h_t),        T = 0.07, eps = 1e-7

Z_s and Z_t are constants estimated once, on the first training batch, as
N * mean over the batch's B * (K + 1) values of exp(. / T) (the reference's
"normalization constant"). After the losses, in training mode only and without
gradient, the rows of the batch's samples move towards the new embeddings:
M_s[i] <- normalize(m M_s[i] + (1 - m) v_s), likewise M_t, with momentum m = 0.5.
The memories start uniform in [-1/sqrt(feat_dim / 3), +1/sqrt(feat_dim / 3)], as the
reference's.

Negatives (a choice): RepDistiller's CIFAR-100 benchmark takes negatives from its
dataset (``CIFAR100InstanceSample``, mode ``exact``): K indices of samples of OTHER
classes, without replacement. The memory's own fallback sampler draws N-way uniform
indices with replacement (an alias table over uniform weights), the positive
included. A loss here does not know the labels of the whole train split, so it
draws uniformly with replacement among the N - 1 other samples: the positive is
excluded, as in the benchmark, and K is capped at N - 1. The draws come from a
generator of the loss's own, seeded at ``setup`` from the global torch RNG, so a
fixed ``torch.manual_seed`` gives the same negatives (on the same device).

Departures without effect on the value: L2 normalisation uses ``F.normalize``
(norm floored at 1e-12, where the reference divides by the raw norm, NaN for a zero
vector); the memories and Z constants are buffers (saved with the loss's state).

Default weights ``ce: 1, crd: 0.8``: RepDistiller's CIFAR-100 script
(``scripts/run_cifar_distill.sh``: ``--distill crd -r 1 -a 0 -b 0.8``; the "CRD+KD"
line adds ``-a 1``, i.e. a separate ``kd`` term; mdistiller uses the same 0.8).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.loss import DistillationLoss
from kdbench.types import ModelOutput


class CRD(DistillationLoss):
    """Tian et al. ICLR 2020: NCE between student and teacher embeddings against
    momentum memory banks of the whole train split.

    ``crd = nce(student anchor vs teacher memory) + nce(teacher anchor vs student
    memory)``, on the embeddings (RepDistiller's ``feat[-1]``) projected by trained
    linear layers to ``feat_dim`` and L2-normalised. Features are not used; the
    embeddings are flattened to (B, D), and their widths may differ. Needs
    ``batch["index"]`` (each sample's index in the train split) and
    ``dataset_info.split_sizes["train"]`` (the memories' size N).

    Args:
        feat_dim: width of the contrastive embedding (128, RepDistiller's ``feat_dim``).
        num_negatives: K, negatives per sample (16384, RepDistiller's ``nce_k``),
            capped at N - 1.
        temperature: T (0.07, RepDistiller's ``nce_t``).
        momentum: m of the memory update (0.5, RepDistiller's ``nce_m``).
        eps: the reference's 1e-7 in the NCE ratios.
    """

    terms = ("crd",)
    teacher_outputs = ("embedding",)  # all it reads of the teacher: cacheable
    default_weights = {"ce": 1.0, "crd": 0.8}

    def __init__(self, feat_dim: int = 128, num_negatives: int = 16384, temperature: float = 0.07,
                 momentum: float = 0.5, eps: float = 1e-7) -> None:
        super().__init__()
        if feat_dim < 1:
            raise ValueError(f"crd: feat_dim must be >= 1, got {feat_dim}")
        if num_negatives < 1:
            raise ValueError(f"crd: num_negatives must be >= 1, got {num_negatives}")
        if temperature <= 0:
            raise ValueError(f"crd: temperature must be > 0, got {temperature}")
        if not 0 <= momentum < 1:
            raise ValueError(f"crd: momentum must be in [0, 1), got {momentum}")
        self.feat_dim = feat_dim
        self.num_negatives = num_negatives
        self.temperature = temperature
        self.momentum = momentum
        self.eps = eps
        self.embed_s: nn.Linear | None = None
        self.embed_t: nn.Linear | None = None
        self.num_samples = 0  # N
        self.k = 0  # K after capping
        self.register_buffer("memory_s", None)
        self.register_buffer("memory_t", None)
        # Z_s, Z_t; negative = not estimated yet (the reference's -1 sentinels).
        self.register_buffer("z", torch.full((2,), -1.0))
        self._seed = 0
        self._generators: dict[Any, torch.Generator] = {}

    def setup(self, student_probe: ModelOutput, teacher_probe: ModelOutput | None) -> None:
        if teacher_probe is None:
            raise ValueError("crd needs a teacher")
        sizes = getattr(self.dataset_info, "split_sizes", None) or {}
        n = sizes.get("train")
        if not n:
            raise ValueError("crd needs the train split's size for its memory bank: set "
                             "loss.dataset_info (with split_sizes['train']) before setup()")
        if n < 2:
            raise ValueError(f"crd needs at least 2 training samples (one positive, one negative), got {n}")
        self.num_samples = int(n)
        self.k = min(self.num_negatives, self.num_samples - 1)
        d_s = student_probe.embedding.flatten(1).shape[1]
        d_t = teacher_probe.embedding.flatten(1).shape[1]
        self.embed_s = nn.Linear(d_s, self.feat_dim)
        self.embed_t = nn.Linear(d_t, self.feat_dim)
        stdv = 1.0 / math.sqrt(self.feat_dim / 3)
        self.memory_s = torch.rand(self.num_samples, self.feat_dim).mul_(2 * stdv).sub_(stdv)
        self.memory_t = torch.rand(self.num_samples, self.feat_dim).mul_(2 * stdv).sub_(stdv)
        self.z.fill_(-1.0)
        self._seed = int(torch.randint(0, 2**62, (1,)).item())
        self._generators = {}

    def _generator(self, device: torch.device) -> tuple[torch.Generator, torch.device]:
        key = str(device)
        if key not in self._generators:
            try:
                gen = torch.Generator(device=device)
            except RuntimeError:  # a device without its own generators: draw on the CPU
                gen = torch.Generator()
            self._generators[key] = gen.manual_seed(self._seed)
        gen = self._generators[key]
        return gen, gen.device

    def sample_negatives(self, index: torch.Tensor) -> torch.Tensor:
        """(B, K) indices drawn uniformly, with replacement, among the N - 1 samples
        other than each row's positive ``index``."""
        gen, where = self._generator(index.device)
        draw = torch.randint(0, self.num_samples - 1, (len(index), self.k), generator=gen, device=where)
        draw = draw.to(index.device)
        # Shift the draws at or above the positive by one: uniform over the others.
        return draw + (draw >= index.unsqueeze(1)).long()

    def embed(self, student_out: ModelOutput, teacher_out: ModelOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """The L2-normalised contrastive embeddings v_s, v_t."""
        v_s = F.normalize(self.embed_s(student_out.embedding.flatten(1)), p=2, dim=1)
        v_t = F.normalize(self.embed_t(teacher_out.embedding.flatten(1)), p=2, dim=1)
        return v_s, v_t

    def _nce(self, h: torch.Tensor) -> torch.Tensor:
        """The reference's ``ContrastLoss`` on (B, K + 1) normalised scores, positive first."""
        noise = self.k / self.num_samples  # K * P_n with the uniform noise P_n = 1 / N
        log_pos = torch.log(h[:, 0] / (h[:, 0] + noise + self.eps))
        log_neg = torch.log(noise / (h[:, 1:] + noise + self.eps))
        return -(log_pos.sum() + log_neg.sum()) / len(h)

    def forward(self, student_out, teacher_out, batch):
        if teacher_out is None:
            raise ValueError("crd needs a teacher")
        if self.embed_s is None or self.memory_s is None:
            raise RuntimeError("crd: call setup() before the first forward (it builds the memory bank)")
        index = batch.get("index") if hasattr(batch, "get") else None
        if index is None:
            raise ValueError("crd needs batch['index'], each sample's index in the train split")
        index = index.to(self.memory_s.device).long().flatten()
        if bool((index < 0).any()) or bool((index >= self.num_samples).any()):
            raise ValueError(f"crd: batch['index'] must lie in [0, {self.num_samples}) (the train split's size)")
        v_s, v_t = self.embed(student_out, teacher_out)
        idx = torch.cat([index.unsqueeze(1), self.sample_negatives(index)], dim=1)  # (B, K + 1)
        # Memory rows are buffers (no gradient): only the anchors are trained.
        e_s = torch.exp(torch.bmm(self.memory_t[idx], v_s.unsqueeze(2)).squeeze(2) / self.temperature)
        e_t = torch.exp(torch.bmm(self.memory_s[idx], v_t.unsqueeze(2)).squeeze(2) / self.temperature)
        z = self.z
        if bool((z < 0).any()):
            with torch.no_grad():
                estimate = torch.stack([e_s.mean(), e_t.mean()]) * self.num_samples
                z = torch.where(z < 0, estimate, z)
                if self.training:  # fixed once, on the first training batch
                    self.z.copy_(z)
        loss = self._nce(e_s / z[0]) + self._nce(e_t / z[1])
        if self.training:
            with torch.no_grad():
                m = self.momentum
                for memory, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
                    row = memory[index] * m + v.to(memory.dtype) * (1 - m)
                    memory.index_copy_(0, index, F.normalize(row, p=2, dim=1))
        return {"crd": loss}
