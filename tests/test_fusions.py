"""The builtin fusions: shapes, closed forms on hand-set weights, errors, training."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

from kdbench import load_registry
from kdbench.errors import IncompatibleError, UserError
from kdbench.model import build_model
from kdbench.spec import ComponentRef, ModelRef
from kdbench.testing import TINY, check_fusion, tiny_batch

REGISTRY = load_registry()
FUSIONS = ["sum", "gated", "attention", "tensor", "lowrank", "film"]
DIMS = OrderedDict(image=5, audio=7, vector=3)


def make(name: str, dims: dict[str, int], **params):
    return REGISTRY.create("fusion", name, dict(dims), 4, **params)


def inputs(dims: dict[str, int], batch: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, d, generator=g, dtype=torch.float64) for m, d in dims.items()}


def np_(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


@pytest.mark.parametrize("name", FUSIONS)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_shapes(name, k):
    dims = OrderedDict(list(DIMS.items())[:k])
    torch.manual_seed(0)
    fusion = make(name, dims)
    out = fusion({m: torch.randn(4, d) for m, d in dims.items()})
    assert out.embedding.shape == (4, fusion.out_dim)
    assert out.logits is None
    assert torch.isfinite(out.embedding).all()


@pytest.mark.parametrize("name", FUSIONS)
def test_conformance(name):
    check_fusion(REGISTRY, name)


@pytest.mark.parametrize("name", FUSIONS)
def test_deterministic_for_a_fixed_seed(name):
    x = {m: t.float() for m, t in inputs(DIMS).items()}
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        outs.append(make(name, DIMS)(x).embedding)
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("name", FUSIONS)
def test_every_modality_reaches_the_output(name):
    torch.manual_seed(0)
    fusion = make(name, DIMS)
    x = {m: torch.randn(2, d, requires_grad=True) for m, d in DIMS.items()}
    fusion(x).embedding.square().sum().backward()
    for m, t in x.items():
        assert t.grad is not None and t.grad.abs().sum() > 0, f"{name}: no gradient reaches {m}"


def test_default_widths():
    assert make("sum", DIMS).out_dim == 7
    assert make("sum", DIMS, dim=10).out_dim == 10
    assert make("gated", DIMS).out_dim == 7
    assert make("attention", DIMS).out_dim == 8  # 7 rounded up to a multiple of 4 heads
    assert make("tensor", DIMS).out_dim == 17**3
    assert make("tensor", DIMS, dim=None).out_dim == 6 * 8 * 4
    assert make("lowrank", DIMS).out_dim == 32
    assert make("film", DIMS).out_dim == 2 * 7
    assert make("film", {"audio": 7}).out_dim == 7


def test_sum_closed_form():
    dims = OrderedDict(a=2, b=3)
    fusion = make("sum", dims, dim=2).double()
    w = {"a": np.array([[1.0, 2.0], [0.0, -1.0]]), "b": np.array([[1.0, 0.0, 2.0], [3.0, 1.0, 0.0]])}
    b = {"a": np.array([0.5, 0.0]), "b": np.array([0.0, -2.0])}
    with torch.no_grad():
        for m in dims:
            fusion.proj[m].weight.copy_(torch.from_numpy(w[m]))
            fusion.proj[m].bias.copy_(torch.from_numpy(b[m]))
    x = inputs(dims)
    expected = sum(np_(x[m]) @ w[m].T + b[m] for m in dims)
    np.testing.assert_allclose(np_(fusion(x).embedding), expected, rtol=1e-12)


def test_gated_two_modalities_is_the_papers_sigmoid_unit():
    """For M = 2 the softmax gate is sigmoid of the score difference (Arevalo et al. eqs. 1-4)."""
    dims = OrderedDict(v=3, t=4)
    torch.manual_seed(0)
    fusion = make("gated", dims, dim=5).double()
    x = inputs(dims)
    wv, wt = np_(fusion.hidden["v"].weight), np_(fusion.hidden["t"].weight)
    wg, bg = np_(fusion.gate.weight), np_(fusion.gate.bias)
    # Gate rows: the first dim scores are modality v's, the next dim are t's.
    wz, bz = wg[:5] - wg[5:], bg[:5] - bg[5:]
    xv, xt = np_(x["v"]), np_(x["t"])
    z = 1 / (1 + np.exp(-(np.concatenate([xv, xt], 1) @ wz.T + bz)))
    expected = z * np.tanh(xv @ wv.T) + (1 - z) * np.tanh(xt @ wt.T)
    np.testing.assert_allclose(np_(fusion(x).embedding), expected, rtol=1e-10)


def test_gated_one_modality_is_tanh_of_a_projection():
    fusion = make("gated", {"a": 3}, dim=4).double()
    x = inputs({"a": 3})
    expected = np.tanh(np_(x["a"]) @ np_(fusion.hidden["a"].weight).T)
    np.testing.assert_allclose(np_(fusion(x).embedding), expected, rtol=1e-12)


def test_tensor_outer_product_closed_form():
    a, b = np.array([2.0, -1.0]), np.array([3.0, 0.5, 4.0])
    fusion = make("tensor", OrderedDict(a=2, b=3), dim=None).double()
    out = fusion({"a": torch.from_numpy(a[None]), "b": torch.from_numpy(b[None])}).embedding
    expected = np.outer(np.append(a, 1), np.append(b, 1)).ravel()
    assert fusion.out_dim == 3 * 4
    np.testing.assert_allclose(np_(out)[0], expected)
    # Hand-written: [2, -1, 1] x [3, 0.5, 4, 1]
    assert np_(out)[0].tolist() == [6, 1, 8, 2, -3, -0.5, -4, -1, 3, 0.5, 4, 1]


def test_tensor_three_modalities_with_projection():
    dims = OrderedDict(a=2, b=3, c=1)
    torch.manual_seed(0)
    fusion = make("tensor", dims, dim=2).double()
    x = inputs(dims)
    z = [np.concatenate([np_(fusion.proj[m](x[m])), np.ones((3, 1))], 1) for m in dims]
    expected = np.einsum("bi,bj,bk->bijk", *z).reshape(3, -1)
    assert fusion.out_dim == 27
    np.testing.assert_allclose(np_(fusion(x).embedding), expected, rtol=1e-12)


def test_tensor_refuses_an_output_wider_than_max_dim():
    with pytest.raises(IncompatibleError, match="max_dim=1,000"):
        make("tensor", DIMS, dim=16, max_dim=1000)
    with pytest.raises(IncompatibleError, match="set dim"):
        make("tensor", {"a": 200, "b": 200, "c": 200}, dim=None)
    assert make("tensor", DIMS, dim=16, max_dim=17**3).out_dim == 17**3


def test_lowrank_rank_one_identity_factors_is_the_elementwise_product():
    """rank 1, W_m = [I; 0], w = 1, b = 0: e = e_1 * e_2 * e_3 (elementwise)."""
    dims = OrderedDict(a=3, b=3, c=3)
    fusion = make("lowrank", dims, rank=1, dim=3).double()
    with torch.no_grad():
        for m in dims:
            fusion.factors[m].copy_(torch.cat([torch.eye(3), torch.zeros(1, 3)]).unsqueeze(0))
        fusion.fusion_weights.fill_(1.0)
        fusion.fusion_bias.zero_()
    x = inputs(dims)
    expected = np_(x["a"]) * np_(x["b"]) * np_(x["c"])
    np.testing.assert_allclose(np_(fusion(x).embedding), expected, rtol=1e-12)
    # With the appended 1 carried by a row of ones: (a + 1) * (b + 1) * (c + 1) * 2 + 0.5
    with torch.no_grad():
        for m in dims:
            fusion.factors[m][0, 3].fill_(1.0)
        fusion.fusion_weights.fill_(2.0)
        fusion.fusion_bias.fill_(0.5)
    expected = 2 * (np_(x["a"]) + 1) * (np_(x["b"]) + 1) * (np_(x["c"]) + 1) + 0.5
    np.testing.assert_allclose(np_(fusion(x).embedding), expected, rtol=1e-12)


def test_lowrank_matches_the_full_tensor_it_decomposes():
    """LMF equals a linear map of tensor fusion's outer product with the rank-r weight tensor."""
    dims = OrderedDict(a=2, b=3)
    torch.manual_seed(0)
    fusion = make("lowrank", dims, rank=3, dim=4).double()
    x = inputs(dims)
    fa, fb = np_(fusion.factors["a"]), np_(fusion.factors["b"])  # (r, d+1, dim)
    w, bias = np_(fusion.fusion_weights), np_(fusion.fusion_bias)
    full = np.einsum("r,rio,rjo->ijo", w, fa, fb)  # the (3, 4, dim) weight tensor
    za = np.concatenate([np_(x["a"]), np.ones((3, 1))], 1)
    zb = np.concatenate([np_(x["b"]), np.ones((3, 1))], 1)
    expected = np.einsum("bi,bj,ijo->bo", za, zb, full) + bias
    np.testing.assert_allclose(np_(fusion(x).embedding), expected, rtol=1e-10)


