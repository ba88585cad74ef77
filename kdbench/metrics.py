"""What a run measures: classification quality, size, cost and speed.

- accuracy; macro precision, recall and F1 over the classes present in the labels
  or the predictions (scikit-learn's ``average="macro"``, zero when undefined);
- ``params``: all parameters of the model as used at inference (no loss adapters);
- ``flops``: FLOPs of one forward pass per sample, counted by
  ``torch.utils.flop_counter`` (a multiply-add counts as 2);
- ``latency_ms``: median of batch-1 forward passes, ``throughput``: samples/s at
  the evaluation batch size, both timed by ``torch.utils.benchmark`` on the run's
  device (so CPU numbers are CPU numbers, and noisy).
"""

from __future__ import annotations

import torch
from torch import nn


def classification(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    preds, labels = preds.long().cpu(), labels.long().cpu()
    cm = torch.bincount(labels * num_classes + preds, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = cm.diag().double()
    support = cm.sum(1).double()  # true count per class
    predicted = cm.sum(0).double()
    present = (support + predicted) > 0
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    n = max(int(present.sum()), 1)
    return {
        "accuracy": float(tp.sum() / max(len(labels), 1)),
        "precision_macro": float(precision[present].sum() / n),
        "recall_macro": float(recall[present].sum() / n),
        "f1_macro": float(f1[present].sum() / n),
    }


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def flops_per_sample(model: nn.Module, sample: dict[str, torch.Tensor]) -> int:
    """FLOPs of one forward pass on a batch of one sample."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(sample)
    model.train(was_training)
    return int(counter.get_total_flops())


@torch.no_grad()
def latency(
    model: nn.Module, one: dict[str, torch.Tensor], full: dict[str, torch.Tensor], min_run_time: float = 0.2
) -> dict[str, float]:
    """Batch-1 median latency (ms) and throughput (samples/s) at ``full``'s batch size."""
    import logging

    # A CUDA build of torch on a machine without CUDA warns about CUDA_HOME on this
    # import; the warning says nothing about the measurement.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import benchmark

    was_training = model.training
    model.eval()
    out = {}
    for key, batch in (("latency_ms", one), ("throughput", full)):
        timer = benchmark.Timer(stmt="model(batch)", globals={"model": model, "batch": batch}, num_threads=torch.get_num_threads())
        median = timer.blocked_autorange(min_run_time=min_run_time).median
        n = len(next(iter(batch.values())))
        out[key] = median * 1000.0 if key == "latency_ms" else n / median
    model.train(was_training)
    return out
