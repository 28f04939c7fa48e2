"""Tensor: a NumPy array that remembers how it was made, and the backward pass.

Every op below is written as its forward (a NumPy expression) followed by its
backward: a closure that maps the upstream gradient g = dL/d(out) to one
gradient per input. `Tensor._make` records the node; `Tensor.backward` walks the
graph in reverse topological order and accumulates gradients into the leaves.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from . import _state
from .autograd import RowGrad, SliceGrad, run_backward  # noqa: F401  (RowGrad: for functional ops)
from ._state import is_grad_enabled, no_grad, enable_grad, get_default_dtype, set_default_dtype  # noqa: F401

Backward = Callable[[np.ndarray], tuple]


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum `grad` down to `shape`: the adjoint of NumPy broadcasting.

    Broadcasting prepends axes and stretches size-1 axes, so the gradient sums
    over the prepended axes and over every axis that was stretched from 1.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    out = grad.sum(axis=axes, keepdims=True) if axes else grad
    return out.reshape(shape)


def _normalize_axes(axis, ndim: int) -> tuple:
    """axis=None | int | tuple -> sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise np.exceptions.AxisError(f"axis {a} is out of bounds for a tensor of {ndim} dimensions")
        out.append(int(a) % max(ndim, 1))
    return tuple(sorted(set(out)))


def _expand_reduced(g: np.ndarray, axes: tuple, keepdims: bool, shape: tuple) -> np.ndarray:
    """Re-insert the reduced axes of g (unless keepdims) and broadcast it to `shape`."""
    if not keepdims:
        g = np.expand_dims(g, axes)
    return np.broadcast_to(g, shape)


