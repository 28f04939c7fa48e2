"""tinygrad_lite.gradcheck: passes correct backwards, catches wrong ones, names the element, restores state."""
import contextlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import tinygrad_lite.fast
from tinygrad_lite import Function
from tinygrad_lite.gradcheck import GradcheckError, analytical_jacobian, gradcheck, gradgradcheck, numerical_jacobian
from tinygrad_lite.tensor import Tensor

MODES = [pytest.param(False, id="full"), pytest.param(True, id="projections")]


def leaf(*shape: int, seed: int = 0, dtype=np.float64, requires_grad: bool = True) -> Tensor:
    return Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=requires_grad, dtype=dtype)


# ---------------------------------------------------------------- ops with hand-written (possibly wrong) backward
class ScaledMul(Function):
    """a * b with a backward that is off by `factor` for b: d(a*b)/da = b, d(a*b)/db = a (* factor)."""

    @staticmethod
    def forward(ctx, a, b, factor):
        ctx.save_for_backward(a, b)
        ctx.factor = factor
        return a * b

    @staticmethod
    def backward(ctx, g):
        (a, b), (na, nb, _) = ctx.saved_tensors, ctx.needs_input_grad
        return g * b if na else None, g * a * ctx.factor if nb else None, None  # None for `factor`


def scaled_mul(a: Tensor, b: Tensor, factor: float = 1.0) -> Tensor:
    return ScaledMul.apply(a, b, factor)


class TripleWrongAt(Function):
    """3 x, whose gradient is 10% off at the single element `bad`: d(3x)/dx = 3.

    Its backward returns a NumPy array, as an op that is never differentiated twice may."""

    @staticmethod
    def forward(ctx, x, bad):
        ctx.bad = bad
        return x * 3.0

    @staticmethod
    def backward(ctx, g):
        gx = g.numpy() * 3.0
        gx[ctx.bad] *= 1.1
        return gx, None


def triple_wrong_at(x: Tensor, bad: tuple) -> Tensor:
    return TripleWrongAt.apply(x, bad)


def op(forward, backward, name: str) -> type[Function]:
    """A one-off Function from two lambdas: forward(*arrays) -> array, backward(g, *inputs as Tensors) -> grads."""
    class OneOff(Function):
        @staticmethod
        def forward(ctx, *xs):
            ctx.save_for_backward(*xs)
            return forward(*xs)

        @staticmethod
        def backward(ctx, g):
            return backward(g, *ctx.saved_tensors)
    OneOff.name = name
    return OneOff


# ---------------------------------------------------------------- correct ops pass
@pytest.mark.parametrize("projections", MODES)
@pytest.mark.parametrize("fn, shapes", [
    (lambda x, y: x * y + x, [(3, 4), (3, 4)]),
    (lambda x, y: x * y + x, [(3, 4), (4,)]),  # broadcasting
    (lambda x: x.tanh(), [(2, 3)]),
    (lambda x, w: x @ w, [(2, 3, 4), (4, 5)]),  # batched matmul
    (lambda x, w: (x @ w).tanh().sum(), [(3, 4), (4, 2)]),  # scalar output
])
def test_correct_ops_pass(fn, shapes, projections):
    inputs = [leaf(*s, seed=i) for i, s in enumerate(shapes)]
    assert gradcheck(fn, inputs, projections=projections) is True


@pytest.mark.parametrize("projections", MODES)
def test_tuple_outputs_passthrough_args_and_unchecked_inputs(projections):
    x, y, c = leaf(3, 4, seed=1), leaf(3, 4, seed=2), leaf(3, 4, seed=3, requires_grad=False)
    fn = lambda x, axis, y, c: ((x * y).sum(axis=axis), (x * c).tanh())  # noqa: E731
    assert gradcheck(fn, [x, 1, y, c], projections=projections)


