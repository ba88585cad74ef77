"""Golden values for the logit methods dkd, dist and lskd: the expected numbers are
computed here by hand (numpy in float64, explicit loops, closed forms), never by
calling the plugins' helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdbench.types import ModelOutput


def out(logits, requires_grad: bool = False) -> ModelOutput:
    t = torch.tensor(logits, dtype=torch.float32, requires_grad=requires_grad)
    return ModelOutput(logits=t, embedding=t)


def softmax(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    e = np.exp(v - v.max())
    return e / e.sum()


def kl(p, q) -> float:
    """sum_c p_c log(p_c / q_c) with 0 log 0 = 0."""
    return float(sum(pc * math.log(pc / qc) for pc, qc in zip(p, q) if pc > 0))


S = [[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 3.0, 0.5]]
T = [[2.0, 1.0, 0.0, 0.5], [0.5, 0.5, 4.0, -2.0]]
LABELS = [1, 2]


# ---------------------------------------------------------------- dkd


def dkd_by_hand(s, t, labels, alpha, beta, temp):
    tckd = nckd = 0.0
    for zs, zt, y in zip(s, t, labels):
        ps, pt = softmax(np.array(zs) / temp), softmax(np.array(zt) / temp)
        bs, bt = [ps[y], 1 - ps[y]], [pt[y], 1 - pt[y]]
        tckd += kl(bt, bs)
        others = [c for c in range(len(zs)) if c != y]  # the -1000 trick drops class y
        qs = softmax([zs[c] / temp for c in others])
        qt = softmax([zt[c] / temp for c in others])
        nckd += kl(qt, qs)
    n = len(s)
    return alpha * tckd * temp**2 / n + beta * nckd * temp**2 / n


def dkd_batch(labels):
    return {"label": torch.tensor(labels)}


@pytest.mark.parametrize("alpha,beta,temp", [(1.0, 8.0, 4.0), (1.0, 1.0, 1.0), (0.5, 2.0, 2.0)])
def test_dkd_golden(registry, alpha, beta, temp):
    loss = registry.create("loss", "dkd", alpha=alpha, beta=beta, temperature=temp)
    value = loss(out(S), out(T), dkd_batch(LABELS))["dkd"].item()
    assert value == pytest.approx(dkd_by_hand(S, T, LABELS, alpha, beta, temp), rel=1e-5)


def test_dkd_defaults_are_mdistillers(registry):
    loss = registry.create("loss", "dkd")
    assert (loss.alpha, loss.beta, loss.temperature) == (1.0, 8.0, 4.0)
    assert loss.default_weights == {"ce": 1.0, "dkd": 1.0}


def test_dkd_recomposes_kd(registry):
    # Zhao et al., eq. (5): KD = TCKD + (1 - p^t_y) * NCKD, per sample. With one
    # sample, alpha = 1 and beta = 1 - p^t_y, dkd is Hinton's KD, computed by hand here.
    zs, zt, y, temp = [0.3, -1.2, 2.0, 0.7], [1.5, 0.2, 2.5, -0.4], 2, 3.0
    ps, pt = softmax(np.array(zs) / temp), softmax(np.array(zt) / temp)
    kd = kl(pt, ps) * temp**2
    loss = registry.create("loss", "dkd", alpha=1.0, beta=float(1 - pt[y]), temperature=temp)
    assert loss(out([zs]), out([zt]), dkd_batch([y]))["dkd"].item() == pytest.approx(kd, rel=1e-5)


def test_dkd_exact_zeros_are_finite_and_match_the_hand_value(registry):
    # Both models are so sure of class 0 that, in float32, softmax(z / T) gives the
    # non-target classes exactly 0: the binary distributions are (1, 0) for both, so
    # TCKD = 1 * log(1 / 1) + 0 log 0 = 0. NCKD is the KL between the teacher's
    # uniform non-target distribution (logits 0, 0) and the student's softmax(1/4, 0).
    temp, beta = 4.0, 8.0
    zs, zt = [[1000.0, 1.0, 0.0]], [[2000.0, 0.0, 0.0]]
    p_s = torch.softmax(torch.tensor(zs) / temp, dim=1)
    assert p_s[0, 1:].sum().item() == 0.0  # the case really has exact zeros
    # mdistiller's torch.log of the summed binary probabilities is not finite here
    naive = F.kl_div(torch.log(torch.stack([p_s[:, 0], p_s[:, 1:].sum(1)], 1)),
                     torch.tensor([[1.0, 0.0]]), reduction="sum")
    assert not torch.isfinite(naive)

    q_s = softmax([1.0 / temp, 0.0])
    expected = beta * temp**2 * (0.5 * math.log(0.5 / q_s[0]) + 0.5 * math.log(0.5 / q_s[1]))
    loss = registry.create("loss", "dkd", alpha=1.0, beta=beta, temperature=temp)
    student = out(zs, requires_grad=True)
    value = loss(student, out(zt), dkd_batch([0]))["dkd"]
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert torch.isfinite(student.logits.grad).all()


def test_dkd_two_classes_has_no_non_target_part(registry):
    # With 2 classes the non-target distribution is a point mass: NCKD = 0, dkd = alpha * TCKD.
    zs, zt, temp = [[0.5, -0.5]], [[2.0, 0.0]], 4.0
    ps, pt = softmax(np.array(zs[0]) / temp), softmax(np.array(zt[0]) / temp)
    expected = 2.0 * kl(pt, ps) * temp**2
    loss = registry.create("loss", "dkd", alpha=2.0, beta=8.0, temperature=temp)
    assert loss(out(zs), out(zt), dkd_batch([0]))["dkd"].item() == pytest.approx(expected, rel=1e-5)


def test_dkd_is_zero_when_student_matches(registry):
    loss = registry.create("loss", "dkd")
    assert loss(out(T), out(T), dkd_batch(LABELS))["dkd"].item() == pytest.approx(0.0, abs=1e-6)


def test_dkd_needs_labels(registry):
    loss = registry.create("loss", "dkd")
    with pytest.raises(ValueError, match="label"):
        loss(out(S), out(T), {})


def test_dkd_rejects_bad_temperature(registry):
    with pytest.raises(ValueError, match="temperature"):
        registry.create("loss", "dkd", temperature=0.0)


# ---------------------------------------------------------------- dist


def pearson(u, v, eps=1e-8) -> float:
    mu, mv = sum(u) / len(u), sum(v) / len(v)
    du, dv = [x - mu for x in u], [x - mv for x in v]
    num = sum(a * b for a, b in zip(du, dv))
    return num / (math.sqrt(sum(a * a for a in du)) * math.sqrt(sum(b * b for b in dv)) + eps)


def dist_by_hand(s, t, beta, gamma, tau):
    ps = [softmax(np.array(z) / tau) for z in s]
    pt = [softmax(np.array(z) / tau) for z in t]
    n, c = len(s), len(s[0])
    inter = 1 - sum(pearson(ps[i], pt[i]) for i in range(n)) / n
    intra = 1 - sum(pearson([ps[i][k] for i in range(n)], [pt[i][k] for i in range(n)]) for k in range(c)) / c
    return tau**2 * (beta * inter + gamma * intra)


S3 = S + [[0.2, 0.1, -0.3, 1.5]]
T3 = T + [[1.0, -1.0, 0.0, 2.0]]


@pytest.mark.parametrize("beta,gamma,tau", [(1.0, 1.0, 1.0), (2.0, 0.5, 4.0), (1.0, 0.0, 2.0)])
def test_dist_golden(registry, beta, gamma, tau):
    loss = registry.create("loss", "dist", beta=beta, gamma=gamma, tau=tau)
    value = loss(out(S3), out(T3), {})["dist"].item()
    assert value == pytest.approx(dist_by_hand(S3, T3, beta, gamma, tau), rel=1e-5)


def test_dist_defaults_are_official(registry):
    loss = registry.create("loss", "dist")
    assert (loss.beta, loss.gamma, loss.tau) == (1.0, 1.0, 1.0)
    assert loss.default_weights == {"ce": 1.0, "dist": 1.0}


def test_dist_is_zero_when_student_matches(registry):
    loss = registry.create("loss", "dist")
    assert loss(out(T3), out(T3), {})["dist"].item() == pytest.approx(0.0, abs=1e-5)


def test_dist_closed_form_two_classes(registry):
    # With 2 classes a row (p, 1 - p) centres to (p - 1/2, 1/2 - p): its Pearson with
    # another row is the sign of the product, here -1 (sample 0) and +1 (sample 1),
    # so inter = 1 - 0 = 1. The teacher's columns are constant across the batch, so
    # their centred norm is 0 and the official epsilon makes rho = 0: intra = 1.
    loss = registry.create("loss", "dist")
    value = loss(out([[1.0, 0.0], [0.0, 1.0]]), out([[0.0, 1.0], [0.0, 1.0]]), {})["dist"].item()
    assert value == pytest.approx(2.0, abs=1e-6)


def test_dist_batch_of_one_is_finite(registry):
    # One sample: every column is a single value, centred to 0, so intra = 1 exactly.
    loss = registry.create("loss", "dist")
    student = out([S[0]], requires_grad=True)
    value = loss(student, out([T[0]]), {})["dist"]
    ps, pt = softmax(np.array(S[0])), softmax(np.array(T[0]))
    assert value.item() == pytest.approx((1 - pearson(ps, pt)) + 1.0, rel=1e-5)
    value.backward()
    assert torch.isfinite(student.logits.grad).all()


# ---------------------------------------------------------------- lskd


def zscore(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    mean = sum(v) / len(v)
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1))  # unbiased
    return (v - mean) / (std + 1e-7)


def lskd_by_hand(s, t, temp):
    total = 0.0
    for zs, zt in zip(s, t):
        total += kl(softmax(zscore(zt) / temp), softmax(zscore(zs) / temp))
    return total / len(s) * temp**2


@pytest.mark.parametrize("temp", [2.0, 1.0, 4.0])
def test_lskd_golden(registry, temp):
    loss = registry.create("loss", "lskd", temperature=temp)
    value = loss(out(S), out(T), {})["lskd"].item()
    assert value == pytest.approx(lskd_by_hand(S, T, temp), rel=1e-5)


def test_lskd_defaults_are_official(registry):
    loss = registry.create("loss", "lskd")
    assert loss.temperature == 2.0
    assert loss.default_weights == {"ce": 0.1, "lskd": 9.0}


@pytest.mark.parametrize("shift,scale", [(5.0, 1.0), (0.0, 3.0), (-2.0, 0.25)])
def test_lskd_is_invariant_to_shift_and_scale_of_the_logits(registry, shift, scale):
    loss = registry.create("loss", "lskd")
    base = loss(out(S), out(T), {})["lskd"].item()
    moved = [[scale * z + shift for z in row] for row in S]
    assert loss(out(moved), out(T), {})["lskd"].item() == pytest.approx(base, rel=1e-5)
    moved_t = [[scale * z + shift for z in row] for row in T]
    assert loss(out(S), out(moved_t), {})["lskd"].item() == pytest.approx(base, rel=1e-5)


def test_lskd_closed_form_affine_student(registry):
    # The student's logits are an affine image of the teacher's: z-scores agree, lskd = 0,
    # where plain KD on the same logits is far from 0.
    student = [[2 * z + 1 for z in row] for row in T]
    loss = registry.create("loss", "lskd")
    assert loss(out(student), out(T), {})["lskd"].item() == pytest.approx(0.0, abs=1e-6)
    assert lskd_by_hand(student, T, 2.0) == pytest.approx(0.0, abs=1e-9)


def test_lskd_constant_logits_are_finite(registry):
    # A constant row has std 0: it standardises to zeros (uniform) thanks to the 1e-7.
    loss = registry.create("loss", "lskd")
    student = out([[0.5, 0.5, 0.5, 0.5], S[1]], requires_grad=True)
    value = loss(student, out(T), {})["lskd"]
    hand = lskd_by_hand([[0.5] * 4, S[1]], T, 2.0)
    assert value.item() == pytest.approx(hand, rel=1e-5)
    value.backward()
    assert torch.isfinite(student.logits.grad).all()


def test_logit_methods_reject_a_single_class(registry):
    for name in ("dkd", "lskd"):
        loss = registry.create("loss", name)
        with pytest.raises(ValueError, match="2 classes"):
            loss(out([[1.0]]), out([[2.0]]), {"label": torch.tensor([0])})
