"""Global engine state: grad mode, default dtype, anomaly mode, and tensor hooks."""
from __future__ import annotations

import functools
import traceback

import numpy as np

grad_enabled = True
anomaly = False
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
    def __init__(self, hooks: list, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self) -> None:
        if self._fn in self._hooks:
            self._hooks.remove(self._fn)


def run_hooks(node, g: np.ndarray) -> np.ndarray:
    """Call the tensor's gradient hooks in registration order; a hook may return a replacement."""
    from .tensor import Tensor
    for hook in list(node._hooks):
        result = hook(Tensor(g, dtype=g.dtype))
        if result is not None:
            new = np.asarray(result.data if isinstance(result, Tensor) else result, dtype=g.dtype)
            if new.shape != g.shape:
                raise ValueError(f"a gradient hook returned shape {new.shape}, expected {g.shape}")
            g = new
    return g


# ----------------------------------------------------------- anomaly mode
class AnomalyError(RuntimeError):
    """A NaN or Inf appeared in an op's forward output or backward gradient."""


class detect_anomaly:
    """`with detect_anomaly():` raise at the first op whose output or gradient is not finite."""

    def __enter__(self):
        global anomaly
        self._prev, anomaly = anomaly, True
        return self

    def __exit__(self, *exc):
        global anomaly
        anomaly = self._prev


def record_trace(t) -> None:
    """Remember the user's source line that created tensor `t` (outside tinygrad_lite)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "tinygrad_lite" not in frame.filename.replace("\\", "/").split("/")[-2:][0]:
            t._trace = f"{frame.filename}:{frame.lineno}: {frame.line}"
            return


def _describe(op: str, parents, where: str, trace) -> str:
    shapes = ", ".join(str(p.shape) for p in parents)
    made = f"\n  created at {trace}" if trace else ""
    return f"anomaly in the {where} of op '{op}' (input shapes: {shapes}){made}"


def check_finite(arr: np.ndarray, op: str, parents, where: str, trace=None) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        kind = "NaN" if np.isnan(arr).any() else "Inf"
        raise AnomalyError(f"{kind} produced: " + _describe(op, parents, where, trace))


def run_backward_checked(node, g: np.ndarray):
    grads = node._backward(g)
    for pg in grads:
        if pg is not None:
            check_finite(pg, node._op, node._parents, "backward", node._trace)
    return grads
