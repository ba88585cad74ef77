"""The data contracts between datasets, models, fusions, losses and the trainer.

- A *batch* is a mapping from modality name (``"image"``, ``"audio"``, ...) to a
  tensor, plus ``"label"`` (long) and ``"index"`` (long: each sample's index in its
  split, needed by memory-bank methods such as CRD).
- A *split* is either a :class:`TensorSplit` (every sample in memory: the fast path
  for small data, batches drawn by index, can live on the GPU) or any
  ``torch.utils.data.Dataset`` yielding per-sample mappings (large data, random
  augmentation). The trainer takes both.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # torch stays out of light imports (kdbench list, --help)
    import torch
    from torch import nn

MODALITY_KINDS = ("image", "audio", "text", "vector", "sequence")

Batch = Mapping[str, "torch.Tensor"]


@dataclass(frozen=True)
class ModalitySpec:
    """One modality of a dataset.

    Attributes:
        kind: image (C, H, W) | audio (C, T) or (F, T) | text (token ids, L) |
            vector (D,) | sequence (C, L).
        shape: the shape of one sample, without the batch dimension.
        vocab_size: for token modalities, the number of token ids (id 0 is padding).
        vocab: for token modalities, the token string of each id (``vocab[0] == ""``,
            the padding), so that an encoder with its own tokenizer (a pretrained
            transformer) can recover the text: ``joiner.join(vocab[i] for i in ids)``.
        joiner: what goes between tokens when text is recovered ("" for characters).
    """

    kind: str
    shape: tuple[int, ...]
    vocab_size: int | None = None
    vocab: tuple[str, ...] = ()
    joiner: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    class_names: tuple[str, ...]
    modalities: dict[str, ModalitySpec]
    split_sizes: dict[str, int] = field(default_factory=dict)
    augmented: bool = False  # random augmentation: teacher outputs cannot be cached


class TensorSplit:
    """A split held in memory: one tensor per modality plus ``label``.

    ``index`` is added on the fly, so every batch says which samples it holds.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        sizes = {k: len(v) for k, v in tensors.items()}
        if "label" not in tensors:
            raise ValueError("a TensorSplit needs a 'label' tensor")
        if len(set(sizes.values())) != 1:
            raise ValueError(f"all tensors of a split must have the same length, got {sizes}")
        self.tensors = dict(tensors)

    def __len__(self) -> int:
        return len(self.tensors["label"])

    def to(self, device: torch.device | str) -> TensorSplit:
        return TensorSplit({k: v.to(device) for k, v in self.tensors.items()})

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {k: v[index] for k, v in self.tensors.items()}
        out["index"] = index
        return out


@dataclass
class DatasetSplits:
    info: DatasetInfo
    train: Any  # TensorSplit | torch.utils.data.Dataset
    val: Any
    test: Any


class Dataset(Protocol):
    """What a dataset factory returns."""

    def info(self) -> DatasetInfo: ...

    def load(self) -> DatasetSplits: ...


@dataclass
class EncoderOutput:
    """What an encoder returns for one modality: its embedding and named taps
    (stage names without the modality prefix: ``"layer1"``, ``"layer2"``)."""

    embedding: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)


class EncoderFactory(Protocol):
    """What a model factory returns: it builds one encoder per modality."""

    def build(self, modality: str, spec: ModalitySpec) -> nn.Module:
        """An ``nn.Module`` with ``embed_dim`` whose forward returns an
        :class:`EncoderOutput`, or raise ``IncompatibleError``."""
        ...


@dataclass
class FusionOutput:
    """A fusion's result: the fused embedding and, for fusions that classify
    themselves (late fusion), the logits; otherwise the model's head does."""

    embedding: torch.Tensor
    logits: torch.Tensor | None = None


@dataclass
class ModelOutput:
    """Everything a distillation loss may read from a model.

    Attributes:
        logits: (B, C).
        embedding: (B, D), the representation the head reads (the fused one).
        features: ordered, named intermediate tensors (``"image.layer1"``, ...).
        modality_embeddings: modality -> (B, D_m).
    """

    logits: torch.Tensor
    embedding: torch.Tensor
    features: OrderedDict[str, torch.Tensor] = field(default_factory=OrderedDict)
    modality_embeddings: dict[str, torch.Tensor] = field(default_factory=dict)

    def detach(self) -> ModelOutput:
        return ModelOutput(
            self.logits.detach(),
            self.embedding.detach(),
            OrderedDict((k, v.detach()) for k, v in self.features.items()),
            {k: v.detach() for k, v in self.modality_embeddings.items()},
        )
