"""The one training loop, for every method and every stage.

Stages: teacher training; student initialisation (scratch, or from the teacher where
names and shapes match); distillation (the method's terms plus cross-entropy, each
weighted from the grid, a weight optionally warming up linearly over epochs);
optional fine-tuning with cross-entropy alone; optionally repeated in rounds until a
target validation metric is met. Nothing here knows a method by name: a method is
a loss module, and the baseline is the loss that adds no term.

Selection (best epoch, early stop) uses the validation split only; the test split
is evaluated once, on the selected checkpoint, by the caller.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.metrics import classification
from kdbench.types import ModelOutput, TensorSplit

EpochCallback = Callable[[str, int, int], None]  # stage, epoch done (1-based), epochs in stage


class NonFiniteLossError(RuntimeError):
    pass


def batches(split: Any, batch_size: int, device: torch.device, generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of ``split``, shuffled when a generator is given.

    In-memory splits are indexed directly (no DataLoader, no copies beyond the
    batch); other splits go through a DataLoader. In training a last batch of one
    sample is dropped, since batch normalisation cannot train on it.
    """
    n = len(split)
    if isinstance(split, TensorSplit):
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        order = order.to(device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if generator is not None and len(idx) < 2:
                break
            yield split.batch(idx)
        return
    loader = torch.utils.data.DataLoader(
        _Indexed(split), batch_size=batch_size, shuffle=generator is not None, generator=generator,
        drop_last=generator is not None and n % batch_size == 1,
    )
    for batch in loader:
        yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.dataset[i], "index": torch.tensor(i)}


@torch.no_grad()
def predict(model: nn.Module, split: Any, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    preds, labels = [], []
    for batch in batches(split, batch_size, device):
        preds.append(model(batch).logits.argmax(1))
        labels.append(batch["label"])
    return torch.cat(preds), torch.cat(labels)


def evaluate(model: nn.Module, split: Any, num_classes: int, batch_size: int, device: torch.device) -> dict[str, float]:
    return classification(*predict(model, split, batch_size, device), num_classes)


class Objective:
    """Cross-entropy plus a method's terms, weighted; the teacher runs without grad.

    Args:
        loss: the method's loss module, or None for cross-entropy alone.
        teacher: the frozen teacher, or None.
        weights: weight per term name (``ce`` included); a term not listed weighs 1.
        warmup: epochs over which a term's weight grows linearly from w/E to w.
    """

    def __init__(self, loss: nn.Module | None = None, teacher: nn.Module | None = None,
                 weights: dict[str, float] | None = None, warmup: dict[str, int] | None = None) -> None:
        self.loss, self.teacher = loss, teacher
        self.weights = dict(weights or {"ce": 1.0})
        self.warmup = dict(warmup or {})

    def weight(self, term: str, epoch: int) -> float:
        w = self.weights.get(term, 1.0)
        span = self.warmup.get(term, 0)
        return w * min(1.0, (epoch + 1) / span) if span > 0 else w

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor], epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out: ModelOutput = model(batch)
        terms = {"ce": F.cross_entropy(out.logits, batch["label"])}
        if self.loss is not None:
            teacher_out = None
            if self.teacher is not None:
                with torch.no_grad():
                    teacher_out = self.teacher(batch)
            terms.update(self.loss(out, teacher_out, batch))
        total = sum(self.weight(name, epoch) * value for name, value in terms.items() if self.weight(name, epoch) != 0.0)
        return total, terms


@dataclass
class Selector:
    """Keeps the checkpoint with the best validation metric across all stages."""

    metric: str = "accuracy"
    best: float = -math.inf
    state: dict[str, torch.Tensor] | None = None
    where: dict[str, Any] = field(default_factory=dict)

    def offer(self, model: nn.Module, value: float, **where: Any) -> bool:
        if value > self.best:
            self.best, self.where = value, where
            self.state = copy.deepcopy(model.state_dict())
            return True
        return False

    def restore(self, model: nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def _optimizer(params: list[nn.Parameter], settings: dict[str, Any]) -> torch.optim.Optimizer:
    name, lr, wd = settings["optimizer"], settings["lr"], settings["weight_decay"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=settings["momentum"], weight_decay=wd, nesterov=settings["momentum"] > 0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def fit(
    model: nn.Module,
    data: Any,
    objective: Objective,
    settings: dict[str, Any],
    *,
    epochs: int,
    device: torch.device,
    generator: torch.Generator,
    selector: Selector,
    stage: str = "train",
    round: int = 0,
    select: bool = True,
    on_epoch: EpochCallback | None = None,
    history: list[dict[str, Any]] | None = None,
) -> None:
    """Train ``model`` (and the loss's own parameters) for ``epochs`` on ``data.train``,
    offering every epoch's checkpoint to ``selector`` by its validation metric."""
    extra = list(objective.loss.parameters()) if objective.loss is not None else []
    params = [p for p in [*model.parameters(), *extra] if p.requires_grad]
    opt = _optimizer(params, settings)
    steps = max(1, epochs * math.ceil(len(data.train) / settings["batch_size"]))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if settings["schedule"] == "cosine" else None
    num_classes = data.info.num_classes
    bf16 = settings.get("precision") == "bf16"
    stale = 0
    for epoch in range(epochs):
        model.train()
        if objective.teacher is not None:
            objective.teacher.eval()
        sums: dict[str, float] = {}
        count = 0
        for batch in batches(data.train, settings["batch_size"], device, generator):
            with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                total, terms = objective(model, batch, epoch)
            if not torch.isfinite(total):
                raise NonFiniteLossError(f"{stage} epoch {epoch + 1}: loss is {total.item()} (terms: "
                                         + ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items()) + ")")
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            if sched is not None:
                sched.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            count += 1
        val = evaluate(model, data.val, num_classes, settings["eval_batch_size"], device)
        improved = select and selector.offer(model, val[selector.metric], stage=stage, round=round, epoch=epoch + 1)
        if history is not None:
            history.append({"stage": stage, "round": round, "epoch": epoch + 1,
                            "train": {k: v / max(count, 1) for k, v in sums.items()},
                            "val": val, "selected": improved})
        if on_epoch is not None:
            on_epoch(stage, epoch + 1, epochs)
        stale = 0 if improved else stale + 1
        if select and settings.get("patience") and stale >= settings["patience"]:
            break


def prepare(model: nn.Module, settings: dict[str, Any]) -> nn.Module:
    """Apply the memory layout and compilation the settings ask for (in place)."""
    if settings.get("channels_last"):
        model.to(memory_format=torch.channels_last)
    if settings.get("compile"):
        model.compile()  # in place: state_dict keys (checkpoints, teacher cache) stay the same
    return model


def init_from(student: nn.Module, teacher: nn.Module) -> list[str]:
    """Copy the teacher's tensors into the student where names and shapes match;
    returns the names copied."""
    s_state, t_state = student.state_dict(), teacher.state_dict()
    copied = [k for k, v in s_state.items() if k in t_state and t_state[k].shape == v.shape]
    student.load_state_dict({**s_state, **{k: t_state[k] for k in copied}})
    return copied
