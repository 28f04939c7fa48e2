"""tinygrad_lite.functional: forward values against plain NumPy, stability, errors, dtypes.

The finite-difference gradcheck table for these ops lives in test_ops_gradcheck.py; here the backward is
checked against the same computation composed from primitive Tensor ops (an independent derivation) and,
for embedding/cross-entropy, against gradients written out by hand.
"""
import math

import numpy as np
import pytest

import tinygrad_lite.functional as F
from tinygrad_lite import special
from tinygrad_lite import Tensor, gradcheck
from tinygrad_lite.fast.engine import RowGrad

RNG = np.random.default_rng(1234)
erf_ref = np.vectorize(math.erf)  # reference only: far too slow for the library itself


def t64(*shape, scale=1.0, grad=True):
    return Tensor(RNG.standard_normal(shape) * scale, requires_grad=grad, dtype=np.float64)


def softmax_ref(x, axis=-1):
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def strict_fp():
    """No overflow, invalid (NaN-making) or divide-by-zero floating point events allowed inside."""
    return np.errstate(over="raise", invalid="raise", divide="raise")


# --------------------------------------------------------------------------- forward == plain NumPy (float64)
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_and_log_softmax_match_numpy(axis):
    x = t64(3, 4, 5, scale=3)
    np.testing.assert_allclose(F.softmax(x, axis).data, softmax_ref(x.data, axis), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(F.log_softmax(x, axis).data, np.log(softmax_ref(x.data, axis)), rtol=1e-12, atol=1e-12)


def test_cross_entropy_matches_numpy():
    x = t64(2, 3, 7, scale=3)
    tg = RNG.integers(0, 7, (2, 3))
    p = softmax_ref(x.data)
    nll = -np.log(np.take_along_axis(p, tg[..., None], axis=-1)[..., 0])  # (2, 3)
    np.testing.assert_allclose(F.cross_entropy(x, tg, reduction="none").data, nll, rtol=1e-12)
    np.testing.assert_allclose(F.cross_entropy(x, tg).item(), nll.mean(), rtol=1e-12)
    np.testing.assert_allclose(F.cross_entropy(x, tg, reduction="sum").item(), nll.sum(), rtol=1e-12)
    np.testing.assert_allclose(F.cross_entropy(x, Tensor(tg)).item(), nll.mean(), rtol=1e-12)  # integer Tensor


def test_gelu_matches_numpy():
    x = Tensor(np.linspace(-8, 8, 1601), dtype=np.float64)
    tanh_ref = 0.5 * x.data * (1 + np.tanh(math.sqrt(2 / math.pi) * (x.data + 0.044715 * x.data ** 3)))
    exact_ref = 0.5 * x.data * (1 + erf_ref(x.data / math.sqrt(2)))
    np.testing.assert_allclose(F.gelu(x).data, tanh_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(F.gelu(x, approximate="none").data, exact_ref, rtol=1e-12, atol=1e-12)
    assert not np.allclose(tanh_ref, exact_ref, rtol=1e-6, atol=0)  # the two forms really differ


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_derivative_matches_central_difference(approximate):
    x = Tensor(np.linspace(-7, 7, 701) + 0.01, requires_grad=True, dtype=np.float64)  # elementwise op
    g = RNG.standard_normal(x.shape)
    F.gelu(x, approximate).backward(g)
    h = 1e-6
    num = (F.gelu(Tensor(x.data + h, dtype=np.float64), approximate).data
           - F.gelu(Tensor(x.data - h, dtype=np.float64), approximate).data) / (2 * h)
    np.testing.assert_allclose(x.grad, num * g, rtol=1e-7, atol=1e-9)


def test_erf_is_float64_accurate():
    x = np.concatenate([np.linspace(-0.5, 0.5, 2001), [0.0, 1e-300, -1e-300]])  # the |x| <= 0.5 kernel
    np.testing.assert_allclose(special.erf_small(x), erf_ref(x), rtol=2e-15, atol=0)
    y = np.linspace(-6, 26, 9001)  # erfc's right tail: relative accuracy down to 1e-296
    np.testing.assert_allclose(special.erfc(y), np.vectorize(math.erfc)(y), rtol=5e-15, atol=0)


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_numpy(affine):
    x = t64(2, 3, 8, scale=2)
    x.data += 5.0  # a non-zero mean to remove
    w, b = (t64(8), t64(8)) if affine else (None, None)
    ref = (x.data - x.data.mean(-1, keepdims=True)) / np.sqrt(x.data.var(-1, keepdims=True) + 1e-5)
    if affine:
        ref = ref * w.data + b.data
    np.testing.assert_allclose(F.layer_norm(x, w, b).data, ref, rtol=1e-12, atol=1e-12)


def test_linear_and_embedding_match_numpy():
    x, w, b = t64(2, 3, 5), t64(5, 4), t64(4)
    np.testing.assert_allclose(F.linear(x, w, b).data, np.einsum("bti,io->bto", x.data, w.data) + b.data,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(F.linear(x, w).data, np.einsum("bti,io->bto", x.data, w.data), rtol=1e-12, atol=1e-12)
    ids = np.array([[3, 0, 3], [1, 2, 4]])
    e = F.embedding(ids, w)
    assert e.shape == (2, 3, 4)
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(e.data[i, j], w.data[ids[i, j]])


# --------------------------------------------------------------------------- backward == composed primitives
def _composed_softmax(x, axis):
    e = (x - Tensor(x.data.max(axis=axis, keepdims=True), dtype=x.dtype)).exp()
    return e / e.sum(axis=axis, keepdims=True)


def _composed_layer_norm(x, w, b):
    xc = x - x.mean(axis=-1, keepdims=True)
    return xc / ((xc * xc).mean(axis=-1, keepdims=True) + 1e-5).sqrt() * w + b


def _composed_gelu_tanh(x):
    return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)).tanh())


