"""Every fast kernel equals the math-first op it replaces: forward output and every input gradient,
in float64 to rtol 1e-12 and in float32 within rounding, on contiguous and non-contiguous inputs,
with broadcasting. The cases are keyed by op name and checked against `fast.KERNELS`, so a kernel
cannot be registered without its test. Also: a graph built with fast kernels, differentiated with
create_graph=True (the math-first backward, on the context of the op's own forward run again), gives
the same gradients.
"""
from __future__ import annotations

import numpy as np
import pytest

import tinygrad_lite
import tinygrad_lite.functional as F
from tinygrad_lite import Function, Tensor, autograd, fast

# name -> list of (fn of Tensors, input shapes, {arg index: "ids" | "pos" | ...}); integer inputs fixed inside fn
_IDS = np.array([[3, 1, 3, 0], [2, 2, 4, 1]])
_T = np.array([[1, 0, 4], [2, 2, 3]])
CASES = {
    "matmul": [(lambda a, b: a @ b, [(3, 4), (4, 5)]), (lambda a, b: a @ b, [(2, 3, 4), (4, 5)]),
               (lambda a, b: a @ b, [(2, 1, 3, 4), (5, 4, 2)]), (lambda a, b: a @ b, [(4,), (2, 4, 3)]),
               (lambda a, b: a @ b, [(3, 4), (4,)]), (lambda a, b: a @ b, [(4,), (4,)]),
               (lambda a, w: a @ w.T, [(2, 3, 4), (6, 4)])],  # the tied LM head: x @ W.T
    "getitem": [(lambda x: x[1:3, ::-1], [(4, 3)]), (lambda x: x[None, ..., 1], [(2, 3, 4)]),
                (lambda x: x[np.array([0, 2, 0])], [(3, 4)]), (lambda x: x[:, [1, 1, 0]], [(2, 3)]),
                (lambda x: sum(((p * (i + 1)).sum() for i, p in enumerate(x.split([1, 2, 1], 1))), x[0, 0]),
                 [(2, 4, 3)])],
    "add": [(lambda a, b: a + b, [(3, 4), (3, 4)]), (lambda a, b: a + b, [(2, 1, 4), (3, 1)]),
            (lambda a, b: a + b, [(), (2, 3)])],
    "reshape": [(lambda x: x.reshape(6, 2), [(3, 4)]), (lambda x: x.reshape(-1), [(2, 3, 2)])],
    "transpose": [(lambda x: x.transpose(2, 0, 1), [(2, 3, 4)]), (lambda x: x.T, [(3, 5)])],
    "softmax": [(lambda x: F.softmax(x, -1), [(3, 5)]), (lambda x: F.softmax(x, 0), [(4, 2, 3)]),
                (lambda x: F.softmax(x.masked_fill(np.array([True, False, True]), -np.inf), -1), [(2, 3)])],
    "log_softmax": [(lambda x: F.log_softmax(x, -1), [(3, 5)]), (lambda x: F.log_softmax(x, 1), [(2, 4, 3)])],
    "cross_entropy": [(lambda x: F.cross_entropy(x, _T), [(2, 3, 5)]),
                      (lambda x: F.cross_entropy(x, _T, reduction="sum"), [(2, 3, 5)]),
                      (lambda x: F.cross_entropy(x, _T, reduction="none"), [(2, 3, 5)]),
                      (lambda x: F.cross_entropy(x, _T, ignore_index=2), [(2, 3, 5)])],
    "gelu": [(lambda x: F.gelu(x * 4), [(3, 5)]), (lambda x: F.gelu(x * 4, "none"), [(2, 3, 4)]),
             (lambda x: F.gelu(x * 1e4), [(7,)])],
    "layer_norm": [(lambda x, w, b: F.layer_norm(x, w, b), [(2, 3, 8), (8,), (8,)]),
                   (lambda x, w: F.layer_norm(x, w, None), [(4, 5), (5,)]),
                   (lambda x: F.layer_norm(x, None, None, 1e-3), [(3, 6)])],
    "embedding": [(lambda w: F.embedding(_IDS, w), [(5, 3)])],
    "linear": [(lambda x, w, b: F.linear(x, w, b), [(2, 3, 4), (4, 5), (5,)]),
               (lambda x, w: F.linear(x, w), [(6, 4), (4, 2)])],
    "dropout": [(lambda x: F.dropout(x, 0.3, True, rng=np.random.default_rng(7)), [(4, 5)])],
    "scaled_dot_product_attention": [
        (lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [(2, 2, 5, 4), (2, 2, 5, 4), (2, 2, 5, 3)]),
        (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, causal=False), [(2, 1, 3, 4), (1, 2, 6, 4), (2, 2, 6, 4)]),
        (lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [(2, 3, 4), (2, 5, 4), (2, 5, 4)]),  # Tq < Tk
        # saturated softmax (huge scores, the shifted path): the kernel's r = g . out (FlashAttention's identity)
        # equals the math-first sum(dP * P) only up to rounding, and dQ = dS K multiplies that by |K| ~ 100,
        # where the math-first dQ is exactly 0: compared with a tolerance 1000 times wider
        (lambda q, k, v: F.scaled_dot_product_attention(q * 100, k * 100, v), [(2, 4, 4), (2, 4, 4), (2, 4, 4)], 1e3),
        (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.25, training=True,
                                                       rng=np.random.default_rng(3)), [(2, 5, 4)] * 3),
        # causal in blocks of query rows (T >= 2 * 64): uneven blocks, Tq < Tk, dropout, saturated scores
        (lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [(1, 2, 140, 3), (1, 2, 140, 3), (1, 2, 140, 2)]),
        (lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [(2, 197, 3), (2, 230, 3), (2, 230, 3)]),
        (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.25, training=True,
                                                       rng=np.random.default_rng(4)), [(1, 132, 3)] * 3),
        (lambda q, k, v: F.scaled_dot_product_attention(q * 100, k * 100, v), [(1, 128, 2)] * 3, 1e3)],
}
CASE_IDS = [(name, i) for name, cases in CASES.items() for i in range(len(cases))]