class Tensor:
    """An n-dimensional array with reverse-mode automatic differentiation."""

    __slots__ = ("data", "grad", "requires_grad", "name", "_parents", "_backward", "_op",
                 "_freed", "_hooks", "_retain", "_trace", "__weakref__")
    __array_ufunc__ = None  # make `ndarray * Tensor` call Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        arr = np.asarray(data)
        if dtype is not None:
            arr = arr.astype(dtype, copy=False)
        elif arr.dtype.kind == "f" or arr.dtype == object:
            arr = arr.astype(get_default_dtype(), copy=False)
        if requires_grad and arr.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got dtype {arr.dtype}")
        self.data: np.ndarray = arr
        self.grad: np.ndarray | None = None
        self.requires_grad: bool = bool(requires_grad)
        self.name: str | None = None
        self._parents: tuple = ()
        self._backward: Backward | None = None
        self._op: str = ""
        self._freed = False
        self._hooks: list | None = None
        self._retain = False
        self._trace = None

    @staticmethod
    def _make(data: np.ndarray, parents: tuple, backward: Backward, op: str) -> "Tensor":
        """Wrap an op's result; record the graph node when some parent needs a gradient."""
        out = Tensor.__new__(Tensor)
        out.data, out.grad, out.name = data, None, None
        out._freed, out._hooks, out._retain, out._trace = False, None, False, None
        if _state.grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad, out._parents, out._backward, out._op = True, parents, backward, op
            if _state.anomaly:
                _state.record_trace(out)
        else:
            out.requires_grad, out._parents, out._backward, out._op = False, (), None, op
        if _state.anomaly:
            _state.check_finite(out.data, op, parents, "forward")
        return out

    # ---------------------------------------------------------------- basics
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    T = property(lambda self: self.transpose())
    is_leaf = property(lambda self: self._backward is None and not self._freed)

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        if self.data.size != 1:
            raise ValueError(f"item() needs a one-element tensor, got shape {self.shape}")
        return self.data.item()

    def detach(self) -> "Tensor":
        return Tensor(self.data, dtype=self.data.dtype)

    def register_hook(self, fn: Callable) -> "_state.RemovableHandle":
        """Call `fn(grad: Tensor)` when this tensor's gradient is computed; a returned value replaces it."""
        if not self.requires_grad:
            raise RuntimeError("register_hook on a tensor that does not require grad")
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(fn)
        return _state.RemovableHandle(self._hooks, fn)

    def retain_grad(self) -> None:
        """Keep `.grad` on this non-leaf tensor after backward (leaves always keep theirs)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad on a tensor that does not require grad")
        self._retain = True

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        op = f", op={self._op}" if self._op else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=8)}, dtype={self.dtype}{grad}{op})"

    @classmethod
    def zeros(cls, *shape, requires_grad=False, dtype=None) -> "Tensor":
        return cls(np.zeros(shape, dtype or get_default_dtype()), requires_grad=requires_grad)

    @classmethod
    def ones(cls, *shape, requires_grad=False, dtype=None) -> "Tensor":
        return cls(np.ones(shape, dtype or get_default_dtype()), requires_grad=requires_grad)

    @classmethod
    def randn(cls, *shape, requires_grad=False, dtype=None, seed=None) -> "Tensor":
        data = np.random.default_rng(seed).standard_normal(shape)
        return cls(data.astype(dtype or get_default_dtype()), requires_grad=requires_grad)

    def _lift(self, other) -> "Tensor":
        """Turn a scalar/array operand into a constant Tensor of a compatible dtype."""
        if isinstance(other, Tensor):
            a, b = self.dtype, other.dtype
            if a != b and a.kind == "f" and b.kind == "f":
                raise TypeError(f"dtype mismatch: {a} and {b}; tinygrad_lite never promotes silently, "
                                f"cast one side explicitly")
            return other
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            other = np.asarray(other, self.dtype if self.dtype.kind == "f" else None)
            return Tensor(other, dtype=other.dtype)
        arr = np.asarray(other)
        if arr.dtype.kind in "fiub" and self.dtype.kind == "f":
            arr = arr.astype(self.dtype, copy=False)
        return Tensor(arr, dtype=arr.dtype)

    # ------------------------------------------------------ elementwise binary
    def __add__(self, other) -> "Tensor":
        a, b = self, self._lift(other)
        def backward(g):  # d(a+b)/da = d(a+b)/db = 1
            return (unbroadcast(g, a.shape) if a.requires_grad else None,
                    unbroadcast(g, b.shape) if b.requires_grad else None)
        return Tensor._make(_binop(np.add, a, b), (a, b), backward, "add")

    def __sub__(self, other) -> "Tensor":
        a, b = self, self._lift(other)
        def backward(g):  # d(a-b)/da = 1, d(a-b)/db = -1
            return (unbroadcast(g, a.shape) if a.requires_grad else None,
                    -unbroadcast(g, b.shape) if b.requires_grad else None)
        return Tensor._make(_binop(np.subtract, a, b), (a, b), backward, "sub")

    def __mul__(self, other) -> "Tensor":
        a, b = self, self._lift(other)
        def backward(g):  # d(a*b)/da = b, d(a*b)/db = a
            return (unbroadcast(g * b.data, a.shape) if a.requires_grad else None,
                    unbroadcast(g * a.data, b.shape) if b.requires_grad else None)
        return Tensor._make(_binop(np.multiply, a, b), (a, b), backward, "mul")

    def __truediv__(self, other) -> "Tensor":
        a, b = self, self._lift(other)
        def backward(g):  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
            ga = unbroadcast(g / b.data, a.shape) if a.requires_grad else None
            gb = unbroadcast(-g * a.data / (b.data * b.data), b.shape) if b.requires_grad else None
            return ga, gb
        return Tensor._make(_binop(np.true_divide, a, b), (a, b), backward, "div")

    def __pow__(self, other) -> "Tensor":
        a, b = self, self._lift(other)
        out = _binop(np.power, a, b)
        def backward(g):  # d(a^b)/da = b a^(b-1), d(a^b)/db = a^b ln a
            ga = unbroadcast(g * b.data * np.power(a.data, b.data - 1), a.shape) if a.requires_grad else None
            gb = unbroadcast(g * out * np.log(a.data), b.shape) if b.requires_grad else None
            return ga, gb
        return Tensor._make(out, (a, b), backward, "pow")

    def __radd__(self, other): return self._lift(other) + self
    def __rsub__(self, other): return self._lift(other) - self
    def __rmul__(self, other): return self._lift(other) * self
    def __rtruediv__(self, other): return self._lift(other) / self
    def __rpow__(self, other): return self._lift(other) ** self

    def __neg__(self) -> "Tensor":
        def backward(g):  # d(-a)/da = -1
            return (-g,)
        return Tensor._make(-self.data, (self,), backward, "neg")

    def __matmul__(self, other) -> "Tensor":
        a, b = self, self._lift(other)
        _check_matmul(a.shape, b.shape)
        out = _matmul(a.data, b.data)
        def backward(g):  # C = A B: dA = G B^T, dB = A^T G (summed over broadcast batch axes)
            A, B = a.data, b.data
            # treat vectors as a column (B) / row (A) matrix, as NumPy does. B first: for 1-D @ 1-D
            # g is 0-d, and expand_dims(g, -2) on it raised AxisError when A was handled first
            if B.ndim == 1:
                B, g = B[:, None], g[..., None]
            if A.ndim == 1:
                A, g = A[None, :], np.expand_dims(g, -2)
            ga = unbroadcast(_matmul(g, np.swapaxes(B, -1, -2)), A.shape).reshape(a.shape) \
                if a.requires_grad else None
            if b.requires_grad:
                if B.ndim == 2 and not B.flags.c_contiguous and B.T.flags.c_contiguous:
                    # B is a transposed view (a tied LM head: x @ W.T): build dB^T = G^T A in W's
                    # own layout so the transpose's backward hands W a contiguous gradient
                    gb = np.matmul(g.reshape(-1, g.shape[-1]).T, A.reshape(-1, A.shape[-1])).T
                elif A.ndim > 2 and B.ndim == 2:  # fold batch axes into one GEMM: (N, k)^T (N, n)
                    gb = np.matmul(A.reshape(-1, A.shape[-1]).T, g.reshape(-1, g.shape[-1]))
                else:
                    gb = unbroadcast(np.matmul(np.swapaxes(A, -1, -2), g), B.shape)
                gb = gb.reshape(b.shape)
            else:
                gb = None
            return ga, gb
        return Tensor._make(out, (a, b), backward, "matmul")

    def __rmatmul__(self, other):
        return self._lift(other) @ self

    # ------------------------------------------------------- elementwise unary
    def exp(self) -> "Tensor":
        out = np.exp(self.data)
        return Tensor._make(out, (self,), lambda g: (g * out,), "exp")  # d e^x = e^x

    def log(self) -> "Tensor":
        x = self.data
        return Tensor._make(np.log(x), (self,), lambda g: (g / x,), "log")  # d ln x = 1/x

    def tanh(self) -> "Tensor":
        out = np.tanh(self.data)
        return Tensor._make(out, (self,), lambda g: (g * (1 - out * out),), "tanh")  # 1 - tanh^2

    def sqrt(self) -> "Tensor":
        out = np.sqrt(self.data)
        return Tensor._make(out, (self,), lambda g: (g / (2 * out),), "sqrt")  # 1 / (2 sqrt x)

    def relu(self) -> "Tensor":
        mask = self.data > 0
        return Tensor._make(self.data * mask, (self,), lambda g: (g * mask,), "relu")  # 1[x > 0]

    def sigmoid(self) -> "Tensor":
        out = 0.5 * (1 + np.tanh(0.5 * self.data))  # stable form of 1 / (1 + e^-x)
        return Tensor._make(out, (self,), lambda g: (g * out * (1 - out),), "sigmoid")

    def abs(self) -> "Tensor":
        sign = np.sign(self.data)
        return Tensor._make(np.abs(self.data), (self,), lambda g: (g * sign,), "abs")

    # ---------------------------------------------------------- reductions
    def sum(self, axis=None, keepdims: bool = False) -> "Tensor":
        axes, shape = _normalize_axes(axis, self.ndim), self.shape
        def backward(g):  # every input element contributes once
            return (_expand_reduced(g, axes, keepdims, shape),)
        return Tensor._make(self.data.sum(axis=axes, keepdims=keepdims), (self,), backward, "sum")

    def mean(self, axis=None, keepdims: bool = False) -> "Tensor":
        axes, shape = _normalize_axes(axis, self.ndim), self.shape
        n = int(np.prod([shape[i] for i in axes]))
        def backward(g):  # d mean / dx_i = 1/n
            return (_expand_reduced(g / n, axes, keepdims, shape),)
        return Tensor._make(self.data.mean(axis=axes, keepdims=keepdims), (self,), backward, "mean")

    def max(self, axis=None, keepdims: bool = False) -> "Tensor":
        axes, x = _normalize_axes(axis, self.ndim), self.data
        if x.size == 0:
            raise ValueError(f"max() of an empty tensor of shape {self.shape}")
        out = x.max(axis=axes, keepdims=True)
        def backward(g):  # the gradient goes to the maximum; ties share it equally
            hit = x == out
            share = hit / hit.sum(axis=axes, keepdims=True)
            return (share.astype(x.dtype, copy=False) * _expand_reduced(g, axes, keepdims, x.shape),)
        return Tensor._make(out if keepdims else out.squeeze(axes), (self,), backward, "max")

    def var(self, axis=None, keepdims: bool = False, ddof: int = 0) -> "Tensor":
        axes, x = _normalize_axes(axis, self.ndim), self.data
        n = int(np.prod([x.shape[i] for i in axes]))
        centered = x - x.mean(axis=axes, keepdims=True)
        out = (centered * centered).sum(axis=axes, keepdims=keepdims) / (n - ddof)
        def backward(g):  # d var / dx_i = 2 (x_i - mean) / (n - ddof)
            return (_expand_reduced(g, axes, keepdims, x.shape) * centered * (2.0 / (n - ddof)),)
        return Tensor._make(out, (self,), backward, "var")

    # ------------------------------------------------------ shape movement
    def reshape(self, *shape) -> "Tensor":
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        old = self.shape
        try:
            out = self.data.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {old} ({self.size} elements) to {shape}") from None
        return Tensor._make(out, (self,), lambda g: (g.reshape(old),), "reshape")

    def transpose(self, *axes) -> "Tensor":
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        axes = axes or tuple(reversed(range(self.ndim)))
        if sorted(a % self.ndim for a in axes) != list(range(self.ndim)):
            raise ValueError(f"transpose axes {axes} are not a permutation of {self.ndim} axes")
        inverse = tuple(np.argsort([a % self.ndim for a in axes]))
        return Tensor._make(self.data.transpose(axes), (self,), lambda g: (g.transpose(inverse),), "transpose")

    def swapaxes(self, a: int, b: int) -> "Tensor":
        return Tensor._make(np.swapaxes(self.data, a, b), (self,),
                            lambda g: (np.swapaxes(g, a, b),), "swapaxes")

    def __getitem__(self, index) -> "Tensor":
        index = _unwrap_index(index)
        shape, dtype = self.shape, self.dtype  # the backward needs no more of x than this
        def backward(g):  # scatter g back; repeated integer indices accumulate
            if not _is_advanced(index):
                return (SliceGrad(index, g, shape, dtype),)  # sparse: only the indexed part
            out = np.zeros(shape, dtype)
            np.add.at(out, index, g)
            return (out,)
        return Tensor._make(self.data[index], (self,), backward, "getitem")

    def split(self, size_or_sizes, axis: int = 0) -> list["Tensor"]:
        """PyTorch semantics: an int is the chunk size (last may be smaller); a list gives the sizes."""
        n = self.shape[axis]
        if isinstance(size_or_sizes, (int, np.integer)):
            if size_or_sizes <= 0:
                raise ValueError(f"split size must be positive, got {size_or_sizes}")
            sizes = [min(size_or_sizes, n - s) for s in range(0, n, size_or_sizes)]
        else:
            sizes = list(size_or_sizes)
            if sum(sizes) != n:
                raise ValueError(f"split sizes {sizes} sum to {sum(sizes)}, but axis {axis} has size {n}")
        starts = np.cumsum([0] + sizes[:-1])
        lead = (slice(None),) * (axis % self.ndim)
        return [self[lead + (slice(int(s), int(s) + k),)] for s, k in zip(starts, sizes)]

    @staticmethod
    def cat(tensors: Sequence["Tensor"], axis: int = 0) -> "Tensor":
        tensors = list(tensors)
        _check_same_float_dtype("cat", tensors)
        data = [t.data for t in tensors]
        try:
            out = np.concatenate(data, axis=axis)
        except ValueError as e:
            raise ValueError(f"cat along axis {axis}: shapes {[d.shape for d in data]} don't fit ({e})") from None
        bounds = np.cumsum([d.shape[axis] for d in data])[:-1]
        def backward(g):  # the gradient of a concatenation is the matching slices of g
            parts = np.split(g, bounds, axis=axis)
            return tuple(p if t.requires_grad else None for p, t in zip(parts, tensors))
        return Tensor._make(out, tuple(tensors), backward, "cat")

    @staticmethod
    def stack(tensors: Sequence["Tensor"], axis: int = 0) -> "Tensor":
        tensors = list(tensors)
        _check_same_float_dtype("stack", tensors)
        try:
            out = np.stack([t.data for t in tensors], axis=axis)
        except ValueError:
            raise ValueError(f"stack needs equal shapes, got {[t.shape for t in tensors]}") from None
        def backward(g):  # unstack g along the new axis
            return tuple(np.take(g, i, axis=axis) if t.requires_grad else None for i, t in enumerate(tensors))
        return Tensor._make(out, tuple(tensors), backward, "stack")

    def masked_fill(self, mask, value: float) -> "Tensor":
        mask = np.asarray(mask.data if isinstance(mask, Tensor) else mask, dtype=bool)
        try:
            out = np.where(mask, np.asarray(value, self.dtype), self.data)
        except ValueError:
            raise ValueError(f"masked_fill: mask of shape {mask.shape} does not broadcast to {self.shape}") from None
        if out.shape != self.shape:
            raise ValueError(f"masked_fill: mask of shape {mask.shape} would change the shape {self.shape}")
        return Tensor._make(out, (self,), lambda g: (np.where(mask, 0, g).astype(g.dtype, copy=False),), "masked_fill")

    @staticmethod
    def where(cond, a, b) -> "Tensor":
        cond = np.asarray(cond.data if isinstance(cond, Tensor) else cond, dtype=bool)
        if not isinstance(a, Tensor):
            a = b._lift(a) if isinstance(b, Tensor) else Tensor(a)
        b = a._lift(b)
        out = np.where(cond, a.data, b.data)
        def backward(g):  # the gradient flows to whichever side was chosen
            zero = np.zeros((), g.dtype)
            return (unbroadcast(np.where(cond, g, zero), a.shape) if a.requires_grad else None,
                    unbroadcast(np.where(cond, zero, g), b.shape) if b.requires_grad else None)
        return Tensor._make(out, (a, b), backward, "where")

    # ------------------------------------------------ comparisons (no grad)
    def __lt__(self, other): return Tensor(self.data < self._lift(other).data)
    def __le__(self, other): return Tensor(self.data <= self._lift(other).data)
    def __gt__(self, other): return Tensor(self.data > self._lift(other).data)
    def __ge__(self, other): return Tensor(self.data >= self._lift(other).data)

    # ------------------------------------------------------------- backward
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) * grad into `.grad` of every leaf that requires grad."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input had requires_grad=True, or it was made under no_grad)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a one-element tensor, but this one "
                                   f"has shape {self.shape}; pass grad= an array of shape {self.shape}")
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(grad): grad has shape {grad.shape}, expected {self.shape}")
        run_backward(self, grad, retain_graph)


# ------------------------------------------------------------------ helpers
def _binop(ufunc, a: Tensor, b: Tensor) -> np.ndarray:
    """ufunc(a, b) for operands already matched by Tensor._lift, naming the shapes if they don't broadcast."""
    try:
        return ufunc(a.data, b.data)
    except ValueError:
        raise ValueError(f"{ufunc.__name__}: shapes {a.shape} and {b.shape} do not broadcast") from None


