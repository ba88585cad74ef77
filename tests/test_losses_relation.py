"""Golden values for the relational and contrastive methods (rkd, pkt, cc, crd):
expected numbers are worked out here by hand (closed forms, numpy loops), never by
calling the plugins' own helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdbench.types import DatasetInfo, ModelOutput


def out(embedding) -> ModelOutput:
    e = torch.as_tensor(np.asarray(embedding, dtype=np.float64), dtype=torch.float32)
    return ModelOutput(logits=torch.zeros(len(e), 3), embedding=e)


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


# ---------------------------------------------------------------- rkd


def rkd_by_hand(s, t, wd=25.0, wa=50.0):
    def distances(x):
        x = np.asarray(x, dtype=np.float64)
        n = len(x)
        d = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                if i != j:
                    d[i, j] = math.sqrt(max(float(((x[i] - x[j]) ** 2).sum()), 1e-12))
        positive = [d[i, j] for i in range(n) for j in range(n) if i != j]
        return d / (sum(positive) / len(positive)) if positive else d

    def angles(x):
        x = np.asarray(x, dtype=np.float64)
        n = len(x)
        a = []
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    u, v = x[j] - x[i], x[k] - x[i]
                    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
                    a.append(0.0 if nu == 0 or nv == 0 else float(u @ v) / (nu * nv))
        return np.array(a)

    ds, dt = distances(s), distances(t)
    loss_d = np.mean([huber(x) for x in (ds - dt).ravel()])
    loss_a = np.mean([huber(x) for x in angles(s) - angles(t)])
    return wd * loss_d + wa * loss_a


def test_rkd_three_points_by_hand(registry):
    # Student: right triangle 3-4-5 with the right angle at point 0.
    # Teacher: right isosceles triangle with legs 1, the right angle at point 0.
    s = [[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]
    t = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    # Distances: student 3, 4, 5 (mean 4) -> 0.75, 1, 1.25;
    # teacher 1, 1, sqrt 2 (mean (2 + sqrt 2) / 3) -> 3 / (2 + sqrt 2) (twice), 3 sqrt 2 / (2 + sqrt 2).
    mt = (2 + math.sqrt(2)) / 3
    diffs = [0.75 - 1 / mt, 1.0 - 1 / mt, 1.25 - math.sqrt(2) / mt]
    loss_d = 2 * sum(0.5 * x * x for x in diffs) / 9  # each pair twice; 9 entries with the diagonal
    # Angles: at vertex i, the two ordered pairs (j, k) of distinct other points give cos(angle at i)
    # and the two (j, j) give 1 (equal on both sides); every other triplet is 0.
    # Student cosines: vertex 0: 0; vertex 1: 9 / 15 = 0.6; vertex 2: 16 / 20 = 0.8.
    # Teacher cosines: 0, 1 / sqrt 2, 1 / sqrt 2.
    r = 1 / math.sqrt(2)
    loss_a = 2 * (0.5 * (0.6 - r) ** 2 + 0.5 * (0.8 - r) ** 2) / 27
    expected = 25 * loss_d + 50 * loss_a
    loss = registry.create("loss", "rkd")
    loss.setup(out(s), out(t))
    value = loss(out(s), out(t), {})["rkd"].item()
    assert value == pytest.approx(expected, rel=1e-5)
    assert value == pytest.approx(rkd_by_hand(s, t), rel=1e-5)


def test_rkd_random_different_widths(registry):
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 2)), rng.normal(size=(5, 7)) * 3.0
    loss = registry.create("loss", "rkd", distance_weight=2.0, angle_weight=3.0)
    value = loss(out(s), out(t), {})["rkd"].item()
    assert value == pytest.approx(rkd_by_hand(s, t, 2.0, 3.0), rel=1e-4)


def test_rkd_ignores_scale_and_is_zero_on_a_similar_batch(registry):
    rng = np.random.default_rng(1)
    t = rng.normal(size=(6, 4))
    loss = registry.create("loss", "rkd")
    # A scaled copy has the same normalised distances and the same angles.
    assert loss(out(5.0 * t), out(t), {})["rkd"].item() == pytest.approx(0.0, abs=1e-6)


def test_rkd_single_sample_is_zero_not_nan(registry):
    loss = registry.create("loss", "rkd")
    value = loss(out([[1.0, 2.0]]), out([[3.0, 4.0, 5.0]]), {})["rkd"]
    assert torch.isfinite(value) and value.item() == 0.0


def test_rkd_rejects_negative_weights(registry):
    with pytest.raises(ValueError, match="distance_weight"):
        registry.create("loss", "rkd", distance_weight=-1.0)


# ---------------------------------------------------------------- pkt

EPS = 1e-7


def pkt_by_hand(s, t, eps=EPS):
    def probabilities(x):
        x = np.asarray(x, dtype=np.float64)
        n = len(x)
        unit = [x[i] / (math.sqrt(float((x[i] ** 2).sum())) + eps) for i in range(n)]
        k = np.array([[(float(unit[i] @ unit[j]) + 1) / 2 for j in range(n)] for i in range(n)])
        return np.array([[k[i, j] / k[i].sum() for j in range(n)] for i in range(n)])

    ps, pt = probabilities(s), probabilities(t)
    n = len(ps)
    return sum(pt[i, j] * math.log((pt[i, j] + eps) / (ps[i, j] + eps)) for i in range(n) for j in range(n)) / n**2


def test_pkt_closed_form_two_vectors(registry):
    # Student: orthogonal -> kernel [[1, 1/2], [1/2, 1]] -> rows (2/3, 1/3), (1/3, 2/3).
    # Teacher: identical vectors -> kernel all 1 -> rows (1/2, 1/2).
    # Each row: 1/2 ln(3/4) + 1/2 ln(3/2) = 1/2 ln(9/8); two rows, mean over 4 entries.
    loss = registry.create("loss", "pkt")
    value = loss(out([[1.0, 0.0], [0.0, 2.0]]), out([[1.0, 0.0, 0.0], [3.0, 0.0, 0.0]]), {})["pkt"].item()
    assert value == pytest.approx(math.log(9 / 8) / 4, rel=1e-5)


def test_pkt_three_vectors_by_hand(registry):
    s = [[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0]]
    t = [[0.5, 0.1, 1.0, 2.0], [1.0, -1.0, 0.0, 0.0], [2.0, 2.0, -1.0, 0.5]]
    loss = registry.create("loss", "pkt")
    assert loss(out(s), out(t), {})["pkt"].item() == pytest.approx(pkt_by_hand(s, t), rel=1e-5)


def test_pkt_opposite_vectors_stay_finite(registry):
    # Student pair opposite: kernel ~ [[1, 0], [0, 1]] -> p_s ~ 0 off the diagonal, where the eps
    # keeps the log finite. (The off-diagonal kernel is ~eps, not 0, because of the norm's eps;
    # its exact size depends on float32 rounding, hence the loose tolerance.)
    # Teacher orthogonal: rows (2/3, 1/3): sum ~ 2 * (2/3 ln(2/3) + 1/3 ln((1/3) / (2 eps))).
    loss = registry.create("loss", "pkt")
    value = loss(out([[1.0, 0.0], [-1.0, 0.0]]), out([[1.0, 0.0], [0.0, 1.0]]), {})["pkt"].item()
    expected = 2 * (2 / 3 * math.log(2 / 3) + 1 / 3 * math.log((1 / 3) / (2 * EPS))) / 4
    assert math.isfinite(value) and value == pytest.approx(expected, rel=0.1)
    # The reverse: (near-)zero teacher probabilities contribute (near-)0 * log(...).
    value = loss(out([[1.0, 0.0], [0.0, 1.0]]), out([[1.0, 0.0], [-1.0, 0.0]]), {})["pkt"].item()
    expected = 2 * (1.0 * math.log(1 / (2 / 3)) + 0.0) / 4
    assert value == pytest.approx(expected, rel=1e-4)


def test_pkt_zero_when_structure_matches(registry):
    rng = np.random.default_rng(2)
    t = rng.normal(size=(4, 3))
    loss = registry.create("loss", "pkt")
    assert loss(out(2.0 * t), out(t), {})["pkt"].item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- cc

GAMMA = 0.4


def cc_matrix_by_hand(x, gamma=GAMMA, order=2):
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    c = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            cos = float(x[i] @ x[j]) / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
            terms = [(2 * gamma) ** p / math.factorial(p) * cos**p for p in range(order + 1)]
            c[i, j] = math.exp(-2 * gamma) * sum(terms)
    return c


def test_cc_small_example_by_hand(registry):
    # Same widths: no projection. C_ij = e^-0.8 (1 + 0.8 cos + 0.32 cos^2).
    s = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    t = [[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]
    # Worked: student cosines 0 (0,1), 1/sqrt2 (0,2), 1/sqrt2 (1,2); teacher 1 (0,1), 0 (0,2), 0 (1,2).
    e = math.exp(-0.8)
    k = lambda c: e * (1 + 0.8 * c + 0.32 * c * c)  # noqa: E731
    r = 1 / math.sqrt(2)
    expected = 2 * ((k(0) - k(1)) ** 2 + (k(r) - k(0)) ** 2 + (k(r) - k(0)) ** 2) / 9  # diagonal: equal
    loss = registry.create("loss", "cc")
    loss.setup(out(s), out(t))
    assert list(loss.parameters()) == []
    value = loss(out(s), out(t), {})["cc"].item()
    assert value == pytest.approx(expected, rel=1e-5)
    assert value == pytest.approx(float(((cc_matrix_by_hand(s) - cc_matrix_by_hand(t)) ** 2).mean()), rel=1e-5)


def test_cc_high_order_is_the_gaussian_rbf(registry):
    # For unit vectors the full Taylor series is exp(-gamma ||f_i - f_j||^2).
    rng = np.random.default_rng(3)
    s, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))

    def rbf(x):
        f = x / np.linalg.norm(x, axis=1, keepdims=True)
        return np.array([[math.exp(-GAMMA * float(((a - b) ** 2).sum())) for b in f] for a in f])

    loss = registry.create("loss", "cc", p_order=25)
    loss.setup(out(s), out(t))
    value = loss(out(s), out(t), {})["cc"].item()
    assert value == pytest.approx(float(((rbf(s) - rbf(t)) ** 2).mean()), rel=1e-4)


def test_cc_projects_the_student_when_widths_differ(registry):
    s = [[1.0, 0.0, 2.0], [0.0, 1.0, -1.0], [1.0, 1.0, 0.0]]
    t = [[1.0, 0.0], [0.5, 1.0], [0.0, 1.0]]
    loss = registry.create("loss", "cc")
    loss.setup(out(s), out(t))
    assert isinstance(loss.embed_s, torch.nn.Linear) and loss.embed_s.weight.shape == (2, 3)
    assert not list(loss.embed_t.parameters())  # the teacher's embedding is used as it is
    w = np.array([[1.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    with torch.no_grad():
        loss.embed_s.weight.copy_(torch.tensor(w))
        loss.embed_s.bias.fill_(0.5)
    projected = np.asarray(s) @ w.T + 0.5
    expected = float(((cc_matrix_by_hand(projected) - cc_matrix_by_hand(t)) ** 2).mean())
    assert loss(out(s), out(t), {})["cc"].item() == pytest.approx(expected, rel=1e-5)


def test_cc_feat_dim_projects_both_sides(registry):
    loss = registry.create("loss", "cc", feat_dim=5)
    loss.setup(out(np.ones((2, 3))), out(np.ones((2, 4))))
    assert loss.embed_s.weight.shape == (5, 3) and loss.embed_t.weight.shape == (5, 4)


def test_cc_rejects_bad_parameters(registry):
    with pytest.raises(ValueError, match="p_order"):
        registry.create("loss", "cc", p_order=-1)
    with pytest.raises(ValueError, match="gamma"):
        registry.create("loss", "cc", gamma=0.0)


# ---------------------------------------------------------------- crd


def crd_info(n: int) -> DatasetInfo:
    return DatasetInfo(name="t", num_classes=2, class_names=("a", "b"), modalities={}, split_sizes={"train": n})


def make_crd(registry, n=4, dim=2, **params):
    loss = registry.create("loss", "crd", feat_dim=dim, **params)
    loss.dataset_info = crd_info(n)
    loss.setup(out(np.ones((2, dim))), out(np.ones((2, dim))))
    with torch.no_grad():  # identity projections: v = e / ||e||
        for embed in (loss.embed_s, loss.embed_t):
            embed.weight.copy_(torch.eye(dim))
            embed.bias.zero_()
    return loss


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


MEM_S = np.array([unit([1, 0]), unit([0, 1]), unit([1, 1]), unit([-1, 2])])
MEM_T = np.array([unit([1, -1]), unit([2, 1]), unit([-1, 0]), unit([0, -1])])
X_S = [[3.0, 4.0], [1.0, -2.0]]
X_T = [[1.0, 1.0], [-2.0, 1.0]]
INDEX = [0, 2]
NEGATIVES = [[1, 2], [3, 0]]


def nce_by_hand(anchors, memory, ids, z, temp, n, k, eps=1e-7):
    total = 0.0
    for b in range(len(anchors)):
        h = [math.exp(float(memory[j] @ anchors[b]) / temp) / z for j in ids[b]]
        total += math.log(h[0] / (h[0] + k / n + eps))
        total += sum(math.log((k / n) / (h[i] + k / n + eps)) for i in range(1, len(h)))
    return -total / len(anchors)


def crd_by_hand(z_s, z_t, temp, n=4, k=2):
    v_s = [unit(x) for x in X_S]
    v_t = [unit(x) for x in X_T]
    ids = [[INDEX[b], *NEGATIVES[b]] for b in range(2)]
    # Student anchors against the teacher's memory, teacher anchors against the student's.
    return nce_by_hand(v_s, MEM_T, ids, z_s, temp, n, k) + nce_by_hand(v_t, MEM_S, ids, z_t, temp, n, k)


def set_memory(loss, z=None):
    with torch.no_grad():
        loss.memory_s.copy_(torch.tensor(MEM_S))
        loss.memory_t.copy_(torch.tensor(MEM_T))
        if z is not None:
            loss.z.copy_(torch.tensor(z))
    loss.sample_negatives = lambda index: torch.tensor(NEGATIVES)  # fixed negatives for the hand computation


def crd_batch():
    return {"index": torch.tensor(INDEX), "label": torch.tensor([0, 1])}


@pytest.mark.parametrize("temp", [0.07, 0.5])
def test_crd_nce_value_on_a_hand_built_memory(registry, temp):
    loss = make_crd(registry, num_negatives=2, temperature=temp)
    assert loss.k == 2
    set_memory(loss, z=[2.0, 3.0])
    value = loss(out(X_S), out(X_T), crd_batch())["crd"].item()
    assert value == pytest.approx(crd_by_hand(2.0, 3.0, temp), rel=1e-5)


def test_crd_estimates_z_on_the_first_training_batch(registry):
    temp = 0.5
    loss = make_crd(registry, num_negatives=2, temperature=temp)
    set_memory(loss)
    assert (loss.z < 0).all()
    ids = [[INDEX[b], *NEGATIVES[b]] for b in range(2)]
    # Z = N * mean over the B * (K + 1) values exp(m . v / T).
    z_s = 4 * np.mean([math.exp(float(MEM_T[j] @ unit(X_S[b])) / temp) for b in range(2) for j in ids[b]])
    z_t = 4 * np.mean([math.exp(float(MEM_S[j] @ unit(X_T[b])) / temp) for b in range(2) for j in ids[b]])

    loss.eval()  # evaluation: the estimate is used but not kept
    value = loss(out(X_S), out(X_T), crd_batch())["crd"].item()
    assert value == pytest.approx(crd_by_hand(z_s, z_t, temp), rel=1e-5)
    assert (loss.z < 0).all()

    loss.train()
    value = loss(out(X_S), out(X_T), crd_batch())["crd"].item()
    assert value == pytest.approx(crd_by_hand(z_s, z_t, temp), rel=1e-5)
    assert loss.z.tolist() == pytest.approx([z_s, z_t], rel=1e-5)
    # Later batches keep the constants.
    loss(out(X_T), out(X_S), crd_batch())
    assert loss.z.tolist() == pytest.approx([z_s, z_t], rel=1e-5)


def test_crd_memory_update_by_index_with_momentum(registry):
    loss = make_crd(registry, num_negatives=2, momentum=0.5)
    set_memory(loss, z=[2.0, 3.0])
    loss(out(X_S), out(X_T), crd_batch())
    mem_s, mem_t = loss.memory_s.numpy(), loss.memory_t.numpy()
    for b, i in enumerate(INDEX):
        assert mem_s[i] == pytest.approx(unit(0.5 * MEM_S[i] + 0.5 * unit(X_S[b])), abs=1e-6)
        assert mem_t[i] == pytest.approx(unit(0.5 * MEM_T[i] + 0.5 * unit(X_T[b])), abs=1e-6)
    for i in (1, 3):  # rows not in the batch are untouched
        assert mem_s[i] == pytest.approx(MEM_S[i], abs=1e-7)
        assert mem_t[i] == pytest.approx(MEM_T[i], abs=1e-7)


def test_crd_memory_is_frozen_in_eval_and_untrained(registry):
    loss = make_crd(registry, num_negatives=2)
    set_memory(loss, z=[2.0, 3.0])
    loss.eval()
    loss(out(X_S), out(X_T), crd_batch())
    assert loss.memory_s.numpy() == pytest.approx(MEM_S, abs=1e-7)
    assert loss.memory_t.numpy() == pytest.approx(MEM_T, abs=1e-7)
    names = {name for name, _ in loss.named_parameters()}
    assert names == {"embed_s.weight", "embed_s.bias", "embed_t.weight", "embed_t.bias"}
    assert {"memory_s", "memory_t", "z"} <= set(loss.state_dict())


def test_crd_caps_k_and_samples_uniformly_without_the_positive(registry):
    torch.manual_seed(0)
    loss = make_crd(registry, n=4)  # default num_negatives=16384
    assert loss.k == 3
    index = torch.tensor([0, 1, 2, 3] * 50)
    neg = loss.sample_negatives(index)
    assert neg.shape == (200, 3) and neg.dtype == torch.long
    assert ((neg >= 0) & (neg < 4)).all()
    assert (neg != index.unsqueeze(1)).all()
    for i in range(4):  # every other sample is drawn, the positive never
        drawn = set(neg[index == i].flatten().tolist())
        assert drawn == set(range(4)) - {i}


def test_crd_is_deterministic_for_a_fixed_seed(registry):
    def run(seed):
        torch.manual_seed(seed)
        loss = registry.create("loss", "crd", feat_dim=4, num_negatives=5)
        loss.dataset_info = crd_info(20)
        loss.setup(out(np.ones((2, 3))), out(np.ones((2, 6))))
        batch = {"index": torch.tensor([3, 7, 11])}
        s, t = out(np.arange(9.0).reshape(3, 3)), out(np.arange(18.0).reshape(3, 6) % 5)
        return loss.sample_negatives(batch["index"]), loss(s, t, batch)["crd"].item()

    (n0, v0), (n1, v1), (n2, _) = run(0), run(0), run(1)
    assert torch.equal(n0, n1) and v0 == v1
    assert not torch.equal(n0, n2)


def test_crd_needs_train_size_and_index(registry):
    loss = registry.create("loss", "crd")
    with pytest.raises(ValueError, match="split_sizes"):
        loss.setup(out(np.ones((2, 3))), out(np.ones((2, 3))))
    loss.dataset_info = crd_info(1)
    with pytest.raises(ValueError, match="at least 2"):
        loss.setup(out(np.ones((2, 3))), out(np.ones((2, 3))))
    loss = make_crd(registry, n=4)
    with pytest.raises(ValueError, match="index"):
        loss(out(X_S), out(X_T), {"label": torch.tensor([0, 1])})
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        loss(out(X_S), out(X_T), {"index": torch.tensor([0, 4])})