def test_every_fast_kernel_has_cases():
    """Every kernel of an op (the optimizer kernels are checked in test_fast_optim.py)."""
    assert {op.name for op in fast.KERNELS if issubclass(op, Function)} == set(CASES)


def _noncontiguous(a: np.ndarray) -> np.ndarray:
    """The same values in a non-contiguous layout: every other element of a doubled array, along an axis
    longer than 1 (0-d arrays and arrays of one element stay as they are)."""
    axes = [i for i, n in enumerate(a.shape) if n > 1]
    if not axes:
        return a
    view = np.repeat(a, 2, axis=axes[-1])[(slice(None),) * axes[-1] + (slice(None, None, 2),)]
    assert not view.flags.c_contiguous and np.array_equal(view, a)
    return view


def _run(fn, arrays, upstream, dtype, create_graph=False):
    xs = [Tensor(a, requires_grad=True, dtype=dtype) for a in arrays]
    out = fn(*xs)
    g = Tensor(upstream(out.shape), dtype=dtype)
    if create_graph:
        grads = autograd.grad(out, xs, g, create_graph=True, allow_unused=True)
        grads = [None if gr is None else gr.data for gr in grads]
    else:
        out.backward(g)
        grads = [x.grad for x in xs]
    return out.data, grads


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["contiguous", "non-contiguous"])
@pytest.mark.parametrize("name,i", CASE_IDS, ids=[f"{n}-{i}" for n, i in CASE_IDS])
def test_fast_kernel_equals_math_first(name, i, layout, dtype):
    fn, shapes, *widen = CASES[name][i]
    rng = np.random.default_rng(i)
    arrays = [rng.standard_normal(s) for s in shapes]
    if layout == "non-contiguous":
        arrays = [_noncontiguous(a) for a in arrays]
    upstream = lambda shape: np.random.default_rng(99).standard_normal(shape)  # noqa: E731 (random, non-uniform)
    assert not fast.is_enabled()  # the default: the math-first ops
    want_out, want_grads = _run(fn, arrays, upstream, dtype)
    with fast.enabled():
        got_out, got_grads = _run(fn, arrays, upstream, dtype)
    scale = max([float(np.max(np.abs(a), initial=0)) for a in [want_out, *want_grads] if a is not None
                 and np.isfinite(a).all()], default=0.0) * (widen[0] if widen else 1.0)
    _close(got_out, want_out, dtype, scale)
    assert got_out.dtype == want_out.dtype == dtype
    for got, want in zip(got_grads, want_grads):
        assert (got is None) == (want is None)
        if got is not None:
            assert got.dtype == dtype and got.shape == want.shape
            _close(got, want, dtype, scale)
    # create_graph on a graph the kernels built runs the ops' own backward (their forward is run again for it)
    with fast.enabled():
        _, cg_grads = _run(fn, arrays, upstream, dtype, create_graph=True)
    for got, want in zip(cg_grads, want_grads):
        if want is not None:
            _close(got, want, dtype, scale)


