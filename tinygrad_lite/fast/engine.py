"""FastGrads: the fast kernel of the backward pass's strategy, `MathGrads`, for passes that build no graph.

In fast mode backprop.py runs it in place of the math-first `MathGrads` (gradients as Tensors, each
op's backward in Tensor ops). It
- keeps gradients as NumPy arrays and runs an op's fast kernel backward when the forward ran one;
- adds gradients that meet at a Tensor in place, whenever no one else can see the array. A gradient
  is a `Slot`: the array and whether it is `owned`. An array a backward returns may be shared (the
  upstream gradient itself, or one array handed to two inputs): only one that no other node has
  seen is owned and may be added into; anything else is copied before it is modified;
- keeps sparse gradients sparse (`RowGrad`: an embedding's rows; `SliceGrad`: x[basic index]) and
  adds them into an existing gradient in place, touching only their part.
"""
from __future__ import annotations

import weakref

import numpy as np

from .. import observe
from ..function import MathGrads
from ..tensor import Tensor
from .registry import kernel


class SparseGrad:
    """A gradient that is zero but for a part of the array (an embedding's rows, a slice).

    `add_to(out)` adds it into a dense gradient in place, touching only that part; `dense()` makes the
    full array when one is needed. `values` holds the nonzero part.
    """
    __slots__ = ("values", "shape", "dtype")

    def add_to(self, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def dense(self) -> np.ndarray:
        return self.add_to(np.zeros(self.shape, self.dtype))


class RowGrad(SparseGrad):
    """dense[ids[i]] += values[i]: the backward of an embedding lookup, (n, C) with few rows touched."""
    __slots__ = ("ids",)

    def __init__(self, ids: np.ndarray, rows: np.ndarray, n: int):
        order = np.argsort(ids, kind="stable")  # coalesce repeated ids: one summed row per distinct id
        s = ids[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if s.size else np.zeros(0, np.intp)
        self.ids = s[starts]
        self.values = np.add.reduceat(rows[order], starts, axis=0) if s.size else rows[:0]
        self.shape, self.dtype = (n, rows.shape[1]), rows.dtype

    def add_to(self, out: np.ndarray) -> np.ndarray:
        out[self.ids] += self.values  # ids are distinct, so fancy-index += is exact
        return out


class SliceGrad(SparseGrad):
    """Zero but for dense[index] = values, a basic index (ints, slices, None, Ellipsis): x[index]'s backward.

    The chunks of a split meet at their source: the first becomes the dense gradient, the others are
    written into their own slices of it, with no full-size zeros or sums per chunk.
    """
    __slots__ = ("index",)

    def __init__(self, index, values: np.ndarray, shape: tuple, dtype: np.dtype):
        self.index, self.values, self.shape, self.dtype = index, values, shape, dtype

    def add_to(self, out: np.ndarray) -> np.ndarray:
        out[self.index] += self.values
        return out

    def dense(self) -> np.ndarray:
        out = np.zeros(self.shape, self.dtype)
        out[self.index] = self.values
        return out


class Slot:
    """A gradient on its way: an array (or a SparseGrad) and whether no one else holds that array."""
    __slots__ = ("value", "owned", "shape")

    def __init__(self, value, owned: bool):
        self.value, self.owned, self.shape = value, owned, value.shape

    def array(self) -> np.ndarray:
        """The gradient as a dense array (a sparse one is made dense, and is then owned)."""
        if isinstance(self.value, SparseGrad):
            self.value, self.owned = self.value.dense(), True
        return self.value


def _root(a: np.ndarray) -> np.ndarray:
    """The array that owns `a`'s memory (`a` itself unless it is a view)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


@kernel(MathGrads)
class FastGrads:
    """One backward pass's gradients as arrays, added in place when owned (see the module docstring)."""

    create_graph = False

    def __init__(self):
        # memory already passed around, never to be modified in place: id -> a weak reference to the array,
        # for an id alone would also match a fresh array that reuses the address of one freed since
        self.handed: dict[int, weakref.ref] = {}

    def _hand(self, a: np.ndarray) -> None:
        self.handed[id(a)] = weakref.ref(a)

    def _was_handed(self, a: np.ndarray) -> bool:
        ref = self.handed.get(id(a))
        return ref is not None and ref() is a

    def start(self, g: Tensor) -> Slot:
        self._hand(_root(g.data))
        return Slot(g.data, False)

    def node(self, ctx, slot: Slot) -> tuple:
        g = slot.array()
        self._hand(_root(g))
        if ctx.impl is not ctx.fn:  # the forward ran a fast kernel: its backward works on arrays
            grads = observe.current.backward(ctx, ctx.impl.backward, g)
        else:  # the math-first backward, on Tensors (no graph is recorded: grad mode is off)
            grads = observe.current.backward(ctx, ctx.fn.backward, _readonly_tensor(g))
        grads = grads if isinstance(grads, (tuple, list)) else (grads,)
        grads = [x.data if isinstance(x, Tensor) else x for x in grads]
        # memory returned to more than one input (e.g. `t = g * s; return t, t`) is owned by neither:
        # adding into it in place for one input would corrupt the other's gradient
        roots = [_root(x) if isinstance(x, np.ndarray) else None for x in grads]
        ids = [id(r) for r in roots]
        slots = []
        for x, root in zip(grads, roots):
            if x is None:
                slots.append(None)
                continue
            owned = root is not None and not self._was_handed(root) and ids.count(id(root)) == 1 and x.flags.writeable
            if root is not None:
                self._hand(root)
            slots.append(Slot(x, owned or isinstance(x, SparseGrad)))
        return slots

    def add(self, total: Slot | None, slot: Slot) -> Slot:
        if total is None:
            return slot
        if isinstance(total.value, SparseGrad):  # make the dense one the accumulator
            total, slot = slot, total
            if isinstance(total.value, SparseGrad):
                total.array()
        if isinstance(slot.value, SparseGrad):
            if not total.owned:
                total.value, total.owned = np.array(total.value), True
            slot.value.add_to(total.value)
            return total
        if total.owned:
            np.add(total.value, slot.value, out=total.value)
            return total
        value = total.value + slot.value  # a NumPy scalar for 0-d operands: never add into it in place
        return Slot(value, isinstance(value, np.ndarray))

    def tensor(self, slot: Slot) -> Tensor:
        return _readonly_tensor(slot.array())

    def from_hook(self, result, t: Tensor) -> Slot:
        # a copy: the engine may add into a leaf's gradient in place, never into an array a hook still holds
        return Slot(np.array(result.data if isinstance(result, Tensor) else result, dtype=t.dtype), True)

    def to_leaf(self, leaf: Tensor, slot: Slot) -> None:
        """leaf.grad += the gradient (also used for a retained non-leaf, whose gradient goes on upstream)."""
        g, owned = slot.value, slot.owned and leaf._ctx is None
        if isinstance(g, SparseGrad):  # only the touched part: dense on first use, else added in place
            if leaf.grad is not None:
                g.add_to(leaf.grad)
                return
            g, owned = g.dense(), True
        if g.dtype != leaf.dtype:
            g, owned = g.astype(leaf.dtype), True
        if leaf.grad is None:
            leaf.grad = g if owned and g.flags.writeable and g.flags.c_contiguous else np.array(g, order="C")
        else:
            np.add(leaf.grad, g, out=leaf.grad)
        if slot.value is g:  # .grad holds this array now: no one may add into it in place any more
            slot.owned = False
            self._hand(_root(g))


def _readonly_tensor(g: np.ndarray) -> Tensor:
    """A Tensor viewing g read-only: the engine may share g with other gradients, so no one may write it."""
    view = np.asarray(g).view()
    view.flags.writeable = False
    return Tensor._wrap(view, None)
