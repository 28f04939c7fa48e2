"""Where does the time go? A per-op profile of forward, backward and optimizer steps.

    with tinygrad_lite.profile() as prof:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    # on exit a table is printed: one row per op, forward and backward counts and milliseconds

Forward: while the profile is active, every Tensor op and every `functional` op is timed (an op
that calls other ops, like `split`, is timed once, as itself). Backward: the engine times each
node's backward closure. `Optimizer.step` calls are timed as `optimizer.step`.
"""
from __future__ import annotations

import functools
import time
from collections import defaultdict

from . import _state
from . import functional as F
from . import optim
from .tensor import Tensor

_TENSOR_OPS = ["__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
               "__rtruediv__", "__pow__", "__rpow__", "__neg__", "__matmul__", "__rmatmul__", "__getitem__",
               "exp", "log", "tanh", "sqrt", "relu", "sigmoid", "abs", "sum", "mean", "max", "var",
               "reshape", "transpose", "swapaxes", "split", "masked_fill", "cat", "stack", "where"]
_FUNCTIONAL_OPS = ["softmax", "log_softmax", "cross_entropy", "gelu", "layer_norm", "embedding", "linear",
                   "dropout", "scaled_dot_product_attention"]


class profile:
    """Context manager that times ops; `table()` formats the result, printed on exit unless quiet."""

    def __init__(self, quiet: bool = False, sort: str = "total"):
        self.quiet, self.sort = quiet, sort
        self.forward = defaultdict(lambda: [0, 0.0])  # op -> [calls, seconds]
        self.backward = defaultdict(lambda: [0, 0.0])
        self._depth = 0
        self._patched: list[tuple[object, str, object]] = []

    # ------------------------------------------------------------ recording
    def _timed(self, name: str, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if self._depth:  # inside another timed op: that op's time includes this one
                return fn(*args, **kwargs)
            self._depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                row = self.forward[name]
                row[0] += 1
                row[1] += time.perf_counter() - start
        return wrapper

    def time_backward(self, node, g):
        """Called by the engine for each node while the profile is active."""
        start = time.perf_counter()
        grads = node._backward(g)
        row = self.backward[node._op]
        row[0] += 1
        row[1] += time.perf_counter() - start
        return grads

    def _patch(self, owner, attr: str, name: str) -> None:
        original = owner.__dict__[attr]
        is_static = isinstance(original, staticmethod)
        fn = original.__func__ if is_static else original
        wrapped = self._timed(name, fn)
        setattr(owner, attr, staticmethod(wrapped) if is_static else wrapped)
        self._patched.append((owner, attr, original))

    def __enter__(self) -> "profile":
        if _state.profiler is not None:
            raise RuntimeError("a tinygrad_lite.profile is already active")
        for attr in _TENSOR_OPS:
            self._patch(Tensor, attr, attr.strip("_").removeprefix("r") if attr.startswith("__r") else attr.strip("_"))
        for attr in _FUNCTIONAL_OPS:
            self._patch(F, attr, attr)
        for cls in (optim.Optimizer, *optim.Optimizer.__subclasses__()):
            if "step" in cls.__dict__:
                self._patch(cls, "step", "optimizer.step")
        _state.profiler = self
        return self

    def __exit__(self, *exc) -> None:
        _state.profiler = None
        for owner, attr, original in reversed(self._patched):
            setattr(owner, attr, original)
        self._patched.clear()
        if not self.quiet and exc[0] is None:
            print(self.table())

    # ------------------------------------------------------------ report
    def rows(self) -> list[tuple[str, int, float, int, float]]:
        """(op, forward calls, forward s, backward calls, backward s), biggest total first."""
        ops = set(self.forward) | set(self.backward)
        rows = [(op, *self.forward.get(op, (0, 0.0)), *self.backward.get(op, (0, 0.0))) for op in ops]
        key = {"total": lambda r: r[2] + r[4], "forward": lambda r: r[2], "backward": lambda r: r[4]}[self.sort]
        return sorted(rows, key=key, reverse=True)

    def table(self) -> str:
        rows = self.rows()
        total = sum(r[2] + r[4] for r in rows) or 1e-12
        lines = [f"{'op':32s} {'fwd calls':>9s} {'fwd ms':>9s} {'bwd calls':>9s} {'bwd ms':>9s} {'share':>6s}"]
        for op, fc, ft, bc, bt in rows:
            lines.append(f"{op:32s} {fc:9d} {ft * 1e3:9.1f} {bc:9d} {bt * 1e3:9.1f} {(ft + bt) / total:6.1%}")
        fwd, bwd = sum(r[2] for r in rows), sum(r[4] for r in rows)
        lines.append(f"{'total':32s} {'':9s} {fwd * 1e3:9.1f} {'':9s} {bwd * 1e3:9.1f}")
        return "\n".join(lines)
