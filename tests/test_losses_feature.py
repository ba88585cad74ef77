"""Golden values for the feature methods fitnet, at, sp and vid: every expected number
is computed here by hand (numpy loops and closed forms), never by the plugin's helpers.
Adapters are fixed (identity or known weights) so the expected value has a closed form."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

from kdbench import config
from kdbench.grid import make_plan
from kdbench.runner import RunContext, run_student, train_teacher
from kdbench.spec import ModelRef
from kdbench.store import ResultStore
from kdbench.testing import check_loss
from kdbench.types import ModelOutput

BN_EPS = 1e-5


def out(**features):
    """A ModelOutput whose ``features`` are the given arrays, in the given order
    (``__`` in a keyword stands for the ``.`` of a tap name)."""
    feats = OrderedDict((k.replace("__", "."), torch.tensor(np.asarray(v), dtype=torch.float32)) for k, v in features.items())
    b = next(iter(feats.values())).shape[0]
    return ModelOutput(logits=torch.zeros(b, 3), embedding=torch.zeros(b, 2), features=feats)


def rand(*shape, seed=0, positive=True):
    x = np.random.default_rng(seed).normal(size=shape)
    return np.abs(x) if positive else x


def np_(t):
    return t.detach().double().numpy()


def pool_blocks(x, size):
    """Average pooling by hand: each output position is the mean of its block of the
    input (the sizes here divide exactly, where adaptive pooling is block pooling)."""
    out_ = np.zeros(x.shape[:2] + tuple(size))
    if x.ndim == 4:
        kh, kw = x.shape[2] // size[0], x.shape[3] // size[1]
        for i in range(size[0]):
            for j in range(size[1]):
                out_[:, :, i, j] = x[:, :, i * kh:(i + 1) * kh, j * kw:(j + 1) * kw].mean(axis=(2, 3))
    else:
        k = x.shape[2] // size[0]
        for i in range(size[0]):
            out_[:, :, i] = x[:, :, i * k:(i + 1) * k].mean(axis=2)
    return out_


def channel_mix(w, x, bias=None):
    """y[b, o, ...] = sum_c w[o, c] x[b, c, ...] (+ bias[o]): a 1x1 convolution or a
    linear layer, written as loops over output and input channels."""
    y = np.zeros((x.shape[0], w.shape[0]) + x.shape[2:])
    for o in range(w.shape[0]):
        for c in range(w.shape[1]):
            y[:, o] += w[o, c] * x[:, c]
        if bias is not None:
            y[:, o] += bias[o]
    return y


def batchnorm_train(y):
    """Batch normalisation in training mode, gamma 1, beta 0: per channel, over the
    batch and every position, biased variance."""
    z = np.zeros_like(y)
    for c in range(y.shape[1]):
        v = y[:, c]
        z[:, c] = (v - v.mean()) / math.sqrt(v.var() + BN_EPS)
    return z


# --------------------------------------------------------------------------- fitnet


def fitnet_by_hand(f_s, f_t, w, bias):
    y = np.maximum(batchnorm_train(channel_mix(w, f_s, bias)), 0.0)
    return float(((y - f_t) ** 2).mean())


def fixed_regressor(loss, w, bias):
    lin = loss.regressors[0][0]
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(w, dtype=torch.float32).reshape(lin.weight.shape))
        lin.bias.copy_(torch.tensor(bias, dtype=torch.float32))


@pytest.mark.parametrize("s_shape, t_shape", [
    ((4, 2, 3, 3), (4, 3, 3, 3)),  # 4-D, same size
    ((4, 2, 4, 4), (4, 3, 2, 2)),  # 4-D, the student's map is larger: pooled before the regressor
    ((4, 2, 2, 2), (4, 3, 4, 4)),  # 4-D, the teacher's map is larger: pooled as the target
    ((4, 2, 6), (4, 3, 3)),        # 3-D (Conv1d)
    ((4, 2), (4, 3)),              # 2-D (Linear)
])
def test_fitnet_golden(registry, s_shape, t_shape):
    f_s, f_t = rand(*s_shape, seed=1, positive=False), rand(*t_shape, seed=2)
    w, bias = np.array([[1.0, -0.5], [0.3, 2.0], [-1.0, 0.7]]), np.array([0.1, -0.2, 0.3])
    loss = registry.create("loss", "fitnet")
    s, t = out(a__l1=f_s), out(a__l1=f_t)
    loss.setup(s, t)
    fixed_regressor(loss, w, bias)
    if len(s_shape) > 2:
        size = tuple(min(a, b) for a, b in zip(s_shape[2:], t_shape[2:]))
        f_s = pool_blocks(f_s, size) if s_shape[2:] != size else f_s
        f_t = pool_blocks(f_t, size) if t_shape[2:] != size else f_t
    assert loss(s, t, {})["fitnet"].item() == pytest.approx(fitnet_by_hand(f_s, f_t, w, bias), rel=1e-5)


def test_fitnet_identity_regressor_closed_form(registry):
    # identity weights: BN standardises each channel; a teacher equal to ReLU of the
    # standardised student map gives fitnet = 0
    f_s = rand(5, 2, 3, 3, seed=3, positive=False)
    z = np.stack([(f_s[:, c] - f_s[:, c].mean()) / math.sqrt(f_s[:, c].var() + BN_EPS) for c in range(2)], axis=1)
    loss = registry.create("loss", "fitnet")
    s, t = out(x=f_s), out(x=np.maximum(z, 0.0))
    loss.setup(s, t)
    fixed_regressor(loss, np.eye(2), np.zeros(2))
    assert loss(s, t, {})["fitnet"].item() == pytest.approx(0.0, abs=1e-6)


def test_fitnet_hints_by_name_default_last_shared(registry):
    s = out(image__layer1=rand(2, 2, 2, 2), image__layer2=rand(2, 3, 2, 2), audio__layer1=rand(2, 2, 4))
    t = out(audio__layer1=rand(2, 4, 4), image__layer1=rand(2, 5, 2, 2), other=rand(2, 3))
    loss = registry.create("loss", "fitnet")
    loss.setup(s, t)
    assert loss.names == ["audio.layer1"]  # the last name both share, in the student's order
    assert len(loss.regressors) == 1 and isinstance(loss.regressors[0][0], torch.nn.Conv1d)
    named = registry.create("loss", "fitnet", features=["image.layer1", "audio.layer1"])
    named.setup(s, t)
    assert named.names == ["image.layer1", "audio.layer1"]
    a, b = loss(s, t, {})["fitnet"].item(), named(s, t, {})["fitnet"].item()
    assert b > a > 0  # the sum over two hints includes the one-hint term


def test_fitnet_sums_over_named_pairs(registry):
    f = {k: rand(3, 2, 2, 2, seed=i) for i, k in enumerate(("s1", "s2", "t1", "t2"))}
    w, bias = np.array([[0.5, 1.0], [-1.0, 0.2]]), np.array([0.0, 0.1])
    s, t = out(a=f["s1"], b=f["s2"]), out(a=f["t1"], b=f["t2"])
    loss = registry.create("loss", "fitnet", features=["a", "b"])
    loss.setup(s, t)
    for reg in loss.regressors:
        with torch.no_grad():
            reg[0].weight.copy_(torch.tensor(w, dtype=torch.float32).reshape(2, 2, 1, 1))
            reg[0].bias.copy_(torch.tensor(bias, dtype=torch.float32))
    expected = fitnet_by_hand(f["s1"], f["t1"], w, bias) + fitnet_by_hand(f["s2"], f["t2"], w, bias)
    assert loss(s, t, {})["fitnet"].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("method", ["fitnet", "at", "sp", "vid"])
def test_feature_name_errors(registry, method):
    s, t = out(image__layer1=rand(2, 2, 2, 2)), out(image__layer1=rand(2, 3, 2, 2), image__layer2=rand(2, 3, 2, 2))
    loss = registry.create("loss", method, features=["image.layer2"])
    with pytest.raises(ValueError, match=r"'image\.layer2'.*student.*available: \['image\.layer1'\]"):
        loss.setup(s, t)
    loss = registry.create("loss", method, features=["image.layer9"])
    with pytest.raises(ValueError, match="image.layer9"):
        loss.setup(s, t)
    loss = registry.create("loss", method)
    with pytest.raises(ValueError, match="share no feature"):
        loss.setup(out(x=rand(2, 2, 2, 2)), out(y=rand(2, 2, 2, 2)))


def test_fitnet_two_stage_attributes(registry):
    one = registry.create("loss", "fitnet")
    assert one.pretrain_epochs == 0 and type(one).default_weights == {"ce": 1.0, "fitnet": 100.0}
    two = registry.create("loss", "fitnet", hint_epochs=3)
    assert two.pretrain_epochs == 3 and two.pretrain_weights == {"ce": 0.0, "fitnet": 1.0}
    with pytest.raises(ValueError, match="hint_epochs"):
        registry.create("loss", "fitnet", hint_epochs=-1)


def test_fitnet_two_stage_through_the_runner(write_grid, registry, tmp_path):
    grid = write_grid(students="[{model: cnn, width: 4, depth: 2}]", methods="[{name: fitnet, hint_epochs: 2}]",
                      train="{epochs: 2, batch_size: 32, lr: 0.05}")
    plan = make_plan(config.parse_grid(str(grid), registry), registry)
    ctx = RunContext(registry, ResultStore(tmp_path / "results"), "cpu", {"latency": False})
    for teacher in plan.teachers:
        train_teacher(ctx, teacher)
    doc = run_student(ctx, next(r for r in plan.runs if r.method.name == "fitnet"))
    assert doc["status"] == "done", doc.get("traceback")
    stages = [h["stage"] for h in doc["history"]]
    assert stages == ["pretrain", "pretrain", "distill", "distill"]
    assert not any(h["selected"] for h in doc["history"] if h["stage"] == "pretrain")
    assert doc["selected"]["stage"] == "distill"
    assert set(doc["history"][0]["train"]) == {"ce", "fitnet"}
    assert all(math.isfinite(v) for h in doc["history"] for v in h["train"].values())


# ------------------------------------------------------------------------------- at


def attention_by_hand(f, p):
    b = f.shape[0]
    a = np.zeros((b, int(np.prod(f.shape[2:]))))
    for i in range(b):
        m = (f[i] ** p).mean(axis=0).reshape(-1)
        a[i] = m / max(np.sqrt((m ** 2).sum()), 1e-12)
    return a


def at_by_hand(f_s, f_t, p=2.0):
    return float(((attention_by_hand(f_s, p) - attention_by_hand(f_t, p)) ** 2).mean())


@pytest.mark.parametrize("p", [2.0, 4.0])
@pytest.mark.parametrize("s_shape, t_shape", [
    ((3, 2, 3, 3), (3, 5, 3, 3)),  # 4-D
    ((3, 2, 5), (3, 4, 5)),        # 3-D: attention over the length
])
def test_at_golden(registry, p, s_shape, t_shape):
    f_s, f_t = rand(*s_shape, seed=4), rand(*t_shape, seed=5)
    loss = registry.create("loss", "at", p=p)
    value = loss(out(x=f_s), out(x=f_t), {})["at"].item()
    assert value == pytest.approx(at_by_hand(f_s, f_t, p), rel=1e-5)


@pytest.mark.parametrize("s_shape, t_shape", [((3, 2, 4, 4), (3, 3, 2, 2)), ((3, 2, 2, 2), (3, 3, 4, 4)),
                                              ((3, 2, 8), (3, 3, 4))])
def test_at_pools_the_larger_map_first(registry, s_shape, t_shape):
    f_s, f_t = rand(*s_shape, seed=6), rand(*t_shape, seed=7)
    size = tuple(min(a, b) for a, b in zip(s_shape[2:], t_shape[2:]))
    ps = pool_blocks(f_s, size) if s_shape[2:] != size else f_s
    pt = pool_blocks(f_t, size) if t_shape[2:] != size else f_t
    loss = registry.create("loss", "at")
    assert loss(out(x=f_s), out(x=f_t), {})["at"].item() == pytest.approx(at_by_hand(ps, pt), rel=1e-5)


def test_at_closed_form_upsampled_teacher_map(registry):
    # the student's map is the teacher's repeated over 2x2 blocks: pooling the feature
    # map back gives the teacher's exactly, hence at = 0 (one channel: the attention
    # is the normalised squared map)
    f_t = rand(2, 1, 2, 2, seed=8)
    f_s = f_t.repeat(2, axis=2).repeat(2, axis=3)
    loss = registry.create("loss", "at")
    assert loss(out(x=f_s), out(x=f_t), {})["at"].item() == pytest.approx(0.0, abs=1e-7)
    # one sample, one channel, maps (1, 0) and (0, 1): attentions e1, e2, mean sq diff = 2/2
    v = registry.create("loss", "at")(out(x=[[[1.0, 0.0]]]), out(x=[[[0.0, 1.0]]]), {})["at"].item()
    assert v == pytest.approx(1.0, rel=1e-6)


def test_at_skips_2d_features_and_rejects_them_by_name(registry):
    s = out(image__layer1=rand(2, 2, 2, 2), vector__layer1=rand(2, 4), audio__layer1=rand(2, 2, 6))
    t = out(image__layer1=rand(2, 3, 2, 2), vector__layer1=rand(2, 5), audio__layer1=rand(2, 4, 3))
    loss = registry.create("loss", "at")
    loss.setup(s, t)
    assert loss.names == ["image.layer1", "audio.layer1"]
    sf, tf = {k: np_(v) for k, v in s.features.items()}, {k: np_(v) for k, v in t.features.items()}
    expected = at_by_hand(sf["image.layer1"], tf["image.layer1"])
    expected += at_by_hand(pool_blocks(sf["audio.layer1"], (3,)), tf["audio.layer1"])  # length 6 pooled to 3
    assert loss(s, t, {})["at"].item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="spatial"):
        registry.create("loss", "at", features=["vector.layer1"]).setup(s, t)
    with pytest.raises(ValueError, match="share no feature name with spatial maps"):
        registry.create("loss", "at").setup(out(v=rand(2, 3)), out(v=rand(2, 4)))
    with pytest.raises(ValueError, match="4-D on the student and 3-D"):
        registry.create("loss", "at", features=["x"]).setup(out(x=rand(2, 2, 2, 2)), out(x=rand(2, 2, 4)))
    assert type(loss).default_weights == {"ce": 1.0, "at": 1000.0}


# ------------------------------------------------------------------------------- sp


def sp_by_hand(f_s, f_t):
    b = f_s.shape[0]

    def gram(f):
        q = f.reshape(b, -1)
        g = np.zeros((b, b))
        for i in range(b):
            for j in range(b):
                g[i, j] = float((q[i] * q[j]).sum())
        return g / np.maximum(np.sqrt((g ** 2).sum(axis=1, keepdims=True)), 1e-12)

    return float(((gram(f_t) - gram(f_s)) ** 2).sum()) / (b * b)


@pytest.mark.parametrize("s_shape, t_shape", [((5, 2, 3, 3), (5, 4, 2, 2)), ((5, 3, 7), (5, 6, 4)),
                                              ((5, 4), (5, 9)), ((5, 2, 2, 2), (5, 3))])
def test_sp_golden(registry, s_shape, t_shape):
    f_s, f_t = rand(*s_shape, seed=9, positive=False), rand(*t_shape, seed=10, positive=False)
    value = registry.create("loss", "sp")(out(x=f_s), out(x=f_t), {})["sp"].item()
    assert value == pytest.approx(sp_by_hand(f_s, f_t), rel=1e-5)


def test_sp_divides_by_batch_size_squared(registry):
    # B = 2: the student's rows e1, e2 give G_s = I; the teacher's equal rows give
    # normalised rows (1, 1)/sqrt 2. ||G_t - G_s||_F^2 = 2 (1/sqrt2 - 1)^2 + 2 (1/2) = 4 - 2 sqrt 2,
    # divided by B^2 = 4
    s, t = out(x=[[1.0, 0.0], [0.0, 1.0]]), out(x=[[1.0, 0.0], [1.0, 0.0]])
    value = registry.create("loss", "sp")(s, t, {})["sp"].item()
    assert value == pytest.approx((4 - 2 * math.sqrt(2)) / 4, rel=1e-6)
    # B = 4 (the batch twice): each row of G_s has two ones -> (1/sqrt2) twice; G_t's rows are all
    # 1/2: per row 2 (1/2 - 1/sqrt2)^2 + 2/4 = 2 - sqrt 2; four rows over B^2 = 16
    s2, t2 = out(x=[[1.0, 0.0], [0.0, 1.0]] * 2), out(x=[[1.0, 0.0], [1.0, 0.0]] * 2)
    value = registry.create("loss", "sp")(s2, t2, {})["sp"].item()
    assert value == pytest.approx(4 * (2 - math.sqrt(2)) / 16, rel=1e-6)
    assert type(registry.create("loss", "sp")).default_weights == {"ce": 1.0, "sp": 3000.0}


def test_sp_matches_every_shared_name_by_default(registry):
    f = [rand(4, 3, seed=i, positive=False) for i in range(5)]
    s, t = out(a=f[0], b=f[1], c=f[2]), out(c=f[3], a=f[4])
    loss = registry.create("loss", "sp")
    loss.setup(s, t)
    assert loss.names == ["a", "c"]
    assert loss(s, t, {})["sp"].item() == pytest.approx(sp_by_hand(f[0], f[4]) + sp_by_hand(f[2], f[3]), rel=1e-5)
    one = registry.create("loss", "sp", features=["c"])
    assert one(s, t, {})["sp"].item() == pytest.approx(sp_by_hand(f[2], f[3]), rel=1e-5)


# ------------------------------------------------------------------------------ vid


def vid_by_hand(f_s, f_t, ws, var):
    h = f_s
    for i, w in enumerate(ws):
        h = channel_mix(w, h)
        if i < 2:
            h = np.maximum(h, 0.0)
    v = var.reshape((1, -1) + (1,) * (f_t.ndim - 2))
    return float((0.5 * ((h - f_t) ** 2 / v + np.log(v))).mean())


def set_vid(loss, index, ws, alpha):
    layers = [m for m in loss.regressors[index] if not isinstance(m, torch.nn.ReLU)]
    with torch.no_grad():
        for layer, w in zip(layers, ws):
            layer.weight.copy_(torch.tensor(w, dtype=torch.float32).reshape(layer.weight.shape))
        loss.log_scales[index].copy_(torch.tensor(alpha, dtype=torch.float32))


def test_vid_closed_form_identity_regressor(registry):
    # identity regressor on non-negative maps: mu = f_s; alpha = 0: sigma^2 = log 2 + eps
    f_s, f_t = rand(3, 2, 2, 2, seed=11), rand(3, 2, 2, 2, seed=12)
    loss = registry.create("loss", "vid")
    s, t = out(x=f_s), out(x=f_t)
    loss.setup(s, t)
    set_vid(loss, 0, [np.eye(2)] * 3, np.zeros(2))
    v = math.log(2.0) + 1e-5
    expected = 0.5 * float(((f_s - f_t) ** 2).mean()) / v + 0.5 * math.log(v)
    assert loss(s, t, {})["vid"].item() == pytest.approx(expected, rel=1e-5)


def test_vid_initial_variance(registry):
    loss = registry.create("loss", "vid")
    loss.setup(out(x=rand(2, 2, 2, 2)), out(x=rand(2, 3, 2, 2)))
    alpha = np_(loss.log_scales[0])
    assert np.log1p(np.exp(alpha)) + 1e-5 == pytest.approx(np.full(3, 5.0), rel=1e-5)
    convs = [m for m in loss.regressors[0] if isinstance(m, torch.nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(3, 2, 1, 1), (3, 3, 1, 1), (3, 3, 1, 1)]  # mid = teacher's
    assert all(c.bias is None for c in convs)
    assert type(loss).default_weights == {"ce": 1.0, "vid": 1.0}


@pytest.mark.parametrize("s_shape, t_shape", [
    ((3, 2, 4, 4), (3, 3, 2, 2)),  # 4-D, the student's map is pooled
    ((3, 2, 2, 2), (3, 3, 4, 4)),  # 4-D, the teacher's map is pooled
    ((3, 2, 3), (3, 3, 6)),        # 3-D
    ((3, 2), (3, 3)),              # 2-D
])
def test_vid_golden(registry, s_shape, t_shape):
    f_s, f_t = rand(*s_shape, seed=13, positive=False), rand(*t_shape, seed=14, positive=False)
    loss = registry.create("loss", "vid")
    s, t = out(x=f_s), out(x=f_t)
    loss.setup(s, t)
    rng = np.random.default_rng(15)
    ws = [rng.normal(size=(3, 2)), rng.normal(size=(3, 3)), rng.normal(size=(3, 3))]
    alpha = np.array([0.3, -1.0, 2.0])
    set_vid(loss, 0, ws, alpha)
    if len(s_shape) > 2:
        size = tuple(min(a, b) for a, b in zip(s_shape[2:], t_shape[2:]))
        f_s = pool_blocks(f_s, size) if s_shape[2:] != size else f_s
        f_t = pool_blocks(f_t, size) if t_shape[2:] != size else f_t
    var = np.log1p(np.exp(alpha)) + 1e-5
    assert loss(s, t, {})["vid"].item() == pytest.approx(vid_by_hand(f_s, f_t, ws, var), rel=1e-5)


def test_vid_sums_over_matched_pairs(registry):
    f = [rand(2, 2, 2, 2, seed=20 + i) for i in range(4)]
    s, t = out(a=f[0], b=f[1]), out(a=f[2], b=f[3])
    loss = registry.create("loss", "vid")
    loss.setup(s, t)
    assert loss.names == ["a", "b"]
    for i in range(2):
        set_vid(loss, i, [np.eye(2)] * 3, np.zeros(2))
    v = np.full(2, math.log(2.0) + 1e-5)
    expected = vid_by_hand(f[0], f[2], [np.eye(2)] * 3, v) + vid_by_hand(f[1], f[3], [np.eye(2)] * 3, v)
    assert loss(s, t, {})["vid"].item() == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------- rank mismatches


@pytest.mark.parametrize("method", ["fitnet", "sp", "vid"])
def test_mlp_student_against_cnn_teacher(registry, method):
    # the mlp's taps are (B, D), the cnn's (B, C, H, W) / (B, C, L) under the same names:
    # fitnet and vid pool both to (B, C), sp flattens each sample
    check_loss(registry, method, student=ModelRef("mlp", {"width": 8}, label="student"))