def _check_same_float_dtype(op: str, tensors: list) -> None:
    # np.concatenate / np.stack promote float32 + float64 to float64 silently; the policy is to refuse
    dtypes = [t.dtype for t in tensors if t.dtype.kind == "f"]
    if len(set(dtypes)) > 1:
        raise TypeError(f"{op}: mixed float dtypes {[str(d) for d in dtypes]}; tinygrad_lite never promotes "
                        f"silently, cast explicitly")


def _matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """np.matmul, but A (..., k) @ B (k, n) runs as one GEMM over all leading axes (NumPy loops)."""
    if B.ndim == 2 and A.ndim > 2:
        return np.matmul(A.reshape(-1, A.shape[-1]), B).reshape(*A.shape[:-1], B.shape[-1])
    return np.matmul(A, B)


def _check_matmul(sa: tuple, sb: tuple) -> None:
    if len(sa) == 0 or len(sb) == 0:
        raise ValueError(f"matmul needs at least 1-D operands, got shapes {sa} @ {sb}")
    k_a, k_b = sa[-1], (sb[0] if len(sb) == 1 else sb[-2])
    if k_a != k_b:
        raise ValueError(f"matmul shape mismatch: {sa} @ {sb}: inner dimensions {k_a} and {k_b} differ")
    try:
        np.broadcast_shapes(sa[:-2], sb[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of {sa} and {sb} do not broadcast") from None


def _unwrap_index(index):
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


def _is_advanced(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, (np.ndarray, list)) for i in parts)