def _composed_attention(q, k, v):
    tq, tk = q.shape[-2], k.shape[-2]
    s = (q @ k.swapaxes(-1, -2)) * (1 / math.sqrt(q.shape[-1]))
    mask = np.triu(np.ones((tq, tk), bool), k=tk - tq + 1)
    return _composed_softmax(s.masked_fill(mask, -np.inf), -1) @ v


CASES = {  # name: (fused, composed, input shapes)
    "softmax": (lambda x: F.softmax(x, 0), lambda x: _composed_softmax(x, 0), [(4, 5)]),
    "log_softmax": (lambda x: F.log_softmax(x), lambda x: _composed_softmax(x, -1).log(), [(4, 5)]),
    "gelu_tanh": (F.gelu, _composed_gelu_tanh, [(4, 5)]),
    "layer_norm": (F.layer_norm, _composed_layer_norm, [(2, 3, 6), (6,), (6,)]),
    "linear": (F.linear, lambda x, w, b: x @ w + b, [(2, 3, 5), (5, 4), (4,)]),
    "attention": (F.scaled_dot_product_attention, _composed_attention, [(2, 3, 5, 4), (2, 3, 5, 4), (2, 3, 5, 6)]),
    "attention_decode": (F.scaled_dot_product_attention, _composed_attention, [(2, 2, 4), (2, 5, 4), (2, 5, 3)]),
}


@pytest.mark.parametrize("name", CASES)
def test_backward_matches_composed_primitives(name):
    fused, composed, shapes = CASES[name]
    a = [t64(*s, scale=2) for s in shapes]
    b = [Tensor(t.data.copy(), requires_grad=True, dtype=np.float64) for t in a]
    ya, yb = fused(*a), composed(*b)
    np.testing.assert_allclose(ya.data, yb.data, rtol=1e-10, atol=1e-12)
    g = RNG.standard_normal(ya.shape)  # random, non-uniform upstream gradient
    ya.backward(g)
    yb.backward(g)
    for ta, tb in zip(a, b):
        np.testing.assert_allclose(ta.grad, tb.grad, rtol=1e-9, atol=1e-12)


