"""Cross-modal methods (cm-align, cm-contrastive, c2kd): golden values computed here
by hand (loops, explicit formulas), never by the plugins' own helpers; modality-name
errors; the conformance suite in the cross-modal setting with non-default parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdbench.testing import check_loss
from kdbench.types import ModelOutput


def out(embedding, logits=None, **modalities):
    e = torch.tensor(embedding, dtype=torch.float32)
    z = torch.tensor(logits, dtype=torch.float32) if logits is not None else e
    return ModelOutput(logits=z, embedding=e,
                       modality_embeddings={k: torch.tensor(v, dtype=torch.float32) for k, v in modalities.items()})


def set_identity(linear):
    with torch.no_grad():
        linear.weight.copy_(torch.eye(linear.out_features, linear.in_features))
        if linear.bias is not None:
            linear.bias.zero_()


# --- cm-align ---------------------------------------------------------------------------

S = [[1.0, 2.0, 3.0], [0.0, -1.0, 2.0]]
T = [[1.0, 0.0, 1.0], [2.0, 2.0, -1.0]]


def mse_by_hand(s, t):
    total = 0.0
    for row_s, row_t in zip(s, t):
        for a, b in zip(row_s, row_t):
            total += (a - b) ** 2
    return total / (len(s) * len(s[0]))


def cosine_by_hand(s, t):
    total = 0.0
    for row_s, row_t in zip(s, t):
        dot = sum(a * b for a, b in zip(row_s, row_t))
        ns = math.sqrt(sum(a * a for a in row_s))
        nt = math.sqrt(sum(b * b for b in row_t))
        total += 1.0 - dot / (ns * nt)
    return total / len(s)


def test_cm_align_mse_and_cosine_golden(registry):
    # by hand: mse = ((0 + 4 + 4) + (4 + 9 + 9)) / 6 = 5
    assert mse_by_hand(S, T) == pytest.approx(5.0)
    for metric, expected in (("mse", mse_by_hand(S, T)), ("cosine", cosine_by_hand(S, T))):
        loss = registry.create("loss", "cm-align", metric=metric)
        loss.setup(out(S), out(T))
        set_identity(loss.proj)
        assert loss(out(S), out(T), {})["cm-align"].item() == pytest.approx(expected, rel=1e-6)


def test_cm_align_projection_maps_to_the_teacher_width(registry):
    loss = registry.create("loss", "cm-align")
    loss.setup(out([[1.0, 2.0], [3.0, 4.0]]), out(T))
    assert tuple(loss.proj.weight.shape) == (3, 2)


def test_cm_align_named_modalities(registry):
    # the fused embeddings are unrelated; the named modalities carry S and T
    student = out([[9.0, 9.0], [9.0, 9.0]], audio=S)
    teacher = out([[0.0] * 5, [1.0] * 5], image=[[5.0] * 3] * 2, audio=T)
    loss = registry.create("loss", "cm-align", metric="cosine", student_modality="audio", teacher_modality="audio")
    loss.setup(student, teacher)
    set_identity(loss.proj)
    assert loss(student, teacher, {})["cm-align"].item() == pytest.approx(cosine_by_hand(S, T), rel=1e-6)


def test_cm_align_is_zero_when_aligned(registry):
    loss = registry.create("loss", "cm-align", metric="cosine")
    loss.setup(out(S), out(S))
    set_identity(loss.proj)
    assert loss(out(S), out([[2 * v for v in row] for row in S]), {})["cm-align"].item() == pytest.approx(0.0, abs=1e-6)


def test_cm_align_rejects_an_unknown_metric(registry):
    with pytest.raises(ValueError, match="unknown metric 'l1'.*mse, cosine"):
        registry.create("loss", "cm-align", metric="l1")


# --- cm-contrastive ---------------------------------------------------------------------

U = [[1.0, 0.0, 1.0], [0.5, 2.0, -1.0], [-1.0, 1.0, 0.0]]
V = [[2.0, 0.5, 1.0], [0.0, 1.0, -2.0], [1.0, -1.0, 1.0]]


def info_nce_by_hand(s, t, scale):
    def unit(r):
        n = math.sqrt(sum(x * x for x in r))
        return [x / n for x in r]

    u, v = [unit(r) for r in s], [unit(r) for r in t]
    n = len(u)
    logits = [[scale * sum(a * b for a, b in zip(u[i], v[j])) for j in range(n)] for i in range(n)]
    rows = cols = 0.0
    for i in range(n):
        rows += -logits[i][i] + math.log(sum(math.exp(logits[i][j]) for j in range(n)))
        cols += -logits[i][i] + math.log(sum(math.exp(logits[j][i]) for j in range(n)))
    return (rows / n + cols / n) / 2


def contrastive(registry, temperature, **params):
    loss = registry.create("loss", "cm-contrastive", dim=3, temperature=temperature, **params)
    loss.setup(out(U), out(V))
    set_identity(loss.proj_student)
    set_identity(loss.proj_teacher)
    return loss


@pytest.mark.parametrize("learn", [True, False])
def test_cm_contrastive_golden(registry, learn):
    loss = contrastive(registry, 0.5, learn_temperature=learn)
    value = loss(out(U), out(V), {})["cm-contrastive"].item()
    assert value == pytest.approx(info_nce_by_hand(U, V, 1 / 0.5), rel=1e-5)


def test_cm_contrastive_example_tells_the_two_directions_apart():
    # rows and cols differ on this example, so a one-sided CE would not pass the golden test
    one_sided = []
    scale = 2.0
    u = [np.array(r) / np.linalg.norm(r) for r in U]
    v = [np.array(r) / np.linalg.norm(r) for r in V]
    logits = scale * np.array([[float(a @ b) for b in v] for a in u])
    for i in range(3):
        one_sided.append(-logits[i, i] + np.log(np.exp(logits[i]).sum()))
    assert np.mean(one_sided) != pytest.approx(info_nce_by_hand(U, V, scale), rel=1e-3)


def test_cm_contrastive_logit_scale_is_clamped_at_100(registry):
    loss = contrastive(registry, 0.001)  # exp(log(1000)) = 1000 -> 100
    value = loss(out(U), out(V), {})["cm-contrastive"].item()
    assert value == pytest.approx(info_nce_by_hand(U, V, 100.0), rel=1e-5)


def test_cm_contrastive_temperature_is_learned_from_clip_init(registry):
    loss = registry.create("loss", "cm-contrastive")
    assert isinstance(loss.logit_scale, torch.nn.Parameter)
    assert loss.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    loss.setup(out(U), out(V))
    loss(out(U), out(V), {})["cm-contrastive"].backward()
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad != 0
    fixed = registry.create("loss", "cm-contrastive", learn_temperature=False)
    assert "logit_scale" not in dict(fixed.named_parameters())
    assert registry.create("loss", "cm-contrastive").dim == 128


# --- c2kd -------------------------------------------------------------------------------


def kendall_by_hand(x, y):
    concordant = discordant = ties_x_only = ties_y_only = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x_only += 1
            elif dy == 0:
                ties_y_only += 1
            elif dx * dy > 0:
                concordant += 1
            else:
                discordant += 1
    den = math.sqrt((concordant + discordant + ties_y_only) * (concordant + discordant + ties_x_only))
    return (concordant - discordant) / den if den else float("nan")


RANK_S = [[4, 3, 2, 1], [1, 2, 3, 4], [1, 2, 3, 4], [1, 1, 2, 3], [2, 2, 2, 2], [1, 2, 3, 4]]
RANK_T = [[3, 4, 2, 1], [4, 3, 2, 1], [2, 1, 4, 3], [1, 2, 3, 4], [1, 2, 3, 4], [2, 4, 1, 3]]
# worked by hand: one discordant pair of six -> 2/3; reversed -> -1; two discordant -> 1/3;
# one pair tied in s, five concordant -> 5/sqrt(5*6); constant row -> undefined; 3 vs 3 -> 0
TAU = [2 / 3, -1.0, 1 / 3, 5 / math.sqrt(30), float("nan"), 0.0]


def test_c2kd_kendall_tau_b_by_hand(registry):
    loss = registry.create("loss", "c2kd")
    got = loss.rank_agreement(torch.tensor(RANK_S, dtype=torch.float32), torch.tensor(RANK_T, dtype=torch.float32))
    for b, (s, t) in enumerate(zip(RANK_S, RANK_T)):
        by_hand = kendall_by_hand(s, t)
        assert by_hand == pytest.approx(TAU[b], nan_ok=True)
        assert got[b].item() == pytest.approx(by_hand, rel=1e-6, nan_ok=True)


@pytest.mark.parametrize("kappa, kept", [
    (0.0, [True, False, True, True, False, False]),    # strict >: tau = 0 and undefined tau are dropped
    (0.5, [True, False, False, True, False, False]),
    (-1.0, [True, False, True, True, False, True]),
])
def test_c2kd_selection_rule(registry, kappa, kept):
    loss = registry.create("loss", "c2kd", krc_threshold=kappa)
    mask = loss.select(torch.tensor(RANK_S, dtype=torch.float32), torch.tensor(RANK_T, dtype=torch.float32))
    assert mask.tolist() == kept
    assert kept == [not math.isnan(t) and t > kappa for t in map(kendall_by_hand, RANK_S, RANK_T)]


# two samples x four classes; with identity proxies q_s = student embedding, q_t = teacher embedding
Q_S = [[2.0, 1.0, 0.5, 0.0], [0.3, 1.2, 2.0, -0.5]]
Q_T = [[3.0, 0.5, 1.0, -1.0], [2.0, 0.5, -1.0, 3.0]]
Z_S = [[1.0, 0.0, 0.5, -0.5], [0.0, 0.5, 1.5, 0.2]]
Z_T = [[2.5, 0.0, 0.3, -0.2], [0.1, 0.4, 2.2, -1.0]]
LABELS = [0, 2]
# sample 0: only pair (1, 2) is discordant -> tau 2/3, kept; sample 1: every pair discordant -> -1, dropped
KEPT = [True, False]


def softmax(z):
    e = [math.exp(v - max(z)) for v in z]
    return [v / sum(e) for v in e]


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def non_target(z, y, mode):
    if mode == "remove":
        return [v for c, v in enumerate(z) if c != y]
    return [0.0 if c == y else v for c, v in enumerate(z)]


def c2kd_by_hand(temp, mode):
    n = len(Q_S)
    keep = [kendall_by_hand(s, t) > 0 for s, t in zip(Q_S, Q_T)]
    assert keep == KEPT

    def kd(target, logits):  # KL(softmax(target/T) || softmax(logits/T)) * T^2, mean over samples
        return sum(kl(softmax([v / temp for v in a]), softmax([v / temp for v in b]))
                   for a, b in zip(target, logits)) / n * temp**2

    def nt(target, logits):
        total = 0.0
        for a, b, y, k in zip(target, logits, LABELS, keep):
            if k:
                p = softmax([v / temp for v in non_target(a, y, mode)])
                q = softmax([v / temp for v in non_target(b, y, mode)])
                total += kl(p, q)
        return total / n * temp**2  # averaged over the whole batch, dropped samples count 0

    c2kd = kd(Z_S, Q_S) + kd(Q_S, Z_S) + nt(Q_T, Q_S)
    proxy = kd(Z_T, Q_T) + nt(Q_S, Q_T)
    return c2kd, proxy, nt(Q_T, Q_S)


def c2kd_loss(registry, **params):
    loss = registry.create("loss", "c2kd", proxy="linear", **params)
    student, teacher = out(Q_S, Z_S), out(Q_T, Z_T)
    loss.setup(student, teacher)
    set_identity(loss.student_proxy)
    set_identity(loss.teacher_proxy)
    return loss, student, teacher


@pytest.mark.parametrize("temp", [1.0, 2.0])
@pytest.mark.parametrize("mode", ["remove", "zero"])
def test_c2kd_golden(registry, temp, mode):
    loss, student, teacher = c2kd_loss(registry, temperature=temp, target_mask=mode)
    terms = loss(student, teacher, {"label": torch.tensor(LABELS)})
    c2kd, proxy, _ = c2kd_by_hand(temp, mode)
    assert terms["c2kd"].item() == pytest.approx(c2kd, rel=1e-5)
    assert terms["c2kd_proxy"].item() == pytest.approx(proxy, rel=1e-5)


def test_c2kd_non_target_kl_alone(registry):
    # student logits equal to its proxy's: the two self-distillation KLs vanish and c2kd
    # is the masked non-target KL alone: sample 0 only, /2 for the batch of two
    loss, _, teacher = c2kd_loss(registry)
    student = out(Q_S, Q_S)
    value = loss(student, teacher, {"label": torch.tensor(LABELS)})["c2kd"].item()
    p = softmax([0.5, 1.0, -1.0])  # q_t[0] without its target class 0
    q = softmax([1.0, 0.5, 0.0])   # q_s[0] without its target class 0
    assert value == pytest.approx(kl(p, q) / 2, rel=1e-5)
    assert value == pytest.approx(c2kd_by_hand(1.0, "remove")[2], rel=1e-5)


def test_c2kd_nothing_kept_gives_zero_cross_modal_term(registry):
    loss, _, teacher = c2kd_loss(registry, krc_threshold=0.9)
    terms = loss(out(Q_S, Q_S), teacher, {"label": torch.tensor(LABELS)})
    assert terms["c2kd"].item() == pytest.approx(0.0, abs=1e-7)


def test_c2kd_teacher_proxy_trains_only_on_its_term(registry):
    loss, _, teacher = c2kd_loss(registry)
    emb = torch.tensor(Q_S, requires_grad=True)
    student = ModelOutput(logits=torch.tensor(Z_S, requires_grad=True), embedding=emb)
    terms = loss(student, teacher, {"label": torch.tensor(LABELS)})
    terms["c2kd_proxy"].backward(retain_graph=True)
    assert loss.teacher_proxy.weight.grad.abs().sum() > 0
    assert loss.student_proxy.weight.grad is None and emb.grad is None  # the student is detached there
    loss.teacher_proxy.weight.grad = None
    terms["c2kd"].backward()
    assert loss.teacher_proxy.weight.grad is None
    assert emb.grad.abs().sum() > 0 and loss.student_proxy.weight.grad.abs().sum() > 0


def test_c2kd_default_proxies_are_the_official_block(registry):
    loss = registry.create("loss", "c2kd")
    loss.setup(out([[0.0] * 5] * 2, [[0.0] * 3] * 2), out([[0.0] * 7] * 2, [[0.0] * 3] * 2))
    kinds = [type(m).__name__ for m in loss.teacher_proxy]
    assert kinds == ["Linear", "BatchNorm1d", "LeakyReLU", "Linear"]
    assert loss.student_proxy[0].in_features == 5 and loss.teacher_proxy[-1].out_features == 3


@pytest.mark.parametrize("params, message", [
    ({"target_mask": "drop"}, "unknown target_mask 'drop'.*remove, zero"),
    ({"proxy": "conv"}, "unknown proxy 'conv'.*mlp, linear"),
    ({"krc_threshold": 1.0}, "krc_threshold"),
])
def test_c2kd_rejects_bad_parameters(registry, params, message):
    with pytest.raises(ValueError, match=message):
        registry.create("loss", "c2kd", **params)


# --- modality names and the cross-modal setting -----------------------------------------

AUDIO_ONLY = out([[1.0, 2.0]] * 2, [[0.0, 1.0, 2.0]] * 2, audio=[[1.0, 2.0]] * 2)
TRI_MODAL = out([[1.0] * 6] * 2, [[0.0, 1.0, 2.0]] * 2, image=[[1.0] * 2] * 2, audio=[[1.0] * 2] * 2,
                vector=[[1.0] * 2] * 2)


@pytest.mark.parametrize("name", ["cm-align", "cm-contrastive", "c2kd"])
def test_unknown_student_modality_names_what_the_student_sees(registry, name):
    loss = registry.create("loss", name, student_modality="image")
    with pytest.raises(ValueError, match=rf"{name}: student_modality='image' is not a modality the student sees "
                                         r"\(it sees: 'audio'\)"):
        loss.setup(AUDIO_ONLY, TRI_MODAL)


@pytest.mark.parametrize("name", ["cm-align", "cm-contrastive", "c2kd"])
def test_unknown_teacher_modality_names_what_the_teacher_sees(registry, name):
    loss = registry.create("loss", name, teacher_modality="text")
    with pytest.raises(ValueError, match=r"teacher_modality='text'.*\(it sees: 'image', 'audio', 'vector'\)"):
        loss.setup(AUDIO_ONLY, TRI_MODAL)


@pytest.mark.parametrize("name, params", [
    ("cm-align", {"metric": "cosine", "student_modality": "audio", "teacher_modality": "audio"}),
    ("cm-contrastive", {"dim": 16, "teacher_modality": "image", "learn_temperature": False}),
    ("c2kd", {"proxy": "linear", "target_mask": "zero", "teacher_modality": "vector"}),
])
def test_runs_cross_modal_with_parameters(registry, name, params):
    # check_loss runs the tri-modal teacher against a tri-modal, then an audio-only student
    check_loss(registry, name, params)