def test_film_named_conditioner():
    dims = OrderedDict(image=5, audio=7, vector=3)
    torch.manual_seed(0)
    fusion = make("film", dims, conditioner="image", dim=4).double()
    assert fusion.modulated == ("audio", "vector") and fusion.out_dim == 8
    x = inputs(dims)
    c = np_(x["image"])
    parts = []
    for m in ("audio", "vector"):
        gen = c @ np_(fusion.generators[m].weight).T + np_(fusion.generators[m].bias)
        h = np_(x[m]) @ np_(fusion.proj[m].weight).T + np_(fusion.proj[m].bias)
        parts.append((1 + gen[:, :4]) * h + gen[:, 4:])
    np.testing.assert_allclose(np_(fusion(x).embedding), np.concatenate(parts, 1), rtol=1e-12)


def test_film_default_conditioner_is_the_last_modality():
    fusion = make("film", DIMS)
    assert fusion.conditioner == "vector" and fusion.modulated == ("image", "audio")


def test_film_unknown_conditioner_names_the_modalities():
    with pytest.raises(IncompatibleError, match=r"conditioner 'text'.*\(image, audio, vector\)"):
        make("film", DIMS, conditioner="text")
    with pytest.raises(IncompatibleError, match="not among"):
        make("film", {"image": 5}, conditioner="audio")