def test_cross_entropy_backward_is_softmax_minus_onehot():
    x = t64(6, 5, scale=2)
    tg = np.array([0, 4, -1, 2, 2, -1])
    for reduction in ("mean", "sum", "none"):
        x.grad = None
        loss = F.cross_entropy(x, tg, ignore_index=-1, reduction=reduction)
        g = RNG.standard_normal(loss.shape) if reduction == "none" else np.array(1.7)
        loss.backward(g)
        valid = tg != -1
        w = {"mean": 1.7 / valid.sum(), "sum": 1.7, "none": g}[reduction] * valid  # per-row weight
        expected = softmax_ref(x.data)
        expected[np.arange(6), np.where(valid, tg, 0)] -= 1
        np.testing.assert_allclose(x.grad, expected * w[:, None], rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- stability at extreme inputs
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_give_finite_values_and_grads(dtype):
    base = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, -1e4, 3.0], [1e4, 1e4, 1e4, 1e4]])
    tg = np.array([1, 3, 0])
    ops = [lambda x: F.softmax(x), lambda x: F.log_softmax(x), lambda x: F.cross_entropy(x, tg),
           lambda x: F.cross_entropy(x, tg, reduction="none"), lambda x: F.gelu(x), lambda x: F.gelu(x, "none")]
    for op in ops:
        x = Tensor(base, requires_grad=True, dtype=dtype)
        with strict_fp():
            y = op(x)
            y.backward(np.ones(y.shape))
        assert y.dtype == dtype and x.grad.dtype == dtype
        assert np.isfinite(y.data).all() and np.isfinite(x.grad).all()
    # the values are right, too: row 1 is a one-hot on the 3.0; row 0 has logsumexp 1e4 + log 2
    np.testing.assert_allclose(F.softmax(Tensor(base, dtype=dtype)).data[1], [0, 0, 0, 1])
    losses = F.cross_entropy(Tensor(base, dtype=dtype), tg, reduction="none").data
    np.testing.assert_allclose(losses, [2e4 + math.log(2), 0, math.log(4)], rtol=1e-6, atol=1e-6)
    big = np.array([1e4, -1e4, 3e30, -3e30], dtype)
    for approximate in ("tanh", "none"):
        with strict_fp():
            np.testing.assert_array_equal(F.gelu(Tensor(big, dtype=dtype), approximate).data, np.maximum(big, 0))


def test_fully_masked_rows_are_defined():
    x = Tensor([[-np.inf] * 3, [0.0, -np.inf, 1.0]], requires_grad=True, dtype=np.float64)
    with strict_fp():
        s = F.softmax(x)
        s.backward(RNG.standard_normal(s.shape))
    np.testing.assert_array_equal(s.data[0], 0.0)
    np.testing.assert_allclose(s.data[1], softmax_ref(np.array([0.0, -np.inf, 1.0])))
    np.testing.assert_array_equal(x.grad[0], 0.0)
    x.grad = None
    g = RNG.standard_normal((2, 3))
    with strict_fp():
        ls = F.log_softmax(x)
        ls.backward(g)
    assert np.isneginf(ls.data[0]).all() and np.isneginf(ls.data[1, 1])
    np.testing.assert_allclose(x.grad[0], g[0])  # softmax taken as 0 on a fully masked row
    assert np.isfinite(x.grad).all()


# --------------------------------------------------------------------------- cross_entropy details
def test_cross_entropy_ignore_index_and_reductions():
    x = t64(2, 4, 6)
    tg = np.array([[1, -100, 5, 0], [-100, 2, 2, 3]])
    per = F.cross_entropy(x, tg, ignore_index=-100, reduction="none").data
    valid = tg != -100
    assert per.shape == (2, 4) and (per[~valid] == 0).all() and (per[valid] > 0).all()
    ref = -np.log(softmax_ref(x.data)[valid, tg[valid]])
    np.testing.assert_allclose(per[valid], ref, rtol=1e-12)
    np.testing.assert_allclose(F.cross_entropy(x, tg, ignore_index=-100).item(), ref.mean(), rtol=1e-12)
    np.testing.assert_allclose(F.cross_entropy(x, tg, ignore_index=-100, reduction="sum").item(), ref.sum(), rtol=1e-12)


def test_cross_entropy_all_ignored():
    x = t64(3, 4)
    tg = np.full(3, 7)
    loss = F.cross_entropy(x, tg, ignore_index=7)  # mean over zero targets: 0/0, NaN as in PyTorch
    assert np.isnan(loss.item())
    loss.backward()
    np.testing.assert_array_equal(x.grad, 0.0)  # ... but the gradient is defined: nothing to learn
    assert F.cross_entropy(x, tg, ignore_index=7, reduction="sum").item() == 0.0


def test_cross_entropy_errors():
    x = t64(2, 3, 5)
    with pytest.raises(TypeError, match="float64"):
        F.cross_entropy(x, np.zeros((2, 3)))  # float targets
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 3, 5\)"):
        F.cross_entropy(x, np.zeros((2, 4), int))
    bad = np.zeros((2, 3), int)
    bad[1, 2] = 5
    with pytest.raises(ValueError, match=r"target 5 at position \(1, 2\).*V=5"):
        F.cross_entropy(x, bad)
    bad[1, 2] = -1
    with pytest.raises(ValueError, match=r"target -1 .*V=5.*ignore_index=-100"):
        F.cross_entropy(x, bad, ignore_index=-100)
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, np.zeros((2, 3), int), reduction="avg")