@pytest.mark.parametrize("projections", MODES)
def test_output_independent_of_an_input_passes(projections):
    # y requires grad but the output does not use it: its gradient stays None, which counts as zero
    assert gradcheck(lambda x, y: x.tanh(), [leaf(2, 3, seed=1), leaf(4, seed=2)], projections=projections)


def test_jacobians_match_closed_form():
    a = np.random.default_rng(5).standard_normal((3, 4))
    x, y = leaf(4, seed=1), leaf(4, seed=2)
    fn = lambda x, y: (Tensor(a, dtype=np.float64) @ x, x * y)  # noqa: E731
    num, ana = numerical_jacobian(fn, [x, y]), analytical_jacobian(fn, [x, y])
    # d(A x)/dx = A,  d(A x)/dy = 0,  d(x*y)/dx = diag(y),  d(x*y)/dy = diag(x)
    expected = {0: [a, np.diag(y.data)], 1: [np.zeros((3, 4)), np.diag(x.data)]}
    for k in (0, 1):
        for j in (0, 1):
            np.testing.assert_allclose(num[k][j], expected[k][j], rtol=1e-8, atol=1e-9)
            np.testing.assert_allclose(ana[k][j], expected[k][j], rtol=1e-12, atol=0)


# ---------------------------------------------------------------- wrong backwards are caught
@pytest.mark.parametrize("projections", MODES)
def test_backward_off_by_a_tenth_of_a_percent(projections):
    a, b = leaf(2, 3, seed=1), leaf(2, 3, seed=2)
    fn = lambda a, b: scaled_mul(a, b, 1.001)  # noqa: E731
    # 0.1% sits exactly at the default rtol=1e-3, so tighten it; float64 central differences are ~1e-9 accurate
    with pytest.raises(GradcheckError) as info:
        gradcheck(fn, [a, b], rtol=1e-5, atol=1e-8, projections=projections)
    e = info.value
    assert e.input_index == 1 and e.output_index == 0
    assert len(e.element) == 2 and e.output_element == e.element  # elementwise op: diagonal Jacobian
    i = e.element
    assert e.numerical == pytest.approx(a.data[i], rel=1e-7)
    assert e.analytical == pytest.approx(1.001 * a.data[i], rel=1e-12)
    assert e.abs_err == pytest.approx(0.001 * abs(a.data[i]), rel=1e-4)
    assert e.rel_err == pytest.approx(1e-3, rel=1e-4)
    assert "input 1" in str(e) and str(e.element) in str(e) and "rel err" in str(e)
    assert gradcheck(fn, [a, b], rtol=1e-5, atol=1e-8, projections=projections, raise_exception=False) is False
    # a 1% error is caught with the default tolerances
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(lambda a, b: scaled_mul(a, b, 1.01), [a, b], projections=projections)
    assert gradcheck(scaled_mul, [a, b], rtol=1e-5, atol=1e-8, projections=projections)  # the correct one passes


@pytest.mark.parametrize("projections", MODES)
def test_wrong_in_one_element_is_named(projections):
    # a projection sees the error, not where it is: the check falls back to the full check to name the element
    x = leaf(3, 4, 5, seed=4)
    x.name = "x"
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda x: triple_wrong_at(x, (1, 2, 3)), [x], projections=projections)
    e = info.value
    assert (e.input_index, e.element, e.output_element) == (0, (1, 2, 3), (1, 2, 3))
    assert e.numerical == pytest.approx(3.0, rel=1e-8) and e.analytical == pytest.approx(3.3, rel=1e-12)
    assert "input 0 'x'" in str(e) and "(1, 2, 3)" in str(e) and "1 of 3600" in str(e)


def test_projections_are_cheap_on_large_inputs():
    forwards = backwards = 0

    class Identity(Function):
        @staticmethod
        def forward(ctx, y):
            return y.copy()

        @staticmethod
        def backward(ctx, g):
            nonlocal backwards
            backwards += 1
            return g

    def fn(x, w):
        nonlocal forwards
        forwards += 1
        return Identity.apply(x @ w)
    x, w = leaf(40, 50, seed=1), leaf(50, 30, seed=2)
    assert gradcheck(fn, [x, w], projections=True)
    assert forwards <= 2 + 2 * 2 + 1 and backwards == 1  # the full check would take ~2 * 3500 forwards


