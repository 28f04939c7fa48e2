"""Global engine state: grad mode, default dtype, anomaly mode, and tensor hooks."""
from __future__ import annotations

import functools
import linecache
import os
import sys

import numpy as np

grad_enabled = True
anomaly = False
profiler = None  # the active tinygrad_lite.profile, if any: times every backward
_default_dtype = np.dtype(np.float32)


def get_default_dtype() -> np.dtype:
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Set the float dtype that new float Tensors get (float32 or float64)."""
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"default dtype must be float32 or float64, got {dtype}")
    _default_dtype = dtype


def is_grad_enabled() -> bool:
    return grad_enabled


class _GradMode:
    """Context manager and decorator that sets grad mode and restores the previous one."""
    enabled = True

    def __enter__(self):
        global grad_enabled
        self._prev, grad_enabled = grad_enabled, self.enabled

    def __exit__(self, *exc):
        global grad_enabled
        grad_enabled = self._prev

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """`with no_grad():` or `@no_grad()`: record no graph inside."""
    enabled = False


class enable_grad(_GradMode):
    """Turn graph recording back on inside a no_grad region."""
    enabled = True


# ------------------------------------------------------------------ hooks
class RemovableHandle:
    """Returned by `register_hook` / `register_forward_hook`: `handle.remove()` unregisters the hook.

    Also a context manager: `with t.register_hook(fn): ...` removes the hook on leaving the block.
    """

    def __init__(self, hooks: list, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self) -> None:
        """Unregister this hook (by identity; a second call does nothing)."""
        for i, h in enumerate(self._hooks):
            if h is self._fn:
                del self._hooks[i]
                return

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def run_hooks(node, g: np.ndarray) -> np.ndarray:
    """Call the tensor's gradient hooks in registration order; a hook may return a replacement.

    Each hook sees a read-only Tensor view of the gradient (the engine may share that array with other
    nodes, so writing into it would corrupt their gradients). A replacement is copied: the engine may
    accumulate into a leaf's gradient in place, and must never write into an array the hook still holds.
    """
    from .tensor import Tensor
    for hook in list(node._hooks):  # a copy: a hook may remove itself
        view = np.asarray(g).view()  # asarray: 0-d ops may hand over a NumPy scalar
        view.flags.writeable = False
        result = hook(Tensor(view, dtype=g.dtype))
        if result is not None:
            new = np.array(result.data if isinstance(result, Tensor) else result, dtype=g.dtype)
            if new.shape != g.shape:
                raise ValueError(f"a gradient hook on the output of op '{node._op or 'leaf'}' returned shape "
                                 f"{new.shape}, expected the gradient's shape {g.shape}")
            g = new
            if anomaly:  # name the hook's own source line: that is where the bad value came from
                code = getattr(hook, "__code__", None)
                where = ((code.co_filename, code.co_firstlineno, code.co_name),) if code else node._trace
                check_finite(g, node._op or "leaf", node._parents, "gradient hook", where,
                             "the gradient returned by a hook on its output")
    return g


# ----------------------------------------------------------- anomaly mode
# `anomaly` is read by Tensor._make and by the backward loop: one flag check each, nothing else, when off.
anomaly_forward = True  # with anomaly on: also check forward outputs (not only backward gradients)
_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_inside: dict[str, bool] = {}  # filename -> is it a tinygrad_lite source file (cache)
TRACE_DEPTH = 4  # source lines kept per op: where it was created, and the calls that led there


class AnomalyError(RuntimeError):
    """A NaN or Inf appeared in an op's forward output or backward gradient (under `detect_anomaly()`)."""


class detect_anomaly:
    """`with detect_anomaly():` raise AnomalyError at the first op whose output or gradient is not finite.

    The error names the op, its input shapes and the source line that created it (the first stack frame
    outside tinygrad_lite, then the calls that led to it). Run the forward inside the block too: source
    lines are recorded when ops are created. `forward=False` checks only backward gradients (for code that
    produces infinities on purpose, e.g. `masked_fill(mask, -inf)` before a softmax).
    Costs one flag check per op when off; when on, a stack walk per op and an isfinite pass per array.
    """

    def __init__(self, forward: bool = True):
        self.forward = forward

    def __enter__(self) -> "detect_anomaly":
        global anomaly, anomaly_forward
        self._prev = anomaly, anomaly_forward
        anomaly, anomaly_forward = True, self.forward
        return self

    def __exit__(self, *exc) -> None:
        global anomaly, anomaly_forward
        anomaly, anomaly_forward = self._prev


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


def record_trace(t) -> None:
    """Remember where tensor `t` was created: the user's source line (outside tinygrad_lite) and its callers."""
    t._trace = _user_frames()


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


def check_finite(arr: np.ndarray, op: str, parents, where: str, trace=None, what: str = "its output") -> None:
    """Raise AnomalyError if the float array `arr` holds a NaN or an Inf."""
    if arr.dtype.kind != "f" or (where == "forward" and not anomaly_forward):
        return
    if np.isfinite(arr).all():
        return
    n_nan, n_inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
    kind = " and ".join(k for k, n in (("NaN", n_nan), ("Inf", n_inf)) if n)
    if trace is None and where == "forward":  # raised while the op is being created: the stack is live
        trace = _user_frames()
    shapes = ", ".join(f"{tuple(p.shape)} {p.dtype}" for p in parents) or "none"
    raise AnomalyError(
        f"{kind} in the {where} of op '{op}': {what} (shape {arr.shape}, {arr.dtype}) has "
        f"{n_nan + n_inf} non-finite of {arr.size} entries (input shapes: {shapes})" + format_trace(trace))


def run_backward_checked(node, g: np.ndarray):
    """node._backward(g), raising AnomalyError if a gradient it returns is not finite."""
    grads = node._backward(g)
    for i, pg in enumerate(grads):
        if pg is not None:
            check_finite(getattr(pg, "values", pg), node._op, node._parents, "backward", node._trace,  # SparseGrad
                         f"the gradient for input {i}")
    return grads