# --------------------------------------------------------------------------- embedding
def test_embedding_repeated_ids_accumulate():
    w = t64(10, 4)
    ids = np.array([[3, 1, 3, 3], [0, 9, 1, 5]])
    y = F.embedding(ids, w)
    g = RNG.standard_normal(y.shape)
    y.backward(g)
    expected = np.zeros((10, 4))
    for i in range(2):
        for j in range(4):
            expected[ids[i, j]] += g[i, j]
    np.testing.assert_allclose(w.grad, expected, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("ids", [np.array([7]), np.array([2, 2, 2, 2]), np.arange(9)[::-1],
                                 np.array([4, 0, 4, 8, 1, 0, 4, 3]), np.array([], dtype=np.intp)])
def test_embedding_row_gradient_matches_add_at(ids):
    rows = RNG.standard_normal((len(ids), 3))
    expected = np.zeros((9, 3))
    np.add.at(expected, ids, rows)
    np.testing.assert_allclose(RowGrad(ids, rows, 9).dense(), expected, rtol=1e-14)
    base = RNG.standard_normal((9, 3))
    np.testing.assert_allclose(RowGrad(ids, rows, 9).add_to(base.copy()), base + expected, rtol=1e-14)


def test_tied_embedding_gradient_sums_both_uses_in_place():
    """A weight used by an embedding and by a matmul (a tied LM head) gets the sum of both gradients,
    whichever arrives first, and across two backward calls."""
    w = t64(6, 3)
    ids = np.array([[1, 4, 1]])
    gh = RNG.standard_normal((1, 3, 6))
    for _ in range(2):
        h = F.embedding(ids, w)  # (1, 3, 3)
        (h @ w.T).backward(gh)
    head = np.einsum("btv,btc->vc", gh, w.data[ids])  # d/dW of h @ W^T through the head
    emb = np.zeros((6, 3))
    np.add.at(emb, ids.reshape(-1), (gh @ w.data).reshape(-1, 3))  # through the embedding
    np.testing.assert_allclose(w.grad, 2 * (head + emb), rtol=1e-12)


def test_embedding_errors():
    w = t64(5, 3)
    with pytest.raises(TypeError, match="float32"):
        F.embedding(np.array([1.0, 2.0], np.float32), w)
    with pytest.raises(ValueError, match=r"\[5, 7\].*V=5"):
        F.embedding(np.array([[0, 7], [5, 1]]), w)
    with pytest.raises(ValueError, match=r"\[-1\].*V=5"):
        F.embedding(np.array([-1, 0]), w)
    assert F.embedding(Tensor(np.array([4, 0])), w).shape == (2, 3)  # integer Tensor ids are fine


# --------------------------------------------------------------------------- attention
def attention_ref(q, k, v, causal):
    """Plain per-(batch, head) loop with an explicit mask; query i sits at position i + Tk - Tq."""
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    out = np.zeros((B, H, Tq, v.shape[-1]))
    for b in range(B):
        for h in range(H):
            s = q[b, h] @ k[b, h].T / math.sqrt(D)
            if causal:
                for i in range(Tq):
                    for j in range(Tk):
                        if j > i + Tk - Tq:
                            s[i, j] = -np.inf
            p = np.exp(s - s.max(-1, keepdims=True))
            out[b, h] = p / p.sum(-1, keepdims=True) @ v[b, h]
    return out


@pytest.mark.parametrize("causal", [True, False])
def test_attention_matches_loop_reference(causal):
    q, k, v = t64(2, 3, 5, 4), t64(2, 3, 5, 4), t64(2, 3, 5, 6)
    out = F.scaled_dot_product_attention(q, k, v, causal=causal)
    np.testing.assert_allclose(out.data, attention_ref(q.data, k.data, v.data, causal), rtol=1e-12, atol=1e-12)


def test_attention_is_causal():
    q, k, v = t64(1, 2, 6, 4), t64(1, 2, 6, 4), t64(1, 2, 6, 4)
    out = F.scaled_dot_product_attention(q, k, v).data
    k2, v2 = k.data.copy(), v.data.copy()
    k2[:, :, 4:] += 10.0  # change only the future of positions 0..3
    v2[:, :, 4:] -= 10.0
    out2 = F.scaled_dot_product_attention(q, Tensor(k2, dtype=np.float64), Tensor(v2, dtype=np.float64)).data
    np.testing.assert_array_equal(out[:, :, :4], out2[:, :, :4])
    assert not np.allclose(out[:, :, 4:], out2[:, :, 4:])


@pytest.mark.parametrize("tq", [1, 3])
def test_attention_decode_step_equals_last_rows(tq):
    q, k, v = t64(2, 3, 7, 4), t64(2, 3, 7, 4), t64(2, 3, 7, 5)
    full = F.scaled_dot_product_attention(q, k, v).data
    last = F.scaled_dot_product_attention(Tensor(q.data[:, :, -tq:], dtype=np.float64), k, v).data
    np.testing.assert_allclose(last, full[:, :, -tq:], rtol=1e-12, atol=1e-14)


def test_attention_dropout():
    q, k, v = t64(1, 1, 4, 3), t64(1, 1, 4, 3), t64(1, 1, 4, 2)
    plain = F.scaled_dot_product_attention(q, k, v).data
    evald = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=False).data
    np.testing.assert_array_equal(evald, plain)
    a = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=True, rng=np.random.default_rng(5)).data
    b = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=True, rng=np.random.default_rng(5)).data
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, plain)
    rng = np.random.default_rng(6)
    mean = np.mean([F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, training=True, rng=rng).data
                    for _ in range(4000)], axis=0)
    np.testing.assert_allclose(mean, plain, atol=0.1 * np.abs(v.data).max())  # E[dropout(P)] = P


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [True, False])
def test_attention_with_huge_scores(dtype, causal):
    """Scores beyond +-60 (float32) / +-600 (float64) take the max-shifted softmax; nothing overflows."""
    q, k, v = (RNG.standard_normal((2, 2, 5, 4)) for _ in range(3))
    q[0, 1] *= 1e3 if dtype == np.float32 else 1e4  # scores of order 1e3 / 1e4 in one head only
    ts = [Tensor(a, requires_grad=True, dtype=dtype) for a in (q, k, v)]
    with strict_fp():
        out = F.scaled_dot_product_attention(*ts, causal=causal)
        out.backward(RNG.standard_normal(out.shape))
    ref = attention_ref(q, k, v, causal)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.data, ref, rtol=tol, atol=tol)
    assert all(np.isfinite(t.grad).all() for t in ts)


