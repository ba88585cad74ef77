"""Benchmark 1: the cost of kdbench's training loop over a plain PyTorch loop.

What is timed: one distillation epoch of the quickstart's KD run (tri-modal
cnn(16,3) teacher → cnn(4,2) student, 2000 training samples in batches of 64, so 32
steps; then the validation pass over 500 samples and the checkpoint selection).

- kdbench: ``kdbench.trainer.fit(..., epochs=1)`` with an ``Objective`` holding the
  ``kd`` loss from the registry, exactly as ``run_student`` calls it.
- plain: a hand-written loop over the *same batches* (same permutation, same
  models, same SGD-Nesterov + per-step cosine schedule): student forward, teacher
  forward under ``no_grad``, ``0.1·CE + 0.9·T²·KL`` written out, backward, step,
  ``loss.item()`` for logging; then accuracy on the validation split and a copy of
  the best weights, as any real loop does.

A whole epoch rather than single steps: the trainer's per-step costs (objective
bookkeeping, the finiteness check, logging every term) are all inside it, and both
sides pay the same one-off costs (optimizer and scheduler creation, validation).
Before timing, one epoch of each from the same initial weights must give the same
weights (checked, not timed), so both sides do the same arithmetic.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

TARGET = "<= 1.02"


def _kdbench_epoch(q: dict[str, Any]) -> None:
    from kdbench.trainer import Objective, Selector, fit

    spec = q["spec"]
    objective = Objective(q["loss"], q["teacher"], spec.method.weights, spec.method.warmup)
    fit(q["student"], q["data"], objective, spec.train, epochs=1, device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(spec.seed), selector=Selector(spec.train["select"]),
        stage="distill", history=[])


def _plain_epoch(q: dict[str, Any]) -> None:
    """What a KD script without kdbench does for one epoch."""
    spec, student, teacher, data = q["spec"], q["student"], q["teacher"], q["data"]
    s, bs = spec.train, spec.train["batch_size"]
    written_for = ("sgd", "cosine", "fp32", True)
    assert (s["optimizer"], s["schedule"], s.get("precision", "fp32"), s["momentum"] > 0) == written_for, \
        "this plain loop is written for the quickstart's fp32 SGD-Nesterov + cosine settings"
    temperature = q["loss"].temperature
    w_ce, w_kd = spec.method.weights["ce"], spec.method.weights["kd"]
    train, val = data.train.tensors, data.val.tensors
    n = len(train["label"])
    opt = torch.optim.SGD(student.parameters(), lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"],
                          nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, -(-n // bs))
    student.train()
    teacher.eval()
    running = 0.0
    order = torch.randperm(n, generator=torch.Generator().manual_seed(spec.seed))
    for start in range(0, n, bs):
        idx = order[start : start + bs]
        if len(idx) < 2:
            break
        batch = {k: v[idx] for k, v in train.items()}
        logits = student(batch).logits
        with torch.no_grad():
            t_logits = teacher(batch).logits
        kd = F.kl_div(F.log_softmax(logits / temperature, 1), F.log_softmax(t_logits / temperature, 1),
                      log_target=True, reduction="batchmean") * temperature**2
        loss = w_ce * F.cross_entropy(logits, batch["label"]) + w_kd * kd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
    student.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(val["label"]), s["eval_batch_size"]):
            batch = {k: v[start : start + s["eval_batch_size"]] for k, v in val.items()}
            correct += int((student(batch).logits.argmax(1) == batch["label"]).sum())
    best = copy.deepcopy(student.state_dict())  # the first epoch is always the best so far
    del best, running, correct


def test_distillation_epoch_vs_plain_loop(benchmark, bench, quickstart):
    q = quickstart
    student = q["student"]

    def reset() -> None:
        student.load_state_dict(q["init"])

    # Same work on both sides: one epoch from the same weights ends at the same weights.
    reset()
    _plain_epoch(q)
    after_plain = {k: v.clone() for k, v in student.state_dict().items()}
    reset()
    _kdbench_epoch(q)
    for k, v in student.state_dict().items():
        torch.testing.assert_close(v, after_plain[k], msg=f"kdbench and the plain loop diverge at {k}")

    # The target is within a few percent: twice the default rounds for a tighter median.
    r = bench.paired(benchmark, lambda: _kdbench_epoch(q), lambda: _plain_epoch(q), reset=reset,
                     rounds=2 * bench.ROUNDS)
    ratio = r.pop("ratio")
    steps = -(-len(q["data"].train) // q["spec"].train["batch_size"])
    bench.report(benchmark, "1. distillation epoch, fit ÷ plain loop", ratio, TARGET,
                 f"epoch {r['kdbench_median_s']:.2f} s vs {r['plain_median_s']:.2f} s",
                 **r, steps=steps, load=bench.load_average())
