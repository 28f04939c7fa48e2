"""Engine inputs a newcomer tries: each either works as PyTorch does or raises a clear error
(never a crash deep inside NumPy). Values marked "PyTorch" are what torch 2.13 gives."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tinygrad_lite.functional as F
from tinygrad_lite import Tensor, fast


@pytest.fixture(params=["fast", "math-first"])
def mode(request):
    """Every test runs with the math-first ops (the default) and with the fast kernels."""
    if request.param == "fast":
        with fast.enabled():
            yield
    else:
        yield


# ------------------------------------------------------------------ 0-d tensors
ZERO_D = {  # op on a 0-d x -> (value, d value / dx) at x = 1.0, as PyTorch gives
    "gelu tanh": (lambda x: F.gelu(x), 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * 1.044715)), None),
    "gelu exact": (lambda x: F.gelu(x, "none"), 0.5 * (1 + math.erf(1 / math.sqrt(2))),
                   0.5 * (1 + math.erf(1 / math.sqrt(2))) + math.exp(-0.5) / math.sqrt(2 * math.pi)),
    "softmax": (lambda x: F.softmax(x), 1.0, 0.0),
    "log_softmax": (lambda x: F.log_softmax(x), 0.0, 0.0),
    "sum(axis=0)": (lambda x: x.sum(axis=0), 1.0, 1.0),
    "sum(axis=-1)": (lambda x: x.sum(axis=-1), 1.0, 1.0),
    "mean(axis=0)": (lambda x: x.mean(axis=0), 1.0, 1.0),
    "max(axis=0)": (lambda x: x.max(axis=0), 1.0, 1.0),
}


@pytest.mark.parametrize("name", list(ZERO_D))
def test_zero_d_tensors_work_like_pytorch(name, mode):
    fn, value, slope = ZERO_D[name]
    x = Tensor(1.0, requires_grad=True, dtype=np.float64)
    y = fn(x)
    assert y.shape == () and y.dtype == np.float64
    assert y.item() == pytest.approx(value, rel=1e-12)
    y.backward()
    assert x.grad.shape == ()
    if slope is not None:
        assert float(x.grad) == pytest.approx(slope, rel=1e-12, abs=1e-15)


def test_zero_d_axis_out_of_range_is_a_clear_error():
    with pytest.raises(np.exceptions.AxisError, match="axis 1 is out of bounds for a tensor of 0 dimensions"):
        Tensor(1.0).sum(axis=1)


# ------------------------------------------------------------------ construction
@pytest.mark.parametrize("data", ["hello", None, np.array([1, "a"], dtype=object), {"a": 1}, [[1.0, 2.0], [3.0]],
                                  np.array([1 + 2j])], ids=["str", "None", "object-array", "dict", "ragged", "complex"])
def test_non_numeric_data_is_a_type_error_at_construction(data):
    with pytest.raises(TypeError, match="Tensor data must be"):
        Tensor(data)


def test_a_list_of_tensors_is_their_values():
    np.testing.assert_array_equal(Tensor([Tensor(1.0), Tensor(2.0)]).data, [1.0, 2.0])
    np.testing.assert_array_equal(Tensor([Tensor([1.0, 2.0]), Tensor([3.0, 4.0])]).data, [[1, 2], [3, 4]])


def test_bool_is_numpys():
    assert bool(Tensor([0.0])) is False and bool(Tensor(0.0)) is False and bool(Tensor([2.0])) is True
    with pytest.raises(ValueError, match="ambiguous"):
        bool(Tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(Tensor(np.zeros((0,))))  # NumPy 2: an empty array has no truth value either


def test_np_asarray_gives_the_float_array():
    t = Tensor([1.0, 2.0])
    a = np.asarray(t)
    assert a.dtype == np.float32 and a is t.data
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert np.asarray([Tensor([1.0, 2.0]), Tensor([3.0, 4.0])]).dtype == np.float32  # not object


# ------------------------------------------------------------------ one promotion rule
@pytest.mark.parametrize("other_dtype", [np.float64, np.int64, np.int32])
def test_two_tensors_of_different_dtypes_are_refused_one_rule(other_dtype):
    """float32 with float64 and float32 with int64 follow the same rule: no silent promotion, a TypeError."""
    a, b = Tensor([1.0, 2.0], dtype=np.float32), Tensor([3, 4], dtype=other_dtype)
    for op in (lambda: a + b, lambda: b + a, lambda: a * b, lambda: b - a, lambda: a @ b, lambda: Tensor.where([True, False], a, b)):
        with pytest.raises(TypeError, match=r"never promotes silently.*astype"):
            op()


@pytest.mark.parametrize("data", [np.array([3, 4]), np.array([3.0, 4.0]), [3, 4], 3, 2.5, np.float64(2.5)],
                         ids=["int64-array", "float64-array", "int-list", "int", "float", "np.float64"])
def test_plain_data_takes_the_tensors_dtype(data):
    t = Tensor([1.0, 2.0], requires_grad=True)
    out = t * data + data
    assert out.dtype == np.float32
    out.sum().backward()
    assert t.grad.dtype == np.float32


def test_float_data_with_an_integer_tensor_is_refused():
    with pytest.raises(TypeError, match="integer Tensor"):
        Tensor(np.array([1, 2])) * 2.5
    assert (Tensor(np.array([1, 2])) * 3).dtype == np.int64  # integers stay integers


# ------------------------------------------------------------------ edges of ops
def test_softmax_over_an_empty_axis_is_empty_as_pytorch(mode):
    x = Tensor(np.zeros((2, 0)), requires_grad=True)
    for fn in (F.softmax, F.log_softmax):
        y = fn(x)
        assert y.shape == (2, 0)
        y.backward(np.zeros((2, 0), np.float32))
        assert x.grad.shape == (2, 0)


def test_pow_gradient_at_zero_base_is_pytorchs(mode):
    a = Tensor([0.0, 0.0, 2.0, 0.0], requires_grad=True, dtype=np.float64)
    b = Tensor([2.0, 0.0, 3.0, 1.5], requires_grad=True, dtype=np.float64)
    (a ** b).sum().backward()
    np.testing.assert_array_equal(b.grad[[0, 1, 3]], [0.0, 0.0, 0.0])  # d(a^b)/db = a^b ln a -> 0 at a = 0
    assert b.grad[2] == pytest.approx(8 * math.log(2), rel=1e-15)
    np.testing.assert_array_equal(a.grad, [0.0, 0.0, 12.0, 0.0])  # PyTorch: 0 at b = 0 (not 0 * 0^-1 = nan)


@pytest.mark.parametrize("value", [0.1, -3.7, 1e4, 1e-20])
def test_layer_norm_of_a_constant_row_is_exactly_zero(value, mode):
    """The float32 rounding error of the mean must not be amplified by 1/sqrt(eps) into O(1e-3) values."""
    x = Tensor(np.full((3, 768), value, np.float32), requires_grad=True)
    y = F.layer_norm(x, Tensor(np.full(768, 2.0, np.float32)), None)
    assert np.all(y.data == 0.0)
    y.backward(np.random.default_rng(0).standard_normal((3, 768)).astype(np.float32))
    assert np.isfinite(x.grad).all()


# ------------------------------------------------------------------ issue 20, item 17: dtypes
@pytest.mark.parametrize("op", [lambda a, b: a / b, lambda a, b: a / 2, lambda a, b: 2 / b, lambda a, b: a.sqrt(),
                                lambda a, b: a.exp(), lambda a, b: a.log(), lambda a, b: a.tanh(),
                                lambda a, b: a.sigmoid(), lambda a, b: a.mean()],
                         ids=["int/int", "int/2", "2/int", "sqrt", "exp", "log", "tanh", "sigmoid", "mean"])
def test_issue20_17_what_is_a_float_of_integers_has_the_default_float_dtype(op, mode):
    """As PyTorch: torch.tensor([1, 2]) / torch.tensor([2, 2]) is float32 (NumPy's true division gives float64,
    which then met a float32 tensor with a dtype-mismatch error)."""
    a, b = Tensor([1, 2]), Tensor([2, 2])
    out = op(a, b)
    assert out.dtype == np.float32
    (out * Tensor([1.0, 1.0]) if out.ndim else out + Tensor(1.0)).sum()  # combines with float32 tensors


def test_issue20_17_the_int_and_float_mismatch_hint_names_a_float_dtype():
    for a, b in ((Tensor([1, 2]), Tensor([1.0, 2.0])), (Tensor([1.0, 2.0]), Tensor([1, 2]))):
        with pytest.raises(TypeError, match=r"e\.g\. t\.astype\(np\.float32\)"):
            a + b
    with pytest.raises(TypeError, match=r"float data \(float64\) with an integer Tensor \(int64\): cast the Tensor "
                                        r"first, e\.g\. t\.astype\(np\.float32\)"):
        Tensor([1, 2]) * 0.5


def test_issue20_17_float64_data_takes_the_default_dtype_as_documented():
    """Unlike torch.tensor, Tensor(float64 array) is float32 unless told; Tensor's docstring and the README's
    engine section say so."""
    from pathlib import Path

    from tinygrad_lite import get_default_dtype, set_default_dtype
    assert Tensor(np.ones(2, np.float64)).dtype == np.float32
    assert Tensor(np.ones(2, np.float64), dtype=np.float64).dtype == np.float64
    before = get_default_dtype()
    set_default_dtype(np.float64)
    try:
        assert Tensor(np.ones(2, np.float32)).dtype == np.float64
    finally:
        set_default_dtype(before)
    rule = "Tensor(np.ones(2, np.float64)) is float32"
    assert rule in " ".join(Tensor.__doc__.split())
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    engine = readme.split("## The engine: math first, speed beside it", 1)[1].split("\n## ", 1)[0]
    assert rule in " ".join(engine.replace("`", "").split())
