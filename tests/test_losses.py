"""Golden values: expected numbers computed here by hand (numpy, closed forms),
never by calling the plugin under test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdbench.types import ModelOutput


def out(logits):
    t = torch.tensor(logits, dtype=torch.float32)
    return ModelOutput(logits=t, embedding=t)


def kd_by_hand(s, t, temp):
    total = 0.0
    for zs, zt in zip(s, t):
        ps = np.exp(np.array(zs) / temp) / np.exp(np.array(zs) / temp).sum()
        pt = np.exp(np.array(zt) / temp) / np.exp(np.array(zt) / temp).sum()
        total += float((pt * (np.log(pt) - np.log(ps))).sum())
    return total / len(s) * temp**2


S = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
T = [[2.0, 1.0, 0.0], [0.5, 0.5, 4.0]]


@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_kd_golden(registry, temp):
    loss = registry.create("loss", "kd", temperature=temp)
    value = loss(out(S), out(T), {})["kd"].item()
    assert value == pytest.approx(kd_by_hand(S, T, temp), rel=1e-5)


def test_kd_closed_form_two_classes(registry):
    # T=1, one sample: student logits (0, 0) -> p_s = (1/2, 1/2); teacher (ln 3, 0) -> p_t = (3/4, 1/4).
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2)
    loss = registry.create("loss", "kd", temperature=1.0)
    value = loss(out([[0.0, 0.0]]), out([[math.log(3.0), 0.0]]), {})["kd"].item()
    assert value == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-6)


def test_kd_is_zero_when_student_matches(registry):
    loss = registry.create("loss", "kd")
    assert loss(out(T), out(T), {})["kd"].item() == pytest.approx(0.0, abs=1e-7)


def test_ce_adds_no_term(registry):
    loss = registry.create("loss", "ce")
    assert loss(out(S), None, {}) == {}
    assert loss.baseline and not loss.needs_teacher