def test_attention_dropout_gradcheck():
    """With dropout the backward's row term r_i = g_i . out_i must use the dropped probabilities."""
    q, k, v = t64(2, 3, 5, 4), t64(2, 3, 5, 4), t64(2, 3, 5, 3)
    fn = lambda q, k, v: F.scaled_dot_product_attention(  # noqa: E731  a fresh, equal mask per call
        q, k, v, dropout_p=0.3, training=True, rng=np.random.default_rng(7))
    out = fn(q, k, v)
    assert (out.data != F.scaled_dot_product_attention(q, k, v).data).any()  # dropout did something
    r = Tensor(RNG.standard_normal(out.shape), dtype=np.float64)  # a random, non-uniform upstream gradient
    assert gradcheck(lambda q, k, v: (fn(q, k, v) * r).sum(), [q, k, v])


def test_attention_errors():
    q = t64(2, 5, 4)
    with pytest.raises(ValueError, match=r"\(2, 5, 4\).*\(2, 5, 3\)"):
        F.scaled_dot_product_attention(q, t64(2, 5, 3), t64(2, 5, 4))
    with pytest.raises(ValueError, match="Tq <= Tk"):
        F.scaled_dot_product_attention(q, t64(2, 3, 4), t64(2, 3, 4))
    with pytest.raises(ValueError, match="do not broadcast"):
        F.scaled_dot_product_attention(q, t64(3, 5, 4), t64(3, 5, 4))


# --------------------------------------------------------------------------- dropout
def test_dropout_eval_and_p0_are_identity():
    x = t64(3, 4)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0, training=True) is x


