"""Anomaly mode: name the op, and the user's source line, that first made a NaN or an Inf.

    with detect_anomaly():
        loss = model(x)          # run the forward inside too: that is when source lines are recorded
        loss.backward()          # AnomalyError at the first non-finite forward output or gradient

It is an `Observer` (tinygrad_lite.observe): while the block runs it checks every op's forward
output, every gradient an op's backward returns and every gradient a hook returns, and records on
each op's context where it was created (`ctx.trace`). Outside the block the engine runs as if it did
not exist. Blocks nest: the innermost one decides (`detect_anomaly(forward=False)` inside
`detect_anomaly()` turns forward checks off for its block).
"""
from __future__ import annotations

import linecache
import os
import sys

import numpy as np

from .. import observe
from ..tensor import Tensor

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_inside: dict[str, bool] = {}  # filename -> is it a tinygrad_lite source file (cache)
TRACE_DEPTH = 4  # source lines kept per op: where it was created, and the calls that led there


class AnomalyError(RuntimeError):
    """A NaN or Inf appeared in an op's forward output or backward gradient (under `detect_anomaly()`)."""


class detect_anomaly(observe.Forwarding):
    """`with detect_anomaly():` raise AnomalyError at the first op whose output or gradient is not finite.

    The error names the op, its input shapes and the source line that created it (the first stack frame
    outside tinygrad_lite, then the calls that led to it). Run the forward inside the block too: source
    lines are recorded when ops are created. `forward=False` checks only backward gradients (for code that
    produces infinities on purpose, e.g. `masked_fill(mask, -inf)` before a softmax). The ops an op's backward
    runs are not checked one by one: the gradients that backward returns are, named by its op and line.
    Costs nothing when off; when on, a stack walk per op and an isfinite pass per array.
    """

    def __init__(self, forward: bool = True):
        self.check_forward = forward
        self._backward_of = None  # the Context of the op whose backward is running, if one is

    def __enter__(self) -> "detect_anomaly":
        self._watch = observe.watch(self)
        self._watch.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._watch.__exit__(None, None, None)  # restores the observer it replaced, whatever was raised

    def _in_charge(self) -> bool:
        """Is this the innermost anomaly mode in force? Only that one checks; outer ones pass calls on."""
        o = observe.current
        while o is not None and not isinstance(o, detect_anomaly):
            o = o.inner
        return o is self

    # ---------------------------------------------------------------- the three calls it watches
    def forward(self, ctx, impl, arrays):
        out = self.inner.forward(ctx, impl, arrays)
        if not self._in_charge():
            return out
        if self._backward_of is not None:  # an op inside another op's backward: that backward's gradients
            ctx.trace = getattr(self._backward_of, "trace", None)  # are checked, and named by its line
            return out
        ctx.trace = _user_frames()
        if self.check_forward:
            _check(out, ctx, "forward", ctx.trace)
        return out

    def backward(self, ctx, run, g):
        if not self._in_charge():
            return self.inner.backward(ctx, run, g)
        outer, self._backward_of = self._backward_of, ctx
        try:
            grads = self.inner.backward(ctx, run, g)
        finally:
            self._backward_of = outer
        for i, x in enumerate(grads if isinstance(grads, (tuple, list)) else (grads,)):
            if x is not None:
                _check(x, ctx, "backward", getattr(ctx, "trace", None), f"the gradient for input {i}")
        return grads

    def hook(self, tensor, hook, g):
        result = self.inner.hook(tensor, hook, g)
        if result is not None and self._in_charge():  # name the hook's own source line: the bad value's origin
            code = getattr(hook, "__code__", None)
            ctx = tensor._ctx
            where = ((code.co_filename, code.co_firstlineno, code.co_name),) if code else getattr(ctx, "trace", None)
            _check(result, ctx, "gradient hook", where, "the gradient returned by a hook on its output",
                   op=ctx.fn.name if ctx is not None else "leaf")
        return result


def _values(x) -> np.ndarray:
    """The array of a gradient: a Tensor's data, an array, or the nonzero part of a sparse gradient."""
    if isinstance(x, Tensor):
        return x.data
    return np.asarray(getattr(x, "values", x))


def _check(x, ctx, where: str, trace, what: str = "its output", op: str | None = None) -> None:
    """Raise AnomalyError if the float array x holds a NaN or an Inf."""
    arr = _values(x)
    if arr.dtype.kind != "f" or np.isfinite(arr).all():
        return
    n_nan, n_inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
    kind = " and ".join(k for k, n in (("NaN", n_nan), ("Inf", n_inf)) if n)
    inputs = [] if ctx is None or ctx.inputs is None else [t for t in ctx.inputs if t is not None]
    shapes = ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in inputs) or "none"
    raise AnomalyError(
        f"{kind} in the {where} of op '{op or ctx.fn.name}': {what} (shape {arr.shape}, {arr.dtype}) has "
        f"{n_nan + n_inf} non-finite of {arr.size} entries (input shapes: {shapes})" + format_trace(trace))


def _user_frames(limit: int = TRACE_DEPTH) -> tuple:
    """(filename, lineno, function) of the innermost `limit` stack frames outside tinygrad_lite."""
    frames, f = [], sys._getframe(1)
    while f is not None and len(frames) < limit:
        name = f.f_code.co_filename
        inside = _inside.get(name)
        if inside is None:
            inside = _inside[name] = os.path.abspath(name).startswith(_PKG_DIR)
        if not inside:
            frames.append((name, f.f_lineno, f.f_code.co_name))
        f = f.f_back
    return tuple(frames)


def format_trace(trace) -> str:
    """'created at file:line in fn: code' plus 'called from ...' lines, or a note that none was recorded."""
    if not trace:
        return ("\n  (no source line recorded: the op was created outside `with detect_anomaly():`; "
                "run the forward pass inside it too)")
    lines = []
    for i, (filename, lineno, func) in enumerate(trace):
        code = linecache.getline(filename, lineno).strip()
        lines.append(f"\n  {'created at' if i == 0 else '  called from'} {filename}:{lineno} in {func}"
                     + (f": {code}" if code else ""))
    return "".join(lines)
