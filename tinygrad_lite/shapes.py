"""The shape rules the ops share: broadcasting's adjoint, axis arguments, indices, matmul shapes."""
from __future__ import annotations

import numpy as np


def unbroadcast(g, shape: tuple):
    """Sum g down to `shape`: the adjoint of NumPy broadcasting, which prepends axes and stretches size-1
    axes, so the gradient sums over the prepended axes and over every axis stretched from 1."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape) if n == 1 and g.shape[i + extra] != 1)
    return (g.sum(axes, keepdims=True) if axes else g).reshape(shape)


def normalize_axes(axis, ndim: int) -> tuple:
    """axis=None | int | tuple -> sorted tuple of non-negative axes. A 0-d tensor accepts axis 0 or -1
    (no axis to reduce), as PyTorch does."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    for a in axes:
        if not -max(ndim, 1) <= a < max(ndim, 1):
            raise np.exceptions.AxisError(f"axis {a} is out of bounds for a tensor of {ndim} dimensions")
    return tuple(sorted({int(a) % ndim for a in axes})) if ndim else ()


def same_dtype(op: str, tensors: list) -> None:
    dtypes = [t.dtype for t in tensors]
    if len(set(dtypes)) > 1:
        raise TypeError(f"{op}: mixed dtypes {[str(d) for d in dtypes]}; tinygrad_lite never promotes silently, "
                        f"cast explicitly")


def unwrap_index(index):
    """An index as NumPy takes it: Tensors (of integer ids or bools) become their arrays, lists arrays."""
    if hasattr(index, "_wrap"):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if hasattr(i, "_wrap") else i for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


def is_basic_index(index) -> bool:
    """Does `index` use only ints, slices, None and Ellipsis (NumPy's basic indexing: a view, each element at
    most once), no integer or boolean arrays?"""
    parts = index if isinstance(index, tuple) else (index,)
    return not any(isinstance(i, (np.ndarray, list)) for i in parts)


def check_matmul(sa: tuple, sb: tuple) -> None:
    """Raise ValueError, with both shapes, unless (sa) @ (sb) is a valid matrix product."""
    if len(sa) == 0 or len(sb) == 0:
        raise ValueError(f"matmul needs at least 1-D operands, got shapes {sa} @ {sb}")
    k_a, k_b = sa[-1], (sb[0] if len(sb) == 1 else sb[-2])
    if k_a != k_b:
        raise ValueError(f"matmul shape mismatch: {sa} @ {sb}: inner dimensions {k_a} and {k_b} differ")
    try:
        np.broadcast_shapes(sa[:-2], sb[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of {sa} and {sb} do not broadcast") from None


def check_reshape(shape: tuple, new) -> tuple:
    """`reshape(*new)` or `reshape(new)` of an array of `shape`: the new shape, or a ValueError naming both."""
    new = tuple(new[0]) if len(new) == 1 and isinstance(new[0], (tuple, list)) else tuple(new)
    try:
        np.empty(shape, dtype=np.bool_).reshape(new)  # checks the shape; no data is touched
    except ValueError:
        raise ValueError(f"cannot reshape a tensor of shape {shape} ({int(np.prod(shape))} elements) to {new}") from None
    return new


def permutation(axes: tuple, ndim: int) -> tuple:
    """`transpose(*axes)` or `transpose(axes)`: non-negative axes (none given: reversed), or a ValueError."""
    axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else tuple(axes)
    axes = axes or tuple(reversed(range(ndim)))
    if sorted(a % max(ndim, 1) for a in axes) != list(range(ndim)):
        raise ValueError(f"transpose axes {axes} are not a permutation of {ndim} axes")
    return tuple(a % ndim for a in axes)


def split_slices(size_or_sizes, n: int, axis: int) -> list[slice]:
    """The slices of an axis of length n that `split` makes: an int is the chunk size (the last may be
    smaller), a list gives the sizes (PyTorch's semantics)."""
    if isinstance(size_or_sizes, (int, np.integer)):
        if size_or_sizes <= 0:
            raise ValueError(f"split size must be positive, got {size_or_sizes}")
        sizes = [min(size_or_sizes, n - s) for s in range(0, n, size_or_sizes)]
    else:
        sizes = list(size_or_sizes)
        if sum(sizes) != n:
            raise ValueError(f"split sizes {sizes} sum to {sum(sizes)}, but axis {axis} has size {n}")
    starts = np.cumsum([0] + sizes[:-1])
    return [slice(int(s), int(s) + k) for s, k in zip(starts, sizes)]


def stacked_shape(shapes: list, axis: int) -> list:
    """The shape each of the equal `shapes` takes in `stack`: a new axis of size 1 at `axis`."""
    if len(set(shapes)) != 1:
        raise ValueError(f"stack needs equal shapes, got {list(shapes)}")
    ndim = len(shapes[0]) + 1
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(f"stack axis {axis} is out of bounds for {ndim} dimensions")
    new = list(shapes[0])
    new.insert(axis % ndim, 1)
    return new
