"""Running the engine on the learner's ops: an observer that swaps them in, and records what they did.

`Plug(ops)` watches the engine through its hook interface (`tinygrad_lite.observe`): every node of an
engine op in `ops` runs the learner's class's forward and backward instead of the engine's. The
engine's classes are never modified, so leaving the `with observe.watch(...)` block restores
everything, even after an exception; each graded task plugs in its own ops alone. With `watch`, each
backward of that op is kept as a `Call` for the diagnosis.

`Probe(ops, op)` is a Plug for the diagnosis of a backward whose own derivatives are wrong: it hands op's
backward the constants among its saved tensors as leaves that require a gradient, so that the graph
a recorded backward builds shows which of them it used.

Run them with the fast kernels off (`fast.disabled()`): with them on, a create_graph backward over a
node a kernel made rebuilds its context with the engine's own forward (`function.math_context`), not
the learner's.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backprop import toposort
from ..function import Context
from ..observe import Forwarding
from ..tensor import Tensor


@dataclass
class Call:
    """One backward of the watched op: its forward's arguments by name (arrays, or the values given),
    its output, the upstream gradient g = dL/d(out), and what backward returned (raw, one per argument)."""
    args: dict[str, Any]
    out: np.ndarray
    g: np.ndarray
    grads: Any


def as_tuple(grads) -> tuple:
    """What a backward returned, as a tuple (an op of one input may return its gradient bare)."""
    return tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)


def arg_names(op: type) -> list[str]:
    """The names of an op's forward arguments, ctx left out: MatMul -> ["a", "b"]."""
    return list(inspect.signature(op.forward).parameters)[1:]


class Plug(Forwarding):
    """Run the learner's class in place of each engine op in `ops` (engine class -> learner class), and
    keep a `Call` for each backward of the engine op `watch`, whoever's code runs it."""

    def __init__(self, ops: dict[type, type], watch: type | None = None):
        self.ops, self.watch = ops, watch
        self.names = arg_names(watch) if watch is not None else []
        self.calls: list[Call] = []
        self.backwards_run: set[type] = set()  # the engine ops whose backward ran
        self._forwards: dict = {}  # ctx -> (arguments, output) of a watched node, until its backward

    def forward(self, ctx, impl, arrays):
        out = self.inner.forward(ctx, self.ops.get(ctx.fn, impl), arrays)
        if ctx.fn is self.watch:
            self._forwards[ctx] = (dict(zip(self.names, arrays)), np.asarray(out))
        return out

    def backward(self, ctx, run, g):
        mine = self.ops.get(ctx.fn)
        self.backwards_run.add(ctx.fn)
        grads = self.inner.backward(ctx, run if mine is None else mine.backward, g)
        if ctx.fn is self.watch and ctx in self._forwards:
            args, out = self._forwards.pop(ctx)
            self.calls.append(Call(args, out, np.array(g.data), grads))
        return grads


class Probe(Plug):
    """Run the learner's class in place of each engine op in `ops`; in the backward of the engine op `op`, the
    constants among ctx.saved_tensors (arrays the forward computed: neither an input nor the output) are leaves
    that require a gradient, and `used` collects the positions of those the returned gradients depend on, of
    `n_saved` saved tensors."""

    def __init__(self, ops: dict[type, type], op: type):
        super().__init__(ops)
        self.op, self.used, self.n_saved = op, set(), 0

    def backward(self, ctx, run, g):
        if ctx.fn is not self.op:
            return super().backward(ctx, run, g)
        probed = ProbedContext.of(ctx)
        grads = super().backward(probed, run, g)
        reached = {id(t) for t in toposort([x for x in as_tuple(grads) if isinstance(x, Tensor)])}
        self.used |= {i for i, leaf in probed.leaves.items() if id(leaf) in reached}
        self.n_saved = len(probed.saved)
        return grads


class ProbedContext(Context):
    """A copy of a backward's ctx whose saved constants come back as leaves that require a gradient, kept in
    `leaves` by their position in saved_tensors."""

    @classmethod
    def of(cls, ctx: Context) -> "ProbedContext":
        probed = cls.__new__(cls)
        probed.__dict__.update(ctx.__dict__)
        probed.leaves = {}
        return probed

    @property
    def saved_tensors(self) -> tuple:
        tensors = list(super().saved_tensors)
        for i in constants(self, tensors):
            tensors[i] = self.leaves.setdefault(i, Tensor(tensors[i].data, requires_grad=True, dtype=tensors[i].dtype))
        return tuple(tensors)


def constants(ctx: Context, saved: tuple) -> list[int]:
    """The positions in `saved` (ctx.saved_tensors) of the constants: what the forward computed and saved, neither
    an input (given back as that input Tensor) nor the output (a Tensor of the graph)."""
    return [i for i, t in enumerate(saved)
            if t is not None and t._ctx is None and not t.requires_grad and all(t is not x for x in ctx.inputs)]
