"""Finite-difference check of every differentiable op, driven by ONE table (`tinygrad_lite.tools.opcases`).

A row is an op (a function of float64 Tensors returning a Tensor or a tuple of Tensors), the input
domain that keeps central differences away from kinks and singularities, its shape cases and, where
there is one, an independent NumPy reference for the forward. Every (row, case) runs on contiguous
inputs and on non-contiguous views of the same values, on both engines (the math-first ops, the default,
and the fast kernels of `tinygrad_lite.fast.enable()`), and is checked three ways:

- forward: equals the NumPy reference;
- weighted: gradcheck of sum_j sum(op(x)_j * R_j), R_j a fixed random, non-uniform upstream gradient;
- jacobian: gradcheck of the raw op output, i.e. the full Jacobian (every upstream gradient at once).
"""
from __future__ import annotations

import numpy as np
import pytest

from tinygrad_lite import Function, fast, get_default_dtype, set_default_dtype
from tinygrad_lite import observe
from tinygrad_lite.function import OPS as REG  # the op registry: every op in it must have rows in the table
from tinygrad_lite.gradcheck import GradcheckError, gradcheck
from tinygrad_lite.tensor import Tensor, no_grad
from tinygrad_lite.tools.opcases import SAME, TABLE, Case, Op, as_array, fixed_dropout, make_inputs, outputs, seed_for


# ------------------------------------------------------------------------ harness
@pytest.fixture(autouse=True)
def float64_default():
    """Everything in this file is float64, so central differences are accurate to ~1e-10."""
    prev = get_default_dtype()
    set_default_dtype(np.float64)
    yield
    set_default_dtype(prev)


@pytest.fixture(autouse=True, params=["math", "fast"])
def engine(request):
    """Every test of the table runs on the math-first ops (the default) and on the fast kernels."""
    if request.param == "fast":
        with fast.enabled():
            yield request.param
    else:
        yield request.param


PARAMS = [pytest.param(op, c, layout, id=f"{op.name}-{c.id}-{layout}")
          for op in TABLE for c in op.cases for layout in ("contig", "noncontig")]


# --------------------------------------------------------------------------- tests
def test_table_rows_have_three_shape_cases():
    for op in TABLE:
        assert len(op.cases) >= 3, op.name
        assert len({c.id for c in op.cases}) == len(op.cases), f"{op.name}: duplicate case ids"


def test_every_registered_op_has_gradcheck_rows():
    """The table is answerable to the registry: an op registered without a row fails here."""
    covered = {row.name if row.op == "" else row.op for row in TABLE}
    missing = sorted(set(REG) - covered)
    assert not missing, f"registered ops without a gradcheck row: {missing}"
    assert covered - {None} <= set(REG), f"rows naming no registered op: {sorted(covered - {None} - set(REG))}"


class _Seen(observe.Forwarding):
    def __init__(self):
        self.names = set()

    def forward(self, ctx, impl, arrays):
        self.names.add(ctx.fn.name)
        return self.inner.forward(ctx, impl, arrays)


@pytest.mark.parametrize("row", TABLE, ids=[r.name for r in TABLE])
def test_each_row_runs_the_op_it_names(row: Op):
    want = row.name if row.op == "" else row.op
    c = row.cases[0]
    with observe.watch(_Seen()) as seen:
        row.fn(*make_inputs(row, c, "contig"), **c.kw)
    if want is None:
        assert len(seen.names) > 1, f"{row.name} is marked as composed of several ops but ran {seen.names}"
    else:
        assert want in seen.names, f"row {row.name} is for op {want!r} but ran only {sorted(seen.names)}"


