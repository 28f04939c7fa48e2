"""The backward pass: walk the graph from the output in reverse topological order, call each node's
backward closure, and sum the gradients that meet at a tensor, in place whenever that is safe.

Ownership: an array a backward closure returns may be shared (the upstream gradient itself, or one
array handed to two inputs). Only an array that no other node has seen is "owned" and may be added
into in place; anything else is copied before it is modified.
"""
from __future__ import annotations

import numpy as np

from . import _state


class SparseGrad:
    """A gradient that is zero but for a part of the array (an embedding's rows, a slice).

    The engine adds it into a gradient that already exists in place, touching only that part, instead
    of materialising an array of zeros first; `dense()` makes the full array when one is needed.
    `values` holds the nonzero part (anomaly mode checks it).
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


def toposort(root, only_grad: bool = True) -> list:
    """The tensors of root's graph, each after all of its parents (iterative DFS). only_grad: just
    those that need a gradient (the backward pass); else every op, leaf and constant (graph pictures)."""
    # A node is marked seen when it is expanded, not when it is pushed: marking at push time let a
    # node reached first as a direct parent be emitted before another of its consumers (e.g. in
    # a + 2*a the leaf `a` came out before `2*a`, so the 2*a contribution was dropped).
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for p in reversed(node._parents):  # reversed: the first input is expanded first
            if (p.requires_grad or not only_grad) and id(p) not in seen:
                stack.append((p, False))
    return order


def run_backward(root, grad: np.ndarray, retain_graph: bool) -> None:
    """Accumulate d(root)/d(leaf) * grad into .grad of every leaf, in reverse topological order."""
    # grads[id(node)] = [array, owned]: `owned` means no other node sees this array, so
    # later contributions may be added into it in place instead of allocating anew.
    grads: dict[int, list] = {id(root): [grad, False]}
    handed = {id(_root(grad))}  # memory already passed around: never modify it in place
    for node in reversed(toposort(root)):
        entry = grads.pop(id(node), None)
        if entry is None:
            continue
        g = entry[0]
        if isinstance(g, SparseGrad) and (node._hooks or node._retain or node._backward is not None):
            g, entry[1] = g.dense(), True
        if node._hooks:
            g = _state.run_hooks(node, g)
        if node._backward is None:
            if node._freed:
                raise RuntimeError(
                    f"backward through the graph a second time: the buffers of op '{node._op}' were freed "
                    f"by the first backward; pass retain_graph=True to the first backward() to keep them")
            _accumulate_leaf(node, g, entry[1])
            continue
        if node._retain:
            _accumulate_leaf(node, g, False)
        handed.add(id(_root(g)))
        if _state.anomaly:
            parent_grads = _state.run_backward_checked(node, g)
        elif _state.profiler is not None:
            parent_grads = _state.profiler.time_backward(node, g)
        else:
            parent_grads = node._backward(g)
        # memory returned to more than one parent (e.g. `t = g * s; return t, t`) is not owned by
        # either: adding into it in place for one parent would corrupt the other's gradient
        roots = [id(_root(pg)) if isinstance(pg, np.ndarray) else None for pg in parent_grads]
        for p, pg, root in zip(node._parents, parent_grads, roots):
            if pg is None or not p.requires_grad:
                continue
            # owned: a fresh array, or a view of one, that no other node has seen
            owned = root is not None and root not in handed and roots.count(root) == 1 and pg.flags.writeable
            handed.add(root)
            grads[id(p)] = _sum(grads.get(id(p)), pg, owned)
        if not retain_graph:  # release the saved activations as soon as they are used
            node._backward, node._parents, node._freed = None, (), True


def _sum(slot: list | None, g, owned: bool) -> list:
    """Add gradient g (an ndarray or a SparseGrad) to slot = [gradient so far, owned]; returns the new slot.
    An owned array is added into in place; anything else is copied before it is modified."""
    if slot is None:
        return [g, owned]
    acc, acc_owned = slot
    if isinstance(acc, SparseGrad):  # make the dense one the accumulator
        acc, acc_owned, g, owned = g, owned, acc, False
        if isinstance(acc, SparseGrad):
            acc, acc_owned = acc.dense(), True
    if isinstance(g, SparseGrad):
        if not acc_owned:
            acc, acc_owned = np.array(acc), True
        return [g.add_to(acc), True]
    if acc_owned:
        np.add(acc, g, out=acc)
        return slot
    total = acc + g  # a NumPy scalar for 0-d operands: never add into it in place
    return [total, isinstance(total, np.ndarray)]


def _root(a: np.ndarray) -> np.ndarray:
    """The array that owns `a`'s memory (`a` itself unless it is a view)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _accumulate_leaf(leaf, g, owned: bool) -> None:
    if isinstance(g, SparseGrad):  # only the touched part: dense on first use, else added in place
        g, owned = (g.dense(), True) if leaf.grad is None else (g.add_to(leaf.grad), None)
        if owned is None:
            return
    if g.dtype != leaf.data.dtype:
        g = g.astype(leaf.data.dtype)
        owned = True
    if leaf.grad is None:
        leaf.grad = g if owned and g.flags.writeable and g.flags.c_contiguous else np.array(g, order="C")
    else:
        np.add(leaf.grad, g, out=leaf.grad)