def _close(got: np.ndarray, want: np.ndarray, dtype, scale: float) -> None:
    """Equal within rtol (1e-12 in float64; float32: rounding), relative to each entry and, for entries
    near 0 that are sums of cancelling terms, to `scale` (the largest entry of the case's arrays)."""
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def test_a_broken_kernel_is_caught(monkeypatch):
    """The comparison can fail: a GELU kernel whose backward is 1e-9 off in float64 is detected."""
    kernel = fast.KERNELS[F.GELU]
    original = kernel.backward

    def off(ctx, g):
        d, rest = original(ctx, g)
        return d * (1 + 1e-9), rest
    monkeypatch.setattr(kernel, "backward", staticmethod(off))
    with pytest.raises(AssertionError):
        test_fast_kernel_equals_math_first("gelu", 0, "contiguous", np.float64)


def test_fast_mode_switches_every_kernel_and_restores():
    implementation = tinygrad_lite.state.implementation
    assert not fast.is_enabled() and all(implementation(op) is op for op in fast.KERNELS)  # the default
    with fast.enabled():
        assert fast.is_enabled() and all(implementation(op) is k for op, k in fast.KERNELS.items())
        with fast.disabled():
            assert not fast.is_enabled() and all(implementation(op) is op for op in fast.KERNELS)
        assert all(implementation(op) is k for op, k in fast.KERNELS.items())
    assert not fast.is_enabled()
    fast.enable()
    assert fast.is_enabled()
    fast.disable()
    assert not fast.is_enabled() and all(implementation(op) is op for op in fast.KERNELS)
    assert len([op for op in fast.KERNELS if issubclass(op, Function)]) == len(CASES)


def test_every_kernel_writes_its_own_forward():
    """A kernel depends on its op's forward signature only, never on what the op's forward sets on ctx: each
    kernel class defines its own forward (none borrows the op's), with the op's parameters."""
    import inspect
    for op, k in fast.KERNELS.items():
        if not issubclass(op, Function):
            continue
        assert "forward" in vars(k) and k.forward is not op.forward, f"the {op.name} kernel borrows the op's forward"
        assert list(inspect.signature(k.forward).parameters) == list(inspect.signature(op.forward).parameters), op.name


def test_causal_attention_runs_in_blocks_of_query_rows():
    """The block cases above do take the block path (the last block meets every key, the first only its own)."""
    q, k, v = (Tensor(np.random.default_rng(i).standard_normal((1, 2, 130, 4)), requires_grad=True) for i in range(3))
    with fast.enabled():
        blocks = F.scaled_dot_product_attention(q, k, v)._ctx.blocks
        assert [(lo, hi, keys) for lo, hi, keys, _, _ in blocks] == [(0, 65, 65), (65, 130, 130)]
        assert len(F.scaled_dot_product_attention(q, k, v, causal=False)._ctx.blocks) == 1