def test_fast_is_the_old_name_of_projections():
    """gradcheck(fast=True) and gradgradcheck(fast=True) check by projections, as they did before the rename: as
    cheap, and the wrong element still named."""
    calls = []
    x, w = leaf(40, 50, seed=1), leaf(50, 30, seed=2)
    assert gradcheck(lambda x, w: calls.append(1) or x @ w, [x, w], fast=True)
    assert len(calls) <= 2 + 2 * 2 + 1  # projections: a few forwards, not ~2 * 3500
    with pytest.raises(GradcheckError, match=r"\(1, 2, 3\)"):
        gradcheck(lambda x: triple_wrong_at(x, (1, 2, 3)), [leaf(3, 4, 5, seed=4)], fast=True)
    assert gradgradcheck(lambda t: t.tanh(), [leaf(3, seed=1)], fast=True)


@pytest.mark.parametrize("projections", MODES)
def test_gradient_of_wrong_shape(projections):
    # forgets to unbroadcast: returns b's gradient with a's shape (2, 3) instead of (3,)
    a, b = leaf(2, 3, seed=1), leaf(3, seed=2)
    out = op(lambda a, b: a + b, lambda g, a, b: (g, g), "bad_add").apply
    # the engine itself refuses it (as PyTorch does), naming the op, the input and both shapes
    with pytest.raises(GradcheckError, match=r"op 'bad_add' returned a gradient of shape \(2, 3\) for input 1, "
                                             r"whose shape is \(3,\)") as info:
        gradcheck(out, [a, b], projections=projections)
    assert info.value.output_index == 0


@pytest.mark.parametrize("projections", MODES)
def test_backward_that_forgets_an_input(projections):
    a, b = leaf(2, 3, seed=1), leaf(2, 3, seed=2)
    forgetful = op(lambda a, b: a * b, lambda g, a, b: (g * b, None), "forgetful_mul").apply
    with pytest.raises(GradcheckError) as info:
        gradcheck(forgetful, [a, b], projections=projections)
    e = info.value
    assert e.input_index == 1 and e.analytical == 0.0
    assert e.numerical == pytest.approx(a.data[e.element], rel=1e-7)


@pytest.mark.parametrize("projections", MODES)
def test_gradient_for_an_input_the_output_ignores(projections):
    a, b = leaf(2, 3, seed=1), leaf(2, seed=2)
    leaky = op(lambda a, b: a * 2, lambda g, a, b: (g * 2, g[:, 0]), "leaky").apply
    with pytest.raises(GradcheckError) as info:
        gradcheck(leaky, [a, b], projections=projections)
    assert info.value.input_index == 1 and info.value.numerical == 0.0 and info.value.analytical == 1.0


@pytest.mark.parametrize("engine", ["fast", "math-first"])
def test_backward_that_modifies_its_upstream_gradient(engine):
    def backward(g, x):
        g.data *= 2.0  # forbidden: the engine may hand g to several nodes
        return g
    inplace = op(lambda x: x * 2.0, backward, "inplace").apply
    # fast: the engine hands g out read-only; math-first: gradcheck sees its upstream array change
    with contextlib.nullcontext() if engine == "math-first" else tinygrad_lite.fast.enabled():
        with pytest.raises(GradcheckError, match="in place"):
            gradcheck(inplace, [leaf(3, seed=1)])