def test_film_one_modality_is_the_identity():
    x = inputs({"audio": 7})
    for conditioner in (None, "audio"):
        fusion = make("film", {"audio": 7}, conditioner=conditioner)
        assert torch.equal(fusion(x).embedding, x["audio"])


def test_attention_checks_heads_divide_dim():
    with pytest.raises(UserError, match="multiple of heads"):
        make("attention", DIMS, dim=10, heads=4)
    assert make("attention", DIMS, dim=12, heads=3, layers=2).out_dim == 12


def test_bad_parameter_values_are_user_errors():
    for name, params in [("sum", {"dim": 0}), ("gated", {"dim": -1}), ("lowrank", {"rank": 0}),
                         ("film", {"dim": 0}), ("tensor", {"dim": 0}), ("attention", {"heads": 0})]:
        with pytest.raises(UserError):
            make(name, DIMS, **params)


def test_modality_order_is_the_models():
    """Swapping the dict order of embed_dims swaps the blocks of the outer product."""
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0]])
    ab = make("tensor", OrderedDict(a=2, b=1), dim=None)({"b": b, "a": a}).embedding
    ba = make("tensor", OrderedDict(b=1, a=2), dim=None)({"a": a, "b": b}).embedding
    assert ab.tolist() == [[3.0, 1.0, 6.0, 2.0, 3.0, 1.0]]
    assert ba.tolist() == [[3.0, 6.0, 3.0, 1.0, 2.0, 1.0]]


@pytest.mark.parametrize("name", FUSIONS)
def test_a_model_with_the_fusion_trains_one_step(name):
    torch.manual_seed(0)
    model = build_model(REGISTRY, ModelRef("mlp", {"width": 8, "depth": 1}, label="mlp"), ComponentRef(name), TINY)
    batch = tiny_batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(batch).logits, batch["label"])
    assert torch.isfinite(loss)
    loss.backward()
    for modality, encoder in model.encoders.items():
        grads = [p.grad for p in encoder.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), (
            f"{name}: no gradient reaches the {modality} encoder")
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert torch.isfinite(torch.nn.functional.cross_entropy(model(batch).logits, batch["label"]))
