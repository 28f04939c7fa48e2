"""Engine semantics: dtype policy, backward (accumulation, sharing, depth, freeing, aliasing), no_grad,
error messages, and a property test of broadcasting gradients against an independent reference."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from tinygrad_lite import Function, get_default_dtype, gradcheck, is_grad_enabled, no_grad, set_default_dtype
import tinygrad_lite.functional as F
from tinygrad_lite.function import OPS as REG
from tinygrad_lite.tensor import Tensor

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


@pytest.fixture
def float64_default():
    """Switch the default dtype to float64 for one test and restore whatever it was."""
    prev = get_default_dtype()
    set_default_dtype(np.float64)
    yield
    set_default_dtype(prev)


def leaf(values, dtype=np.float64) -> Tensor:
    return Tensor(np.asarray(values, dtype=dtype), requires_grad=True, dtype=dtype)


# ------------------------------------------------------------------------ dtype policy
def test_default_dtype_is_float32():
    assert get_default_dtype() == F32
    assert Tensor([1.0, 2.0]).dtype == F32
    assert Tensor(np.array([1.0, 2.0])).dtype == F32  # float64 data is cast to the default
    assert Tensor(3.5).dtype == F32
    assert Tensor.zeros(2, 3).dtype == Tensor.ones(2).dtype == Tensor.randn(2, seed=0).dtype == F32
    assert Tensor(np.array([1.0]), dtype=np.float64).dtype == F64  # an explicit dtype wins
    assert Tensor.zeros(2, dtype=F64).dtype == Tensor.ones(2, dtype=F64).dtype == Tensor.randn(2, dtype=F64).dtype == F64


def test_set_default_dtype_float64_end_to_end(float64_default):
    assert get_default_dtype() == F64
    x = Tensor([[0.5, 1.5], [2.0, 3.0]], requires_grad=True)
    w = Tensor.randn(2, 3, requires_grad=True, seed=0)
    assert x.dtype == w.dtype == Tensor.zeros(2).dtype == Tensor.ones(2).dtype == F64
    y = ((x @ w).tanh() * 2.0 + 1.0).exp().log().sum(axis=0).mean()
    assert y.dtype == F64
    y.backward()
    assert x.grad.dtype == w.grad.dtype == F64


def test_default_dtype_restored_by_fixture_and_validated():
    assert get_default_dtype() == F32  # the float64_default fixture of the previous test put it back
    with pytest.raises(TypeError, match="float32 or float64"):
        set_default_dtype(np.int32)
    assert get_default_dtype() == F32


_P = np.array([[0.5, 1.0, 1.5], [2.0, 2.5, 3.0]], np.float32)
F32_OPS = {  # one entry per registered op (test_every_registered_op_has_a_float32_row): a of shape (2, 3), b too
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a ** b, "matmul": lambda a, b: a @ b.T,
    "neg": lambda a, b: -a, "exp": lambda a, b: a.exp(), "log": lambda a, b: a.log(), "tanh": lambda a, b: a.tanh(),
    "sqrt": lambda a, b: a.sqrt(), "relu": lambda a, b: a.relu(), "sigmoid": lambda a, b: a.sigmoid(),
    "abs": lambda a, b: a.abs(), "sum": lambda a, b: a.sum(axis=0), "max": lambda a, b: a.max(axis=1, keepdims=True),
    "cast": lambda a, b: a.astype(np.float64).astype(np.float32) * b,
    "broadcast_to": lambda a, b: a.broadcast_to((4, 2, 3)),
    "reshape": lambda a, b: a.reshape(3, 2), "transpose": lambda a, b: a.transpose(),
    "getitem": lambda a, b: a[np.array([1, 1, 0])], "index_add": lambda a, b: REG["index_add"].apply(a, [1, 1], (3, 3)),
    "cat": lambda a, b: Tensor.cat([a, b], 1), "where": lambda a, b: Tensor.where(np.array([True, False, True]), a, b),
    "softmax": lambda a, b: F.softmax(a), "log_softmax": lambda a, b: F.log_softmax(a, 0),
    "cross_entropy": lambda a, b: F.cross_entropy(a, np.array([2, 0])), "normal_cdf": lambda a, b: REG["normal_cdf"].apply(a),
    "gelu": lambda a, b: F.gelu(a) + F.gelu(b, "none"), "layer_norm": lambda a, b: F.layer_norm(a, b[0], b[1]),
    "embedding": lambda a, b: F.embedding(np.array([1, 0, 1]), a), "linear": lambda a, b: F.linear(a, b.T, b[0, :2]),
    "dropout": lambda a, b: F.dropout(a, 0.5, True, rng=np.random.default_rng(0)),
    "scaled_dot_product_attention": lambda a, b: F.scaled_dot_product_attention(a, b, a * b),
}


def test_every_registered_op_has_a_float32_row():
    assert set(F32_OPS) == set(REG), f"missing: {sorted(set(REG) - set(F32_OPS))}, extra: {sorted(set(F32_OPS) - set(REG))}"


@pytest.mark.parametrize("name", list(F32_OPS))
def test_float32_ops_stay_float32_forward_and_backward(name):
    a = Tensor(_P, requires_grad=True)
    b = Tensor([[1.5, 0.5, 2.0], [1.0, 3.0, 0.25]], requires_grad=True)
    out = F32_OPS[name](a, b)
    assert out.dtype == F32
    out.backward(np.random.default_rng(0).standard_normal(out.shape).astype(np.float32))
    assert a.grad is not None
    for t in (a, b):
        assert t.grad is None or t.grad.dtype == F32


NUMPY_SCALAR_OPS = [
    lambda t: t * 2.0, lambda t: t * np.float64(2.0), lambda t: np.float64(2.0) * t, lambda t: t + np.float64(1.5),
    lambda t: np.float64(1.5) + t, lambda t: t - np.float64(1.0), lambda t: np.float64(1.0) - t,
    lambda t: t / np.float64(3.0), lambda t: np.float64(3.0) / t, lambda t: t ** np.float64(2.0),
    lambda t: np.float64(2.0) ** t, lambda t: t * np.array(2.0), lambda t: np.array([1.0, 2.0]) * t,
    lambda t: t @ np.ones((2, 2)), lambda t: Tensor.where(np.array([True, False]), t, np.float64(1.0)),
    lambda t: t.masked_fill(np.array([True, False]), np.float64(1e3)), lambda t: t * 3,
]


@pytest.mark.parametrize("i", range(len(NUMPY_SCALAR_OPS)))
def test_python_and_numpy_float64_scalars_do_not_promote(i):
    t = Tensor([1.0, 2.0], requires_grad=True)
    out = NUMPY_SCALAR_OPS[i](t)
    assert out.dtype == F32
    out.sum().backward()
    assert t.grad.dtype == F32


MIXED = {
    "add": lambda a, b: a + b, "radd": lambda a, b: b + a, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a ** b, "matmul": lambda a, b: a @ b,
    "where": lambda a, b: Tensor.where(np.array([True, False]), a, b),
    "cat": lambda a, b: Tensor.cat([a, b]), "stack": lambda a, b: Tensor.stack([a, b]),
}


@pytest.mark.parametrize("name", list(MIXED))
def test_mixed_float32_float64_tensors_raise(name):
    a, b = Tensor([1.0, 2.0], dtype=np.float32), Tensor([3.0, 4.0], dtype=np.float64)
    with pytest.raises(TypeError, match="float64"):
        MIXED[name](a, b)


def test_integer_data_stays_integer_and_cannot_require_grad(float64_default):
    assert Tensor([1, 2, 3]).dtype.kind == "i"
    assert Tensor(np.arange(3, dtype=np.int32)).dtype == np.int32
    assert Tensor(np.array([True, False])).dtype == bool
    for data in ([1, 2, 3], np.arange(3, dtype=np.int32), np.array([True])):
        with pytest.raises(TypeError, match="grad"):
            Tensor(data, requires_grad=True)


# ------------------------------------------------------------------------ backward
def test_grads_accumulate_across_backward_calls():
    x = leaf([1.0, -2.0, 3.0])
    r = np.array([0.5, 2.0, -1.0])
    (x * r).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, r + 2 * x.data)  # d(x.r)/dx + d(x.x)/dx


def test_shared_subexpression_gets_every_contribution():
    x, a, b = leaf([1.0, 2.0]), np.array([3.0, -1.0]), np.array([0.5, 4.0])
    y = x * x  # used twice below
    (y * a + y * b).sum().backward()
    np.testing.assert_array_equal(x.grad, (a + b) * 2 * x.data)


@pytest.mark.parametrize("through", ["leaf", "intermediate"])
def test_node_reached_directly_and_through_another_node(through):
    """d(a + 2a)/da = 3: `a` is a direct parent of the root AND a parent of 2a (a traversal-order trap)."""
    x = leaf([1.0, 2.0])
    a = x if through == "leaf" else x * 1.0
    (a + a * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])
    z = leaf([1.0, 2.0])
    b = z * 1.0
    (b * 5.0 + (b * 2.0 + b).exp().log()).sum().backward()  # a diamond inside a diamond: 5 + 2 + 1
    np.testing.assert_allclose(z.grad, [8.0, 8.0], rtol=1e-14)


def test_chain_of_100k_ops_has_no_recursion_limit():
    x = leaf(1.0)
    y = x
    for _ in range(100_000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad, 1.0001 ** 100_000, rtol=1e-9)


def test_second_backward_through_a_freed_graph_raises():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad, 2 * (2 * x.data))


def test_backward_without_grad_needs_one_element():
    x = leaf(np.ones((2, 2)))
    with pytest.raises(RuntimeError, match=r"\(2, 2\)"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 2\)"):
        (x * 2.0).backward(np.ones(3))
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).backward()


def test_leaf_grads_are_never_aliased():
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    g = np.array([10.0, 20.0])
    c = a + b  # add hands the very same upstream array to both parents
    c.backward(g, retain_graph=True)
    c.backward(g)
    np.testing.assert_array_equal(a.grad, 2 * g)
    np.testing.assert_array_equal(b.grad, 2 * g)
    assert not np.shares_memory(a.grad, b.grad) and not np.shares_memory(a.grad, g)
    a.grad += 1.0
    np.testing.assert_array_equal(b.grad, 2 * g)
    np.testing.assert_array_equal(g, [10.0, 20.0])  # the caller's gradient was not written into


class _Twice(Function):
    """a + b whose backward returns ONE fresh array for both inputs (a Function may do so)."""

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        t = np.array(g) * 1.0
        return t, t


def _twice(a: Tensor, b: Tensor) -> Tensor:
    return _Twice.apply(a, b)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_one_array_returned_to_two_parents_is_not_shared(order):
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    p, q = x * 1.0, y * 1.0  # intermediates: they receive more contributions after `_twice`
    terms = [(_twice(p, q) * np.array([1.0, 10.0])).sum(), (p * np.array([100.0, 1000.0])).sum(),
             (q * np.array([7.0, 70.0])).sum()]
    (terms[order[0]] + terms[order[1]] + terms[order[2]]).backward()
    np.testing.assert_array_equal(x.grad, [101.0, 1010.0])
    np.testing.assert_array_equal(y.grad, [8.0, 80.0])


# ------------------------------------------------------------------------ no_grad
@pytest.mark.parametrize("order", ["dense-first", "slices-first"])
def test_slice_gradients_merge_with_dense_and_each_other(order):
    """Slices (overlapping, split chunks, None/Ellipsis/negative steps) of a leaf and of an op's output,
    plus a dense use: every way sparse slice gradients meet, against finite differences."""
    rng = np.random.default_rng(3)
    r = [rng.standard_normal(s) for s in ((2, 4, 4), (2, 2, 4), (2, 3, 4), (2, 4, 1), (2, 1, 3, 2), (4, 4))]

    def fn(x):
        h = x * 1.5  # an op output: its slice gradients merge before its own backward
        a, b, c = h.split([1, 2, 1], axis=1)
        parts = [(Tensor.cat([a, b, c], axis=1) * r[0]).sum(),
                 (h[:, 1:3] * r[1]).sum(), (h[:, :3] * r[2]).sum(),  # overlapping slices
                 (x[..., 2:3] * r[3]).sum(), (x[:, None, ::-1, 1::2][..., :3, :] * r[4]).sum(),
                 (x[1, :, ::-1] * r[5]).sum()]  # slices of the leaf itself
        dense = (x * x).sum()
        total = dense
        for p in parts:
            total = total + p if order == "dense-first" else p + total
        return total
    assert gradcheck(fn, [leaf(rng.standard_normal((2, 4, 4)))])


def test_no_grad_context_records_no_graph():
    x = leaf([1.0, 2.0])
    with no_grad():
        assert not is_grad_enabled()
        y = (x * 2.0).exp().sum()
    assert is_grad_enabled()
    assert not y.requires_grad and y.is_leaf and y._ctx is None
    with pytest.raises(RuntimeError):
        y.backward()


def test_grad_mode_is_per_thread():
    """As in PyTorch: no_grad in one thread (or a backward pass there, which records nothing) leaves the
    graph another thread records meanwhile intact."""
    import threading
    inside, release = threading.Event(), threading.Event()

    def other():
        with no_grad():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    t.start()
    inside.wait(10)
    try:
        x = leaf([1.0, 2.0])
        y = (x * 2.0).sum()  # recorded here while the other thread sits inside no_grad
        assert is_grad_enabled() and y.requires_grad
    finally:
        release.set()
        t.join()
    y.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_no_grad_decorator_nesting_and_exceptions():
    @no_grad()
    def f(t):
        assert not is_grad_enabled()
        return t * 3.0

    x = leaf([1.0])
    assert not f(x).requires_grad
    assert is_grad_enabled()
    with no_grad():
        with no_grad():
            assert not is_grad_enabled()
        assert not is_grad_enabled()  # the inner exit restores the outer (disabled) state
        assert not f(x).requires_grad
        assert not is_grad_enabled()  # the decorator restores the disabled state too
    assert is_grad_enabled()
    with pytest.raises(KeyError):
        with no_grad():
            raise KeyError("boom")
    assert is_grad_enabled()

    @no_grad()
    def fails():
        raise ValueError("boom")
    with pytest.raises(ValueError):
        fails()
    assert is_grad_enabled()
    assert (x * 3.0).requires_grad


# ------------------------------------------------------------------------ error messages
def test_matmul_error_names_both_shapes():
    with pytest.raises(ValueError) as e:
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))
    assert "(2, 3)" in str(e.value) and "(4, 5)" in str(e.value)


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError) as e:
        Tensor(np.ones((2, 3))).reshape(4, 2)
    assert "(2, 3)" in str(e.value) and "(4, 2)" in str(e.value)


@pytest.mark.parametrize("op", [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b, lambda a, b: a / b])
def test_broadcast_error_names_both_shapes(op):
    with pytest.raises(ValueError) as e:
        op(Tensor(np.ones((2, 3))), Tensor(np.ones((4,))))
    assert "(2, 3)" in str(e.value) and "(4,)" in str(e.value)


def test_split_sizes_must_sum_to_the_axis():
    with pytest.raises(ValueError) as e:
        Tensor(np.ones((5, 2))).split([2, 2], axis=0)
    assert "[2, 2]" in str(e.value) and "5" in str(e.value)


# ------------------------------------------------------------ property test: broadcasting
def _reference_grads(a: np.ndarray, b: np.ndarray, g: np.ndarray, op: str) -> tuple[np.ndarray, np.ndarray]:
    """d(sum(g * op(a, b)))/da and /db by an explicit loop over output elements: each output index maps
    to the input index it read (dropped leading axes, 0 on size-1 axes); no unbroadcast, no reductions."""
    ga, gb = np.zeros_like(a), np.zeros_like(b)

    def source(idx: tuple, shape: tuple) -> tuple:
        idx = idx[len(idx) - len(shape):]
        return tuple(0 if n == 1 else i for i, n in zip(idx, shape))

    for o in np.ndindex(g.shape):
        ia, ib = source(o, a.shape), source(o, b.shape)
        ga[ia] += g[o] * (b[ib] if op == "mul" else 1.0)
        gb[ib] += g[o] * (a[ia] if op == "mul" else 1.0)
    return ga, gb


@settings(max_examples=30, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=1, max_side=3),
       op=st.sampled_from(["add", "mul"]), seed=st.integers(0, 2**32 - 1))
def test_broadcast_gradients_match_explicit_loop(shapes, op, seed):
    (sa, sb), out_shape = shapes
    rng = np.random.default_rng(seed)
    a, b = leaf(rng.standard_normal(sa)), leaf(rng.standard_normal(sb))
    g = rng.standard_normal(out_shape)  # random, non-uniform upstream gradient
    out = a + b if op == "add" else a * b
    assert out.shape == out_shape
    out.backward(g)
    ga, gb = _reference_grads(a.data, b.data, g, op)
    np.testing.assert_allclose(a.grad, ga, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b.grad, gb, rtol=1e-12, atol=1e-12)
