from __future__ import annotations

import pytest
import torch

from kdbench.metrics import classification, count_params, flops_per_sample, latency


def test_classification_hand_worked():
    # labels 0 0 1 1 2, preds 0 1 1 1 0
    # class 0: tp 1, predicted 2, support 2 -> p 1/2 r 1/2 f1 1/2
    # class 1: tp 2, predicted 3, support 2 -> p 2/3 r 1 f1 4/5
    # class 2: tp 0, predicted 0, support 1 -> p 0 r 0 f1 0
    m = classification(torch.tensor([0, 1, 1, 1, 0]), torch.tensor([0, 0, 1, 1, 2]), num_classes=4)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision_macro"] == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    assert m["recall_macro"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert m["f1_macro"] == pytest.approx((1 / 2 + 4 / 5 + 0) / 3)  # class 3 absent from both: not averaged


class Wrapped(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(10, 3)

    def forward(self, batch):
        return self.fc(batch["x"])


def test_params_and_flops():
    model = Wrapped()
    assert count_params(model) == 10 * 3 + 3
    assert flops_per_sample(model, {"x": torch.randn(1, 10)}) == 2 * 10 * 3  # a multiply-add is 2 FLOPs


def test_latency_measures_real_time():
    model = Wrapped()
    out = latency(model, {"x": torch.randn(1, 10)}, {"x": torch.randn(64, 10)}, min_run_time=0.01)
    assert out["latency_ms"] > 0 and out["throughput"] > 0