@pytest.mark.parametrize("op,c,layout", [p for p in PARAMS if p.values[0].ref is not None])
def test_forward_matches_numpy(op: Op, c: Case, layout: str):
    inputs = make_inputs(op, c, layout)
    ref = op.fn if op.ref == SAME else op.ref
    expected = outputs(ref(*[as_array(x).copy() for x in inputs], **c.kw))
    got = outputs(op.fn(*inputs, **c.kw))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == np.float64 and g.shape == np.shape(e)
        np.testing.assert_allclose(g.data, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op,c,layout", PARAMS)
def test_gradcheck_weighted(op: Op, c: Case, layout: str):
    """sum_j sum(op(x)_j * R_j): R_j fixed random, so every output element has its own upstream weight."""
    inputs = make_inputs(op, c, layout)
    rng = np.random.default_rng(seed_for("R", op.name, c.id))
    with no_grad():
        Rs = [Tensor(rng.standard_normal(o.shape), dtype=np.float64) for o in outputs(op.fn(*inputs, **c.kw))]

    def loss(*xs):
        return sum(((o * r).sum() for o, r in zip(outputs(op.fn(*xs, **c.kw)), Rs)), start=Tensor(0.0))

    assert gradcheck(loss, inputs)
    # and the op really reaches every differentiable input (a table slip would make the check vacuous)
    loss(*inputs).backward()
    for k, x in enumerate(inputs):
        if isinstance(x, Tensor):
            assert x.grad is not None and np.any(x.grad != 0), f"input {k} of {op.name} got no gradient"
            assert x.grad.shape == x.shape and x.grad.dtype == np.float64


@pytest.mark.parametrize("op,c,layout", PARAMS)
def test_gradcheck_jacobian(op: Op, c: Case, layout: str):
    """The raw output: gradcheck compares the full Jacobian."""
    inputs = make_inputs(op, c, layout)
    assert gradcheck(lambda *xs: outputs(op.fn(*xs, **c.kw)), inputs)


# ------------------------------------------------------------ beyond the table
def test_max_ties_share_the_gradient_equally():
    """At a tie max is not differentiable (no finite-difference check); the engine splits g evenly."""
    x = Tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, 5.0, -1.0]], requires_grad=True, dtype=np.float64)
    x.max(axis=1).backward(np.array([10.0, 30.0, 7.0]))
    np.testing.assert_array_equal(x.grad, [[0, 5, 5], [10, 10, 10], [0, 7, 0]])

    y = Tensor([[4.0, 1.0], [4.0, 4.0]], requires_grad=True, dtype=np.float64)
    y.max().backward(np.array(6.0))  # three-way tie over all elements
    np.testing.assert_array_equal(y.grad, [[2, 0], [2, 2]])

    z = Tensor([[1.0, 2.0], [1.0, 0.0]], requires_grad=True, dtype=np.float64)
    z.max(axis=0, keepdims=True).backward(np.array([[8.0, 3.0]]))
    np.testing.assert_array_equal(z.grad, [[4, 3], [4, 0]])


class _Cube(Function):
    """y = x^3 with a backward that is off by the factor (1 + error)."""

    @staticmethod
    def forward(ctx, x, error):
        ctx.save_for_backward(x)
        ctx.error = error
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (3.0 * x ** 2) * (1.0 + ctx.error), None


def _cube(x: Tensor, error: float) -> Tensor:
    return _Cube.apply(x, error)


@pytest.mark.parametrize("projections", [False, True], ids=["full", "projections"])
def test_gradcheck_catches_a_backward_off_by_a_tenth_of_a_percent(projections: bool):
    # rtol=1e-3 (the default) is exactly a 0.1% relative error, so such a bug sits on the edge of the
    # default tolerance; a check meant to catch it uses a tighter rtol, which float64 differences support.
    x = Tensor(np.random.default_rng(0).uniform(0.5, 1.5, (3, 4)), requires_grad=True, dtype=np.float64)
    R = Tensor(np.random.default_rng(1).standard_normal((3, 4)), dtype=np.float64)
    tight = dict(atol=1e-8, rtol=1e-4, projections=projections)
    for fn in (lambda t: _cube(t, 0.0), lambda t: (_cube(t, 0.0) * R).sum()):
        assert gradcheck(fn, [x], **tight)  # the correct backward passes at this tolerance
    for fn in (lambda t: _cube(t, 1e-3), lambda t: (_cube(t, 1e-3) * R).sum()):
        with pytest.raises(GradcheckError):
            gradcheck(fn, [x], **tight)
    with pytest.raises(GradcheckError):  # a 1% error is caught at the default tolerances
        gradcheck(lambda t: (_cube(t, 1e-2) * R).sum(), [x], projections=projections)


def test_dropout_row_uses_one_fixed_mask():
    """The premise of the dropout row: the same seed gives the same mask on every call; each element is
    either dropped (0) or scaled by 1/(1-p); a different seed gives a different mask."""
    x = Tensor(np.random.default_rng(0).uniform(0.5, 1.5, (6, 7)), dtype=np.float64)
    a, b, c = fixed_dropout(x, 0.5).data, fixed_dropout(x, 0.5).data, fixed_dropout(x, 0.5, seed=99).data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    kept = a != 0
    np.testing.assert_allclose(a[kept], x.data[kept] / 0.5, rtol=1e-15)
    assert 0 < kept.sum() < kept.size
