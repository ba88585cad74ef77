from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

os.environ["KDBENCH_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only kdbench's builtins, whatever else is installed

import torch  # noqa: E402

# Tiny models: one thread is as fast, and never oversubscribes a busy machine.
torch.set_num_threads(1)

TINY_DATA = "{name: synthetic, train_size: 160, val_size: 64, test_size: 96, image_size: 8, audio_length: 32, vector_dim: 8, num_classes: 4, label: tiny}"


def tiny_grid(**overrides: str) -> str:
    """A small grid: trains in seconds on a CPU. Overrides replace whole top-level keys."""
    keys = {
        "name": "tiny",
        "datasets": f"[{TINY_DATA}]",
        "teachers": "[{model: cnn, width: 8, depth: 2}]",
        "students": "[{model: mlp, width: 16}, {model: mlp, width: 8, modalities: [audio]}]",
        "fusions": "[concat]",
        "methods": "[ce, kd]",
        "seeds": "[0]",
        "train": "{epochs: 2, batch_size: 32, lr: 0.05}",
        "metrics": "{latency: false}",
    }
    keys.update(overrides)
    return "\n".join(f"{k}: {v}" for k, v in keys.items() if v is not None) + "\n"


@pytest.fixture
def write_grid(tmp_path: Path):
    def write(text: str | None = None, name: str = "grid.yaml", **overrides: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text) if text is not None else tiny_grid(**overrides))
        return path

    return write


@pytest.fixture(scope="session")
def registry():
    from kdbench import load_registry

    return load_registry()


LOSS_PLUGIN = '''
"""A one-file method plugin: KD on the embeddings' cosine, to test --plugin."""
import torch.nn.functional as F

from kdbench import hookimpl
from kdbench.loss import DistillationLoss


class CosineEmbedding(DistillationLoss):
    """Align the student's logits direction with the teacher's (test plugin)."""

    terms = ("cos",)

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, student_out, teacher_out, batch):
        cos = F.cosine_similarity(student_out.logits, teacher_out.logits, dim=1)
        return {"cos": self.scale * (1 - cos).mean()}


@hookimpl
def kdbench_register_losses(registry):
    registry.add("cosine-logits", CosineEmbedding, version=1)
'''


@pytest.fixture
def loss_plugin(tmp_path: Path) -> Path:
    path = tmp_path / "my_method.py"
    path.write_text(LOSS_PLUGIN)
    return path
