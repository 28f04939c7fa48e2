"""Running the engine on the learner's ops: an observer that swaps them in, and records what they did.

`Plug(ops)` watches the engine through its hook interface (`tinygrad_lite.observe`): every node of an
engine op in `ops` runs the learner's class's forward and backward instead of the engine's. The
engine's classes are never modified, so leaving the `with observe.watch(...)` block restores
everything, even after an exception; each graded task plugs in its own ops alone. With `watch`, each
backward of that op is kept as a `Call` for the diagnosis.

Run it with the fast kernels off (`fast.disabled()`): with them on, a create_graph backward over a
node a kernel made rebuilds its context with the engine's own forward (`function.math_context`), not
the learner's.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..observe import Forwarding


@dataclass
class Call:
    """One backward of the watched op: its forward's arguments by name (arrays, or the values given),
    its output, the upstream gradient g = dL/d(out), and what backward returned (raw, one per argument)."""
    args: dict[str, Any]
    out: np.ndarray
    g: np.ndarray
    grads: Any


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
