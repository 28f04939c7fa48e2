"""The public way to write an op: `tinygrad_lite.Function`, with PyTorch's autograd.Function semantics."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

import tinygrad_lite
from tinygrad_lite import Function, Tensor, autograd, fast, gradcheck, no_grad
from tinygrad_lite.function import OPS


class Cube(tinygrad_lite.Function):  # the example, verbatim
    @staticmethod
    def forward(ctx, x):            # NumPy arrays in, a NumPy array out
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):           # one gradient per forward input
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * g


def leaf(values, dtype=np.float64) -> Tensor:
    return Tensor(np.asarray(values, dtype), requires_grad=True, dtype=dtype)


def test_cube_forward_backward_and_gradcheck():
    t = leaf([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    y = Cube.apply(t)
    assert isinstance(y, Tensor) and y.requires_grad and not y.is_leaf
    np.testing.assert_array_equal(y.data, t.data ** 3)
    g = np.random.default_rng(0).standard_normal(t.shape)
    y.backward(g)
    np.testing.assert_allclose(t.grad, 3 * t.data ** 2 * g, rtol=1e-15)
    assert gradcheck(Cube.apply, [leaf(np.random.default_rng(1).standard_normal((3, 4)))])
    assert gradcheck(lambda x: (Cube.apply(x) * g).sum(), [leaf(np.random.default_rng(2).standard_normal((2, 3)))])


def test_a_user_function_is_not_in_the_registry_and_composes_with_builtins():
    assert "cube" not in OPS
    x = leaf([1.0, 2.0])
    (Cube.apply(x * 2.0) + x).sum().backward()
    np.testing.assert_allclose(x.grad, 3 * (2 * x.data) ** 2 * 2 + 1)


class ScaleBy(Function):
    """y = a * k + b with a non-Tensor k; records what needs_input_grad said."""
    seen = []

    @staticmethod
    def forward(ctx, a, k, b):
        ctx.k = k
        ScaleBy.seen.append(ctx.needs_input_grad)
        return a * k + b

    @staticmethod
    def backward(ctx, g):
        need_a, need_k, need_b = ctx.needs_input_grad
        assert need_k is False  # k is not a Tensor
        return (g * ctx.k if need_a else None), None, (g if need_b else None)


def test_non_tensor_arguments_needs_input_grad_and_none_gradients():
    ScaleBy.seen.clear()
    a, b = leaf([1.0, 2.0]), Tensor([5.0, 6.0], dtype=np.float64)  # b needs no gradient
    ScaleBy.apply(a, 3.0, b).sum().backward()
    assert ScaleBy.seen == [(True, False, False)]
    np.testing.assert_array_equal(a.grad, [3.0, 3.0])
    assert b.grad is None
    with no_grad():
        out = ScaleBy.apply(a, 3.0, b)
    assert not out.requires_grad and out.is_leaf


def test_saved_tensors_are_the_inputs_and_the_output_themselves():
    seen = {}

    class Exp(Function):
        @staticmethod
        def forward(ctx, x):
            out = np.exp(x)
            ctx.save_for_backward(x, out, out * 2)  # an input, the output, and something else (a constant)
            return out

        @staticmethod
        def backward(ctx, g):
            x, out, twice = ctx.saved_tensors
            seen.update(x=x, out=out, twice=twice)
            return g * out

    x = leaf([0.5, 1.0])
    y = Exp.apply(x)
    y.backward(np.ones(2))
    assert seen["x"] is x and seen["out"] is y and not seen["twice"].requires_grad
    np.testing.assert_allclose(x.grad, np.exp(x.data))


def test_a_backward_with_the_wrong_number_of_gradients_is_a_clear_error():
    class Bad(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return g  # one gradient for two inputs

    with pytest.raises(RuntimeError, match=r"backward of op 'bad' returned 1 gradient\(s\); its forward took 2"):
        Bad.apply(leaf([1.0]), leaf([2.0])).backward(np.ones(1))


def test_apply_needs_a_tensor_and_forward_one_array():
    with pytest.raises(TypeError, match="at least one Tensor"):
        Cube.apply(np.array([1.0]))

    class Two(Function):
        @staticmethod
        def forward(ctx, x):
            return x, x

    with pytest.raises(TypeError, match="one output array"):
        Two.apply(leaf([1.0]))


def test_a_backward_returning_numpy_works_once_and_refuses_a_second_derivative():
    class NumpyCube(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x.numpy() ** 2 * g.numpy()  # NumPy: fine for one backward

    x = leaf([1.0, 2.0])
    NumpyCube.apply(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 12.0])
    (gx,) = autograd.grad(NumpyCube.apply(x).sum(), x, create_graph=True)  # the first derivative still works
    np.testing.assert_array_equal(gx.data, [3.0, 12.0])
    with pytest.raises(RuntimeError, match="op 'numpycube' returned NumPy arrays.*Tensor ops"):
        gx.sum().backward()


def test_a_tensor_op_backward_is_differentiable_twice():
    x = leaf([0.5, -2.0, 3.0])
    (g,) = autograd.grad(Cube.apply(x).sum(), x, create_graph=True)  # 3 x^2
    (h,) = autograd.grad(g.sum(), x)  # 6 x
    np.testing.assert_allclose(h.data, 6 * x.data)


@pytest.mark.parametrize("on", [True, False])
def test_user_functions_run_the_same_with_and_without_fast_mode(on):
    x = leaf([0.5, 1.5])
    with fast.enabled() if on else contextlib.nullcontext():
        Cube.apply(x).sum().backward()
    np.testing.assert_allclose(x.grad, 3 * x.data ** 2)
