"""A controlled multimodal classification task, generated exactly from a seed.

Every sample has a class ``y`` and a latent ``z = mu_y + latent_noise * eps`` in
R^k, shared by all modalities. Each modality renders ``z`` its own way, scaled by
its *informativeness* ``s_m`` and buried in Gaussian noise of std ``noise``:

- ``image`` (1, H, W): ``s * sum_j z_j T_j`` with smooth random templates T_j;
- ``audio`` (1, L): ``s * sum_j z_j sin(2 pi f_j t + phi_j)``, a chord of tones;
- ``vector`` (D,): ``s * tanh(B z)``, a fixed random non-linear map.

So the modalities carry the same label information at different signal-to-noise
ratios: a teacher that fuses them beats any single modality, which is what makes
cross-modal distillation measurable.

``shared`` sets how much of that information is common to all modalities, the
set-up of the modality focusing hypothesis (Xue et al., ICLR 2023): each modality
renders ``z_m = sqrt(shared) * z + sqrt(1 - shared) * u_m``, where ``u_m = nu^m_y +
latent_noise * eps_m`` is a class-dependent latent of its own (class means ``nu^m``
independent of ``mu``). With ``shared = 1`` (the default) every modality shows the
same latent; with ``shared = 0`` each is decisive on its own terms, and what a
teacher learns from one modality says nothing of another's features.

Modalities are named by kind: ``image``, ``audio``, ``vector``, optionally with a
number to have several of a kind (``vector2``, ``image3``), each with its own
templates and specific latent. The data (not the training) depend only on
``seed``; runs with different run seeds see the same samples.
"""

from __future__ import annotations

import math

import torch

from kdbench.errors import UserError
from kdbench.types import DatasetInfo, DatasetSplits, ModalitySpec, TensorSplit

import re

_KINDS = ("image", "audio", "vector")


def _kind(name: str) -> str | None:
    m = re.fullmatch(r"(image|audio|vector)(\d*)", name)
    return m.group(1) if m else None


class Synthetic:
    """Seeded multimodal classes with per-modality informativeness."""

    def __init__(
        self,
        num_classes: int = 10,
        modalities: list[str] | None = None,
        informativeness: dict[str, float] | None = None,
        noise: float = 1.0,
        shared: float = 1.0,
        latent_dim: int = 8,
        latent_noise: float = 0.6,
        image_size: int = 16,
        audio_length: int = 256,
        vector_dim: int = 32,
        train_size: int = 2000,
        val_size: int = 500,
        test_size: int = 1000,
        seed: int = 0,
    ) -> None:
        self.modalities = list(modalities or ["image", "audio", "vector"])
        unknown = [m for m in self.modalities if _kind(m) is None]
        if unknown:
            raise UserError(f"synthetic has no modality {unknown[0]!r}; name each by kind: "
                            f"{', '.join(_KINDS)}, optionally numbered (vector2)")
        if len(set(self.modalities)) != len(self.modalities):
            raise UserError("synthetic: a modality is listed twice")
        if not 0.0 <= shared <= 1.0:
            raise UserError(f"synthetic: shared must be in [0, 1], got {shared}")
        self.shared = shared
        defaults = {"image": 1.0, "audio": 0.6, "vector": 0.4}
        self.informativeness = {m: defaults[_kind(m)] for m in self.modalities}
        self.informativeness.update(informativeness or {})
        if num_classes < 2:
            raise UserError("synthetic needs num_classes >= 2")
        self.num_classes = num_classes
        self.noise = noise
        self.latent_dim = latent_dim
        self.latent_noise = latent_noise
        self.image_size = image_size
        self.audio_length = audio_length
        self.vector_dim = vector_dim
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.seed = seed

    def info(self) -> DatasetInfo:
        shapes = {
            "image": (1, self.image_size, self.image_size),
            "audio": (1, self.audio_length),
            "vector": (self.vector_dim,),
        }
        return DatasetInfo(
            name="synthetic",
            num_classes=self.num_classes,
            class_names=tuple(f"class{i}" for i in range(self.num_classes)),
            modalities={m: ModalitySpec(_kind(m), shapes[_kind(m)]) for m in self.modalities},
            split_sizes=dict(self.sizes),
        )

    def load(self) -> DatasetSplits:
        g = torch.Generator().manual_seed(self.seed)
        k = self.latent_dim
        mu = torch.randn(self.num_classes, k, generator=g) * 1.0
        base = self._renderers(g)  # the renderers of image, audio and vector
        # Everything beyond the default set-up (numbered modalities, specific latents)
        # draws from generators of its own, so the default data never change.
        extra = {m: torch.Generator().manual_seed(self.seed * 7919 + i + 1) for i, m in enumerate(self.modalities)}
        renderers = {m: base[m] if m in base else self._renderers(extra[m])[_kind(m)] for m in self.modalities}
        specific_means = {m: torch.randn(self.num_classes, k, generator=extra[m]) for m in self.modalities}

        splits = {}
        for split, n in self.sizes.items():
            y = torch.randint(0, self.num_classes, (n,), generator=g)
            z = mu[y] + self.latent_noise * torch.randn(n, k, generator=g)
            tensors = {"label": y}
            for m in self.modalities:
                s = float(self.informativeness.get(m, 1.0))
                zm = z
                if self.shared < 1.0:
                    u = specific_means[m][y] + self.latent_noise * torch.randn(n, k, generator=extra[m])
                    zm = math.sqrt(self.shared) * z + math.sqrt(1.0 - self.shared) * u
                clean = renderers[m](zm)
                noise = self.noise * torch.randn(clean.shape, generator=g)
                tensors[m] = (s * clean + noise).float()
            splits[split] = TensorSplit(tensors)
        return DatasetSplits(self.info(), splits["train"], splits["val"], splits["test"])

    def _renderers(self, g: torch.Generator) -> dict:
        """One fixed random rendering of a latent per kind (drawn in this order)."""
        k = self.latent_dim
        templates = _smooth(torch.randn(k, 1, self.image_size, self.image_size, generator=g))
        freqs = torch.rand(k, generator=g) * 0.2 + 0.01
        phases = torch.rand(k, generator=g) * 2 * math.pi
        t = torch.arange(self.audio_length, dtype=torch.float32)
        tones = torch.sin(2 * math.pi * freqs[:, None] * t[None, :] + phases[:, None])  # (k, L)
        proj = torch.randn(self.vector_dim, k, generator=g) / math.sqrt(k)
        return {
            "image": lambda z: torch.einsum("nk,kchw->nchw", z, templates),
            "audio": lambda z: (z @ tones).unsqueeze(1) / math.sqrt(k),
            "vector": lambda z: torch.tanh(z @ proj.T),
        }


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """Blur random fields into smooth templates, normalised to unit RMS."""
    kernel = torch.ones(1, 1, 5, 5) / 25.0
    x = torch.nn.functional.conv2d(x, kernel, padding=2)
    x = torch.nn.functional.conv2d(x, kernel, padding=2)
    return x / x.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