# ---------------------------------------------------------------- warnings, errors, state
def test_warns_on_float32_only():
    x = leaf(3, seed=1, dtype=np.float32)
    with pytest.warns(UserWarning, match=r"input 0 \(shape \(3,\)\) has dtype float32"):
        assert gradcheck(lambda x: x * x, [x], eps=1e-2, atol=1e-2, rtol=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gradcheck(lambda x: x * x, [leaf(3, seed=1)])


def test_bad_calls():
    x = leaf(3, seed=1)
    with pytest.raises(ValueError, match="no input"):
        gradcheck(lambda x: x * 2.0, [leaf(3, requires_grad=False)])
    with pytest.raises(ValueError, match="not a leaf"):
        gradcheck(lambda x: x * 2.0, [x * 2.0])
    with pytest.raises(ValueError, match="grad_outputs only applies to projections=True"):
        gradcheck(lambda x: x * 2.0, [x], grad_outputs=np.ones(3))
    with pytest.raises(ValueError, match=r"grad_outputs\[0\] has shape \(4,\); output 0 has shape \(3,\)"):
        gradcheck(lambda x: x * 2.0, [x], projections=True, grad_outputs=np.ones(4))
    with pytest.raises(TypeError, match="output 0 is ndarray"):
        gradcheck(lambda x: x.data * 2.0, [x])
    assert gradcheck(lambda x: x * x, [x], projections=True, grad_outputs=np.array([1.0, -2.0, 0.5]))
    assert gradcheck(lambda x: x * x, x)  # a single Tensor for inputs


@pytest.mark.parametrize("projections", MODES)
@pytest.mark.parametrize("correct", [True, False])
def test_restores_data_and_grad_exactly(projections, correct):
    # values whose bits would not survive "x + eps - eps": tiny, huge, -0.0, non-round
    values = np.array([[1e-300, -0.0, 1e10], [0.1, -1 / 3, 7.0]])
    x, y = Tensor(values.copy(), requires_grad=True, dtype=np.float64), leaf(2, 3, seed=2)
    data_x, data_y, grad_x = x.data, y.data.copy(), np.full((2, 3), 5.0)
    x.grad = grad_x  # y.grad stays None
    gradcheck(lambda x, y: scaled_mul(x, y, 1.0 if correct else 1.5), [x, y], projections=projections,
              raise_exception=False)
    assert x.data is data_x and x.data.tobytes() == values.tobytes() and y.data.tobytes() == data_y.tobytes()
    assert x.grad is grad_x and np.array_equal(grad_x, np.full((2, 3), 5.0)) and y.grad is None


@pytest.mark.parametrize("projections", MODES)
def test_restores_data_when_fn_raises_mid_check(projections):
    x = leaf(4, seed=1)
    before, calls = x.data.copy(), 0

    def flaky(x):
        nonlocal calls
        calls += 1
        if calls == 4:  # inside a perturbed forward
            raise RuntimeError("boom")
        return x * x
    with pytest.raises(RuntimeError, match="boom"):
        gradcheck(flaky, [x], projections=projections)
    assert x.data.tobytes() == before.tobytes() and x.grad is None


@pytest.mark.parametrize("projections", MODES)
def test_error_on_second_output(projections):
    x = leaf(2, 2, seed=1)
    fn = lambda x: (x.tanh(), triple_wrong_at(x, (0, 1)))  # noqa: E731
    with pytest.raises(GradcheckError, match="output 1") as info:
        gradcheck(fn, [x], projections=projections)
    assert (info.value.output_index, info.value.element) == (1, (0, 1))


@pytest.mark.parametrize("projections", MODES)
def test_nan_gradient_never_passes(projections):
    x = leaf(2, 3, seed=1)
    nan_grad = op(lambda x: x * 2.0, lambda g, x: g * np.nan, "nan").apply
    with pytest.raises(GradcheckError) as info:
        gradcheck(nan_grad, [x], projections=projections)
    assert np.isnan(info.value.analytical) and info.value.numerical == pytest.approx(2.0)


def test_importing_the_old_module_names_keeps_the_function_and_the_class():
    code = ("import tinygrad_lite.gradcheck, tinygrad_lite.profile\n"
            "from tinygrad_lite import gradcheck, profile\n"
            "assert callable(gradcheck) and isinstance(profile, type), (gradcheck, profile)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
