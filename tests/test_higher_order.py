"""Gradients of gradients: backward(create_graph=True), autograd.grad, autograd.functional, gradgradcheck,
and activation recomputation. The PyTorch comparisons of every op are in test_torch_crosscheck.py."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

import tinygrad_lite.autograd.functional as AF
import tinygrad_lite.functional as F
from tinygrad_lite import (Function, GradcheckError, Tensor, autograd, checkpoint, fast, gradcheck, gradgradcheck,
                           no_grad, recompute)
from tinygrad_lite.tools.opcases import TABLE, make_inputs
from gpt import GPT, GPTConfig


def leaf(a) -> Tensor:
    return Tensor(np.asarray(a, np.float64), requires_grad=True, dtype=np.float64)


RNG = np.random.default_rng(0)


# ------------------------------------------------------------------ backward(create_graph) and grad
def test_backward_create_graph_gives_a_differentiable_grad():
    x = leaf([0.5, -1.0, 2.0])
    (x ** 3).sum().backward(create_graph=True)
    assert isinstance(x.grad, Tensor) and x.grad.requires_grad  # 3 x^2, carrying its graph
    np.testing.assert_allclose(x.grad.data, 3 * x.data ** 2)
    g = x.grad
    x.grad = None
    g.sum().backward()  # d/dx sum(3 x^2) = 6 x
    np.testing.assert_allclose(x.grad, 6 * x.data)


def test_grad_returns_a_tuple_and_leaves_dot_grad_alone():
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    out = (x * y).sum()
    gx, gy = autograd.grad(out, [x, y], retain_graph=True)
    np.testing.assert_array_equal(gx.data, y.data)
    np.testing.assert_array_equal(gy.data, x.data)
    assert x.grad is None and y.grad is None and not gx.requires_grad
    (gx2,) = autograd.grad(out, x, grad_outputs=Tensor(2.0, dtype=np.float64))
    np.testing.assert_array_equal(gx2.data, 2 * y.data)


def test_grad_errors_name_what_is_wrong():
    x, z = leaf([1.0]), leaf([2.0])
    y = x * 2
    with pytest.raises(RuntimeError, match=r"inputs\[1\].*not used.*allow_unused=True"):
        autograd.grad(y.sum(), [x, z], retain_graph=True)
    assert autograd.grad(y.sum(), [x, z], allow_unused=True)[1] is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        autograd.grad(y.sum(), [Tensor([1.0])])
    with pytest.raises(RuntimeError, match="one-element"):
        autograd.grad(y * Tensor([1.0, 1.0], dtype=np.float64), x)


def test_grad_of_an_intermediate_stops_there_and_keeps_the_rest_of_the_graph():
    x = leaf([1.0, 2.0])
    h = x * 3
    y = (h * h).sum()
    (gh,) = autograd.grad(y, h, retain_graph=True)
    np.testing.assert_array_equal(gh.data, 2 * h.data)
    assert h._ctx.inputs is not None  # h's own node was not released
    y.backward()
    np.testing.assert_array_equal(x.grad, 18 * x.data)


def test_third_derivative():
    x = leaf([0.7, -0.3])
    (g1,) = autograd.grad((x ** 4).sum(), x, create_graph=True)
    (g2,) = autograd.grad(g1.sum(), x, create_graph=True)
    (g3,) = autograd.grad(g2.sum(), x)
    np.testing.assert_allclose(g3.data, 24 * x.data)


# ------------------------------------------------------------------ autograd.functional
def test_functional_products_on_a_known_function():
    """f(a, b) = sum(a^2 b): the Hessian is known in closed form."""
    a, b = RNG.standard_normal(3), RNG.standard_normal(3)
    f = lambda x, y: (x * x * y).sum()  # noqa: E731
    H = AF.hessian(f, (leaf(a), leaf(b)))
    np.testing.assert_allclose(H[0][0].data, np.diag(2 * b))
    np.testing.assert_allclose(H[0][1].data, np.diag(2 * a))
    np.testing.assert_allclose(H[1][1].data, np.zeros((3, 3)))
    va, vb = RNG.standard_normal(3), RNG.standard_normal(3)
    out, (ha, hb) = AF.hvp(f, (leaf(a), leaf(b)), (leaf(va), leaf(vb)))
    np.testing.assert_allclose(ha.data, 2 * b * va + 2 * a * vb)
    np.testing.assert_allclose(hb.data, 2 * a * va)
    out2, vh = AF.vhp(f, (leaf(a), leaf(b)), (leaf(va), leaf(vb)))
    np.testing.assert_allclose(vh[0].data, ha.data)
    o, jv = AF.jvp(lambda x: x * x, leaf(a), leaf(va))
    np.testing.assert_allclose(jv.data, 2 * a * va)  # a single input: a Tensor, not a tuple
    o, vj = AF.vjp(lambda x: x * x, leaf(a), leaf(va))
    np.testing.assert_allclose(vj.data, 2 * a * va)
    J = AF.jacobian(lambda x: x * x, leaf(a))
    np.testing.assert_allclose(J.data, np.diag(2 * a))


def test_functional_inputs_need_not_require_grad_and_results_are_detached():
    x = Tensor(RNG.standard_normal(4), dtype=np.float64)
    out, g = AF.vjp(lambda t: (t * t).sum(), x)
    assert not x.requires_grad and not g.requires_grad and not out.requires_grad
    np.testing.assert_allclose(g.data, 2 * x.data)


def test_functional_create_graph_stays_connected_to_the_inputs():
    x = leaf([0.5, 1.5])
    _, hv = AF.hvp(lambda t: (t ** 3).sum(), x, leaf([1.0, 1.0]), create_graph=True)  # 6 x
    hv.sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, 6.0])


def test_functional_strict_and_bad_v():
    x = leaf([1.0, 2.0])
    _, g = AF.vjp(lambda t: t.detach() * 2, x, leaf([1.0, 1.0]))  # not strict: a zero gradient
    np.testing.assert_array_equal(g.data, [0.0, 0.0])
    with pytest.raises(RuntimeError, match="does not depend on input 0"):
        AF.vjp(lambda t: t.detach() * 2, x, leaf([1.0, 1.0]), strict=True)
    with pytest.raises(RuntimeError, match="v can be None only"):
        AF.vjp(lambda t: t * 2, x)
    with pytest.raises(RuntimeError, match=r"v\[0\] has shape \(3,\)"):
        AF.jvp(lambda t: t * 2, x, leaf([1.0, 1.0, 1.0]))


# ------------------------------------------------------------------ gradgradcheck
class BadTanh(Function):
    """tanh with a backward that is right to first order, but treats tanh(x) as a constant: its second
    derivative is wrong. gradcheck passes it; gradgradcheck must not."""

    @staticmethod
    def forward(ctx, x):
        out = np.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * (1 - out.data * out.data)


@pytest.mark.parametrize("projections", [False, True], ids=["full", "projections"])
def test_gradgradcheck_catches_a_planted_wrong_second_derivative(projections):
    x = leaf(RNG.standard_normal((2, 3)))
    assert gradcheck(BadTanh.apply, [x], projections=projections)
    with pytest.raises(GradcheckError, match="gradient mismatch"):
        gradgradcheck(BadTanh.apply, [x], projections=projections)
    assert gradgradcheck(lambda t: t.tanh(), [x], projections=projections)


@pytest.mark.parametrize("name", ["layer_norm", "gelu", "gelu_exact", "softmax", "cross_entropy", "attention"])
def test_gradgradcheck_on_fused_ops(name):
    r = np.random.default_rng(1)
    x = leaf(r.standard_normal((2, 3, 4)))
    cases = {
        "layer_norm": (lambda t, w, b: F.layer_norm(t, w, b), [x, leaf(r.standard_normal(4)), leaf(r.standard_normal(4))]),
        "gelu": (lambda t: F.gelu(t), [x]), "gelu_exact": (lambda t: F.gelu(t, "none"), [x]),
        "softmax": (lambda t: F.softmax(t, 1), [x]),
        "cross_entropy": (lambda t: F.cross_entropy(t, np.array([[0, 3, 1], [2, 2, 0]])), [x]),
        "attention": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [x, leaf(r.standard_normal((2, 3, 4))),
                                                                               leaf(r.standard_normal((2, 3, 2)))]),
    }
    fn, inputs = cases[name]
    assert gradgradcheck(fn, inputs, grad_outputs=None)


def test_gradgradcheck_with_given_grad_outputs():
    x = leaf(RNG.standard_normal(3))
    assert gradgradcheck(lambda t: t ** 3, [x], grad_outputs=[np.array([1.0, -2.0, 0.5])])
    with pytest.raises(ValueError, match="grad_outputs must give one array per output"):
        gradgradcheck(lambda t: t ** 3, [x], grad_outputs=[np.ones(4)])


# ------------------------------------------------------------------ recompute (activation checkpointing)
def _gpt_grads(recomputed: bool, dropout: float, dtype=np.float64):
    cfg = GPTConfig(vocab_size=13, block_size=8, n_layer=3, n_head=2, n_embd=16, dropout=dropout)
    model = GPT(cfg, seed=0, dtype=dtype)
    model.recompute_blocks = recomputed
    rng = np.random.default_rng(1)
    idx, targets = rng.integers(0, 13, (2, 8)), rng.integers(0, 13, (2, 8))
    loss = model.loss(idx, targets)
    loss.backward()
    return loss.item(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("dropout", [0.0, 0.2])
@pytest.mark.parametrize("mode", ["fast", "math-first"])
def test_recomputed_blocks_give_bit_identical_gradients(dropout, mode):
    with (contextlib.nullcontext() if mode == "math-first" else fast.enabled()):
        plain_loss, plain = _gpt_grads(False, dropout)
        ck_loss, ck = _gpt_grads(True, dropout)
    assert plain_loss == ck_loss
    for name in plain:
        assert np.array_equal(plain[name], ck[name]), name


def test_recompute_keeps_only_one_node_and_reruns_fn():
    calls = []
    w = leaf(RNG.standard_normal((3, 3)))

    def block(x):
        calls.append(1)
        return (x @ w).tanh() @ w

    x = leaf(RNG.standard_normal((2, 3)))
    y = recompute(block, x)
    assert y._ctx.fn.name == "recompute" and len(calls) == 1
    y.sum().backward()
    assert len(calls) == 2  # rerun in backward
    gx, gw = x.grad.copy(), w.grad.copy()
    x.grad = w.grad = None
    block(x).sum().backward()
    assert np.array_equal(gx, x.grad) and np.array_equal(gw, w.grad)
    with no_grad():
        assert not recompute(block, x).requires_grad  # no graph, nothing to recompute


def test_checkpoint_is_the_old_name_of_recompute():
    assert checkpoint is recompute  # DESIGN.md's and PyTorch's name
    model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16), seed=0)
    model.checkpoint_blocks = True  # the model's old attribute name
    assert model.recompute_blocks is True and model.checkpoint_blocks is True


def test_recompute_second_derivative():
    w = leaf(RNG.standard_normal(3))
    x = leaf(RNG.standard_normal(3))
    f = lambda t: (t * w).tanh()  # noqa: E731
    h_plain = AF.hessian(lambda t: f(t).sum(), x).data
    h_ck = AF.hessian(lambda t: recompute(f, t).sum(), x).data
    np.testing.assert_allclose(h_ck, h_plain, rtol=1e-14)


ZERO_D = [(row, c) for row in TABLE for c in row.cases if any(s == () for s in c.shapes)]


@pytest.mark.parametrize("row, c", ZERO_D, ids=[f"{row.name}-{c.id}" for row, c in ZERO_D])
def test_gradgradcheck_with_0d_inputs(row, c):
    """np.exp of a 0-d array is a NumPy scalar, not an array: an op that saves its output (exp, tanh, sqrt,
    sigmoid) must still get the output Tensor back from saved_tensors, or the second derivative misses it."""
    with fast.disabled():
        assert gradgradcheck(lambda *xs: row.fn(*xs, **c.kw), make_inputs(row, c, "contig"))