def test_dropout_train_scales_and_keeps_expectation():
    x = Tensor(np.full(200_000, 2.0), requires_grad=True, dtype=np.float64)
    y = F.dropout(x, 0.3, training=True, rng=np.random.default_rng(0))
    kept = y.data != 0
    np.testing.assert_allclose(y.data[kept], 2.0 / 0.7)
    assert abs(kept.mean() - 0.7) < 0.01
    assert abs(y.data.mean() - 2.0) < 0.02
    y.backward(np.ones(y.shape))
    np.testing.assert_allclose(x.grad, np.where(kept, 1 / 0.7, 0.0))  # d(x m)/dx = m
    same = F.dropout(x, 0.3, training=True, rng=np.random.default_rng(0)).data
    np.testing.assert_array_equal(same, y.data)
    other = F.dropout(x, 0.3, training=True).data  # module default generator
    assert abs((other != 0).mean() - 0.7) < 0.01 and not np.array_equal(other, y.data)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        F.dropout(t64(2), p, training=True)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        F.dropout(t64(2), p, training=False)


# --------------------------------------------------------------------------- dtypes and shape errors
def _all_ops(dtype):
    def t(*shape):
        return Tensor(RNG.standard_normal(shape), requires_grad=True, dtype=dtype)
    ids = np.array([[1, 2, 1]])
    return [
        (lambda x: F.softmax(x), [t(2, 5)]),
        (lambda x: F.log_softmax(x), [t(2, 5)]),
        (lambda x: F.cross_entropy(x, ids), [t(1, 3, 5)]),
        (lambda x: F.gelu(x), [t(2, 5)]),
        (lambda x: F.gelu(x, "none"), [t(2, 5)]),
        (lambda x, w, b: F.layer_norm(x, w, b), [t(2, 5), t(5), t(5)]),
        (lambda w: F.embedding(ids, w), [t(4, 5)]),
        (lambda x, w, b: F.linear(x, w, b), [t(2, 5), t(5, 3), t(3)]),
        (lambda x: F.dropout(x, 0.5, True), [t(2, 5)]),
        (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.1, training=True), [t(2, 4, 3)] * 3),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(dtype):
    for fn, inputs in _all_ops(dtype):
        y = fn(*inputs)
        assert y.dtype == dtype
        y.backward(np.ones(y.shape, dtype))
        for x in inputs:
            assert x.grad.dtype == dtype and x.grad.shape == x.shape


def test_mixed_float_dtypes_are_rejected():
    a32 = Tensor(np.ones((2, 3)), dtype=np.float32)
    a64 = Tensor(np.ones((3,)), dtype=np.float64)
    with pytest.raises(TypeError, match="float32.*float64"):
        F.layer_norm(a32, a64, None)
    with pytest.raises(TypeError, match="mixed"):
        F.linear(a32, Tensor(np.ones((3, 2)), dtype=np.float64))
    with pytest.raises(TypeError, match="mixed"):
        F.scaled_dot_product_attention(a32, a32, Tensor(np.ones((2, 3)), dtype=np.float64))
    with pytest.raises(TypeError, match="floating-point"):
        F.softmax(Tensor(np.arange(3)))
    with pytest.raises(TypeError, match="must be a Tensor"):
        F.gelu(np.ones(3))


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3, 5\).*\(4, 6\)"):
        F.linear(t64(2, 3, 5), t64(4, 6))
    with pytest.raises(ValueError, match=r"bias shape \(5,\).*\(6,\)"):
        F.linear(t64(2, 4), t64(4, 6), t64(5))
    with pytest.raises(ValueError, match=r"weight shape \(4,\).*\(5,\)"):
        F.layer_norm(t64(2, 5), t64(4), None)
    with pytest.raises(ValueError, match="2-D"):
        F.embedding(np.array([0]), t64(5))
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(t64(3), approximate="erf")


@pytest.mark.parametrize("order", ["dense-first", "rows-first"])
def test_row_gradients_merge_with_dense_and_each_other(order):
    """Two embeddings of one weight plus a dense use: every merge path of sparse and dense gradients."""
    w = t64(7, 3)
    r1, r2, r3 = RNG.standard_normal((2, 4, 3)), RNG.standard_normal((5, 3)), RNG.standard_normal((7, 3))
    a, b = np.array([[0, 6, 6, 2], [3, 3, 0, 1]]), np.array([6, 5, 5, 0, 4])

    def fn(w):
        rows = (F.embedding(a, w) * r1).sum() + (F.embedding(b, w) * r2).sum()
        dense = (w * w * r3).sum()
        return dense + rows if order == "dense-first" else rows + dense
    assert gradcheck(fn, [w])
