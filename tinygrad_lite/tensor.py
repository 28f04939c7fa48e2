"""Tensor: a NumPy array that remembers how it was made, and the primitive ops, each forward beside backward.

An op is a `Function` (function.py): a forward on NumPy arrays and a backward, written in Tensor ops,
that maps g = dL/d(out) to one gradient per input. A Tensor made by an op keeps the op's Context in
`_ctx`; backprop.py walks those back to the leaves. The fused ops (softmax, layer_norm, attention,
...) are in functional.py; all are declared once in the op registry `function.OPS`.

Dtypes: Tensors never promote. Two Tensors in one op must have the same dtype (float32 + float64,
or float32 + int64, is a TypeError naming both); plain data (Python numbers, lists, NumPy arrays)
takes the Tensor's dtype, as PyTorch does with Python scalars. Integer Tensors never require grad.
What is a float for integers (true division int / int, exp, log, sqrt, tanh, sigmoid, mean) gives the
default float dtype, as in PyTorch: Tensor([1, 2]) / Tensor([2, 2]) is float32.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from . import function
from .function import Context, Function, register
from .shapes import (check_matmul, check_reshape, is_basic_index, normalize_axes, permutation, same_dtype, split_slices,
                     stacked_shape, unbroadcast, unwrap_index)
from .observe import RemovableHandle
from .state import enable_grad, get_default_dtype, is_grad_enabled, no_grad, set_default_dtype  # noqa: F401


def _floats(x):
    """An integer Tensor in the default float dtype; anything else as it is (true division's operand)."""
    return x._float() if isinstance(x, Tensor) else x


# ------------------------------------------------------------------ Tensor
class Tensor:
    """An n-dimensional array with reverse-mode automatic differentiation.

    Tensor(data, requires_grad=False, dtype=None): `data` is a number, a nested list, a NumPy array or a Tensor.
    dtype=None gives float data the default float dtype (float32; set_default_dtype changes it), whatever its
    own: Tensor(np.ones(2, np.float64)) is float32, where PyTorch's torch.tensor keeps float64; pass
    dtype=np.float64 (or set_default_dtype(np.float64)) to keep it. Integer and bool data keep their dtype."""

    __slots__ = ("data", "grad", "requires_grad", "name", "_ctx", "_hooks", "_retain", "__weakref__")
    __array_ufunc__ = None  # make `ndarray * Tensor` call Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        elif isinstance(data, (list, tuple)):
            data = [d.data if isinstance(d, Tensor) else d for d in data]
        try:
            arr = np.asarray(data)
        except ValueError as e:
            raise TypeError(f"Tensor data must be a rectangular array of numbers: {e}") from None
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"Tensor data must be numbers (floats, integers or bools), got "
                            f"{type(data).__name__} with dtype {arr.dtype}")
        if dtype is not None:
            arr = arr.astype(dtype, copy=False)
        elif arr.dtype.kind == "f":
            arr = arr.astype(get_default_dtype(), copy=False)
        if requires_grad and arr.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got dtype {arr.dtype}")
        self.data: np.ndarray = arr
        self.grad = None  # np.ndarray, or a Tensor after backward(create_graph=True)
        self.requires_grad: bool = bool(requires_grad)
        self.name: str | None = None
        self._ctx: Context | None = None
        self._hooks: list | None = None
        self._retain = False

    @staticmethod
    def _wrap(data: np.ndarray, ctx: Context | None) -> "Tensor":
        """The output of an op: a graph node when ctx is given (some input requires grad)."""
        out = Tensor.__new__(Tensor)
        out.data, out.grad, out.requires_grad, out.name = data, None, ctx is not None, None
        out._ctx, out._hooks, out._retain = ctx, None, False
        return out

    # ---------------------------------------------------------------- basics
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    T = property(lambda self: self.transpose())
    is_leaf = property(lambda self: self._ctx is None)

    def numpy(self) -> np.ndarray:
        return self.data

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # np.asarray(t): its array
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    def item(self) -> float:
        if self.data.size != 1:
            raise ValueError(f"item() needs a one-element tensor, got shape {self.shape}")
        return self.data.item()

    def __bool__(self) -> bool:  # as NumPy: one element, or an error naming the ambiguity
        return bool(self.data)

    def detach(self) -> "Tensor":
        return Tensor(self.data, dtype=self.data.dtype)

    def register_hook(self, fn: Callable) -> "RemovableHandle":
        """Call `fn(grad: Tensor)` when this tensor's gradient is computed; a returned value replaces it."""
        if not self.requires_grad:
            raise RuntimeError("register_hook on a tensor that does not require grad")
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(fn)
        return RemovableHandle(self._hooks, fn)

    def retain_grad(self) -> None:
        """Keep `.grad` on this non-leaf tensor after backward (leaves always keep theirs)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad on a tensor that does not require grad")
        self._retain = True

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        op = f", op={self._ctx.fn.name}" if self._ctx is not None else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=8)}, dtype={self.dtype}{grad}{op})"

    @classmethod
    def zeros(cls, *shape, requires_grad=False, dtype=None) -> "Tensor":
        return cls(np.zeros(shape, dtype or get_default_dtype()), requires_grad, dtype=dtype)

    @classmethod
    def ones(cls, *shape, requires_grad=False, dtype=None) -> "Tensor":
        return cls(np.ones(shape, dtype or get_default_dtype()), requires_grad, dtype=dtype)

    @classmethod
    def randn(cls, *shape, requires_grad=False, dtype=None, seed=None) -> "Tensor":
        data = np.random.default_rng(seed).standard_normal(shape)
        return cls(data, requires_grad=requires_grad, dtype=dtype)

    def _float(self) -> "Tensor":
        """This tensor, or for integer data its values in the default float dtype: int / int, sqrt(int), the mean
        of ints are floats, as in PyTorch."""
        return self if self.dtype.kind == "f" else self.astype(get_default_dtype())

    def _lift(self, other) -> "Tensor":
        """The other operand of a binary op as a Tensor, by the dtype rule in this module's docstring."""
        if isinstance(other, Tensor):
            if other.dtype != self.dtype and "f" in (self.dtype.kind, other.dtype.kind):
                floats = [d for d in (self.dtype, other.dtype) if d.kind == "f"]  # an int side becomes the float one
                raise TypeError(f"dtype mismatch: {self.dtype} and {other.dtype}; tinygrad_lite never promotes "
                                f"silently: cast one side explicitly, e.g. t.astype(np.{floats[0]})")
            return other
        arr = np.asarray(other)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"cannot combine a Tensor with {type(other).__name__} (dtype {arr.dtype})")
        if self.dtype.kind != "f" and arr.dtype.kind == "f":
            raise TypeError(f"float data ({arr.dtype}) with an integer Tensor ({self.dtype}): cast the Tensor "
                            f"first, e.g. t.astype(np.{get_default_dtype()})")
        return Tensor(arr, dtype=self.dtype if self.dtype.kind == "f" or arr.dtype.kind != "b" else arr.dtype)

    # ------------------------------------------------------ operators (the ops are below)
    def __add__(self, other): return Add.apply(self, self._lift(other))
    def __radd__(self, other): return Add.apply(self._lift(other), self)
    def __sub__(self, other): return Sub.apply(self, self._lift(other))
    def __rsub__(self, other): return Sub.apply(self._lift(other), self)
    def __mul__(self, other): return Mul.apply(self, self._lift(other))
    def __rmul__(self, other): return Mul.apply(self._lift(other), self)
    def __truediv__(self, other): return Div.apply(self._float(), self._float()._lift(_floats(other)))
    def __rtruediv__(self, other): return Div.apply(self._float()._lift(other), self._float())
    def __pow__(self, other): return Pow.apply(self, self._lift(other))
    def __rpow__(self, other): return Pow.apply(self._lift(other), self)
    def __neg__(self): return Neg.apply(self)
    def __matmul__(self, other): return self._matmul(self, self._lift(other))
    def __rmatmul__(self, other): return self._matmul(self._lift(other), self)

    @staticmethod
    def _matmul(a: "Tensor", b: "Tensor") -> "Tensor":
        check_matmul(a.shape, b.shape)
        return MatMul.apply(a, b)

    def exp(self): return Exp.apply(self._float())
    def log(self): return Log.apply(self._float())
    def tanh(self): return Tanh.apply(self._float())
    def sqrt(self): return Sqrt.apply(self._float())
    def relu(self): return ReLU.apply(self)
    def sigmoid(self): return Sigmoid.apply(self._float())
    def abs(self): return Abs.apply(self)
    def astype(self, dtype): return self if np.dtype(dtype) == self.dtype else Cast.apply(self, np.dtype(dtype))

    def sum(self, axis=None, keepdims: bool = False) -> "Tensor":
        return Sum.apply(self, normalize_axes(axis, self.ndim), keepdims)

    def mean(self, axis=None, keepdims: bool = False) -> "Tensor":
        axes = normalize_axes(axis, self.ndim)
        n = int(np.prod([self.shape[i] for i in axes]))
        return self._float().sum(axes, keepdims) * (1.0 / n if n else np.nan)  # mean = sum / n

    def var(self, axis=None, keepdims: bool = False, ddof: int = 0) -> "Tensor":
        axes = normalize_axes(axis, self.ndim)
        centered = self - self.mean(axes, keepdims=True)
        n = int(np.prod([self.shape[i] for i in axes]))
        return (centered * centered).sum(axes, keepdims) * (1.0 / (n - ddof))  # sum (x - mean)^2 / (n - ddof)

    def max(self, axis=None, keepdims: bool = False) -> "Tensor":
        if self.size == 0:
            raise ValueError(f"max() of an empty tensor of shape {self.shape}")
        return Max.apply(self, normalize_axes(axis, self.ndim), keepdims)

    def reshape(self, *shape) -> "Tensor":
        return Reshape.apply(self, check_reshape(self.shape, shape))

    def transpose(self, *axes) -> "Tensor":
        return Transpose.apply(self, permutation(axes, self.ndim))

    def swapaxes(self, a: int, b: int) -> "Tensor":
        axes = list(range(self.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return self.transpose(axes)

    def broadcast_to(self, shape) -> "Tensor":
        shape = tuple(shape)
        return self if shape == self.shape else BroadcastTo.apply(self, shape)

    def __getitem__(self, index) -> "Tensor":
        return GetItem.apply(self, unwrap_index(index))

    def split(self, size_or_sizes, axis: int = 0) -> list["Tensor"]:
        """PyTorch semantics: an int is the chunk size (last may be smaller); a list gives the sizes."""
        lead = (slice(None),) * (axis % self.ndim)
        return [self[lead + (chunk,)] for chunk in split_slices(size_or_sizes, self.shape[axis], axis)]

    @staticmethod
    def cat(tensors: Sequence["Tensor"], axis: int = 0) -> "Tensor":
        tensors = list(tensors)
        same_dtype("cat", tensors)
        return Cat.apply(axis, *tensors)

    @staticmethod
    def stack(tensors: Sequence["Tensor"], axis: int = 0) -> "Tensor":
        new = stacked_shape([t.shape for t in tensors], axis)  # each gets a new axis of size 1, then cat
        return Tensor.cat([t.reshape(new) for t in tensors], axis)

    def masked_fill(self, mask, value: float) -> "Tensor":
        mask = np.asarray(mask.data if isinstance(mask, Tensor) else mask, dtype=bool)
        if np.broadcast_shapes(mask.shape, self.shape) != self.shape:
            raise ValueError(f"masked_fill: mask of shape {mask.shape} does not broadcast to {self.shape}")
        return Tensor.where(mask, self._lift(value), self)

    @staticmethod
    def where(cond, a, b) -> "Tensor":
        cond = np.asarray(cond.data if isinstance(cond, Tensor) else cond, dtype=bool)
        a = a if isinstance(a, Tensor) else (b._lift(a) if isinstance(b, Tensor) else Tensor(a))
        return Where.apply(cond, a, a._lift(b))

    # ------------------------------------------------ comparisons (no grad)
    def __lt__(self, other): return Tensor(self.data < self._lift(other).data)
    def __le__(self, other): return Tensor(self.data <= self._lift(other).data)
    def __gt__(self, other): return Tensor(self.data > self._lift(other).data)
    def __ge__(self, other): return Tensor(self.data >= self._lift(other).data)

    # ------------------------------------------------------------- backward
    def backward(self, gradient=None, retain_graph: bool | None = None, create_graph: bool = False,
                 grad=None) -> None:
        """Add d(self)/d(leaf) * gradient into `.grad` of every leaf that requires grad (PyTorch's semantics).

        `gradient` may be omitted only for a one-element tensor (`grad=` is an alias). retain_graph
        (default: create_graph) keeps the saved arrays for another backward. create_graph records the
        backward pass, so the gradients can be differentiated again; `.grad` then holds a Tensor."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input had requires_grad=True, or it was made under no_grad)")
        seed = function.seed(self, grad if gradient is None else gradient, "backward")
        function.run_backward([self], [seed], create_graph if retain_graph is None else retain_graph, create_graph)


# ================================================================== the primitive ops
# Each op: forward on NumPy arrays, then backward in Tensor ops: g = dL/d(out) in, one gradient per
# forward argument out (None where ctx.needs_input_grad says no gradient is needed).


@register
class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a + b

    @staticmethod
    def backward(ctx, g):  # d(a+b)/da = d(a+b)/db = 1
        (sa, sb), (na, nb) = ctx.shapes, ctx.needs_input_grad
        return unbroadcast(g, sa) if na else None, unbroadcast(g, sb) if nb else None


@register
class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a - b

    @staticmethod
    def backward(ctx, g):  # d(a-b)/da = 1, d(a-b)/db = -1
        (sa, sb), (na, nb) = ctx.shapes, ctx.needs_input_grad
        return unbroadcast(g, sa) if na else None, -unbroadcast(g, sb) if nb else None


@register
class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):  # d(a*b)/da = b, d(a*b)/db = a
        (a, b), (na, nb) = ctx.saved_tensors, ctx.needs_input_grad
        return unbroadcast(g * b, a.shape) if na else None, unbroadcast(g * a, b.shape) if nb else None


@register
class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        (a, b), (na, nb) = ctx.saved_tensors, ctx.needs_input_grad
        return unbroadcast(g / b, a.shape) if na else None, unbroadcast(-(g * a) / (b * b), b.shape) if nb else None


@register
class Pow(Function):
    @staticmethod
    def forward(ctx, a, b):
        out = np.power(a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):  # d(a^b)/da = b a^(b-1), d(a^b)/db = a^b ln a
        (a, b, out), (na, nb) = ctx.saved_tensors, ctx.needs_input_grad
        a1 = Tensor.where(b.data == 0, 1.0, a)  # b = 0 gives 0 even at a = 0 (not 0 * 0^-1), as PyTorch
        ga = unbroadcast(g * b * a1 ** (b - 1), a.shape) if na else None
        if not nb:
            return ga, None
        ln_a = Tensor.where((a.data == 0) & (b.data >= 0), 1.0, a).log()  # at a = 0, b >= 0 take ln 1:
        return ga, unbroadcast(g * out * ln_a, b.shape)  # a^b ln a -> 0 there, its limit and PyTorch's value


@register
class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):  # d(-a)/da = -1
        return -g


@register
class MatMul(Function):
    name = "matmul"

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        if a.ndim > 2 and b.ndim == 2:  # a stack of rows times one matrix: one 2-D product (NumPy would loop)
            return (a.reshape(-1, a.shape[-1]) @ b).reshape(*a.shape[:-1], b.shape[-1])
        return np.matmul(a, b)

    @staticmethod
    def backward(ctx, g):  # C = A B: dA = G B^T, dB = A^T G, each summed over broadcast batch axes
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        if a.ndim > 2 and b.ndim == 2:  # every leading axis of A is a row: 2-D products, and the sum over
            A, G = a.reshape(-1, a.shape[-1]), g.reshape(-1, b.shape[-1])  # the rows is inside A^T G
            # dB = A^T G in b's own layout: a tied LM head's b is W.T, a transposed view, and (G^T A)^T hands W
            # a contiguous gradient (else adding it to the embedding's would walk W's memory across)
            gb = (A.T @ G if b.data.flags.c_contiguous else (G.T @ A).T) if nb else None
            return (G @ b.T).reshape(a.shape) if na else None, gb
        A = a.reshape(1, -1) if a.ndim == 1 else a  # a vector is a row on the left,
        B = b.reshape(-1, 1) if b.ndim == 1 else b  # a column on the right, as NumPy treats it
        G = g.reshape(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]) + (A.shape[-2], B.shape[-1]))
        return (unbroadcast(G @ B.swapaxes(-1, -2), A.shape).reshape(a.shape) if na else None,
                unbroadcast(A.swapaxes(-1, -2) @ G, B.shape).reshape(b.shape) if nb else None)


@register
class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        out = np.exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):  # d e^x = e^x
        (out,) = ctx.saved_tensors
        return g * out


@register
class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx, g):  # d ln x = 1/x
        (x,) = ctx.saved_tensors
        return g / x


@register
class Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        out = np.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):  # d tanh x = 1 - tanh^2 x
        (out,) = ctx.saved_tensors
        return g * (1 - out * out)


@register
class Sqrt(Function):
    @staticmethod
    def forward(ctx, x):
        out = np.sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):  # d sqrt x = 1 / (2 sqrt x)
        (out,) = ctx.saved_tensors
        return g / (2 * out)


@register
class ReLU(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.positive = x > 0
        return x * ctx.positive

    @staticmethod
    def backward(ctx, g):  # d relu x = 1 where x > 0, else 0
        return g * ctx.positive


@register
class Sigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        out = 0.5 * (1 + np.tanh(0.5 * x))  # 1 / (1 + e^-x), without overflow
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):  # d sigmoid x = sigmoid x (1 - sigmoid x)
        (out,) = ctx.saved_tensors
        return g * out * (1 - out)


@register
class Abs(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.sign = np.sign(x)
        return np.abs(x)

    @staticmethod
    def backward(ctx, g):  # d |x| = sign x
        return g * ctx.sign


@register
class Cast(Function):
    @staticmethod
    def forward(ctx, x, dtype):
        ctx.dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, g):  # the gradient goes back in the input's dtype
        return g.astype(ctx.dtype), None


@register
class Sum(Function):
    @staticmethod
    def forward(ctx, x, axes: tuple, keepdims: bool):
        ctx.shape, ctx.kept = x.shape, tuple(1 if i in axes else n for i, n in enumerate(x.shape))
        return x.sum(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):  # every element contributes once: g spread back over the reduced axes
        return g.reshape(ctx.kept).broadcast_to(ctx.shape), None, None


@register
class Max(Function):
    @staticmethod
    def forward(ctx, x, axes: tuple, keepdims: bool):
        out = x.max(axis=axes, keepdims=True)
        hit = x == out
        ctx.share = hit / hit.sum(axis=axes, keepdims=True, dtype=x.dtype)  # ties share the gradient equally
        ctx.kept = out.shape
        return out if keepdims else out.reshape(np.delete(out.shape, axes))

    @staticmethod
    def backward(ctx, g):  # the gradient goes to the maximum
        return g.reshape(ctx.kept) * ctx.share, None, None


@register
class BroadcastTo(Function):
    name = "broadcast_to"

    @staticmethod
    def forward(ctx, x, shape: tuple):
        ctx.shape = x.shape
        return np.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, g):  # the adjoint of broadcasting sums
        return unbroadcast(g, ctx.shape), None


@register
class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape: tuple):
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None


@register
class Transpose(Function):
    @staticmethod
    def forward(ctx, x, axes: tuple):
        ctx.inverse = tuple(np.argsort(axes))
        return x.transpose(axes)

    @staticmethod
    def backward(ctx, g):  # transpose back
        return g.transpose(ctx.inverse), None


@register
class GetItem(Function):
    name = "getitem"

    @staticmethod
    def forward(ctx, x, index):
        ctx.shape, ctx.index = x.shape, index
        return x[index]

    @staticmethod
    def backward(ctx, g):  # each element's gradient goes back where it came from; repeated indices add up
        return IndexAdd.apply(g, ctx.index, ctx.shape), None


@register
class IndexAdd(Function):
    """zeros(shape) with g added at [index]: the backward of x[index], and its own backward is g[index]."""
    name = "index_add"

    @staticmethod
    def forward(ctx, g, index, shape: tuple):
        ctx.index = index
        out = np.zeros(shape, g.dtype)
        if is_basic_index(index):
            out[index] = g  # ints, slices, None, ...: each element is named at most once
        elif isinstance(index, np.ndarray) and index.ndim == 1 and index.dtype.kind in "iu":
            ids, rows = sum_rows_by_id(index % shape[0], g)  # rows of a table (an embedding's backward)
            out[ids] = rows
        else:
            np.add.at(out, index, g)  # integer arrays may repeat an index: unbuffered, it adds every time
        return out

    @staticmethod
    def backward(ctx, gg):
        return gg[ctx.index], None, None


def sum_rows_by_id(ids: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ids (n,) and, for each, the sum of its rows: ids (N,), rows (N, ...) -> (n,), (n, ...).
    Sorted by id, each run of one id is summed at once (np.add.at adds one row at a time, ~6x slower)."""
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if s.size else np.zeros(0, np.intp)
    return s[starts], (np.add.reduceat(rows[order], starts, axis=0) if s.size else rows[:0])


@register
class Cat(Function):
    @staticmethod
    def forward(ctx, axis: int, *xs):
        out = np.concatenate(xs, axis=axis)
        ctx.axis, ctx.bounds = axis % out.ndim, np.cumsum([0] + [x.shape[axis] for x in xs])
        return out

    @staticmethod
    def backward(ctx, g):  # each input gets its own slice of g
        lead, b = (slice(None),) * ctx.axis, ctx.bounds
        return (None,) + tuple(g[lead + (slice(b[i], b[i + 1]),)] if need else None
                               for i, need in enumerate(ctx.needs_input_grad[1:]))


@register
class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.cond, ctx.shapes = cond, (a.shape, b.shape)
        return np.where(cond, a, b)

    @staticmethod
    def backward(ctx, g):  # the gradient flows to whichever side was chosen
        (sa, sb), (_, na, nb) = ctx.shapes, ctx.needs_input_grad
        return (None, unbroadcast(Tensor.where(ctx.cond, g, 0.0), sa) if na else None,
                unbroadcast(Tensor.where(ctx.cond, 0.0, g), sb) if nb else None)
