"""The engine's settings: whether ops record a graph (grad mode, per thread), the default float dtype, and
fast mode: whether registered fast kernels replace the ops (off unless `tinygrad_lite.fast.enable()`)."""
from __future__ import annotations

import contextlib
import functools
import threading
from typing import Iterator

import numpy as np


class _Local(threading.local):
    """Grad mode is per thread, as in PyTorch: a backward pass in one thread (which turns recording off)
    or a `no_grad` block there leaves the forward pass another thread runs meanwhile unchanged."""
    grad_enabled = True  # read by Function.apply: record a graph node only when this is on


local = _Local()
_default_dtype = np.dtype(np.float32)

KERNELS: dict[type, type] = {}  # op -> its fast kernel (tinygrad_lite.fast registers them; they run in fast mode)
_fast = False  # fast mode, process-wide: off, so every op runs the forward and backward written in its class


def implementation(op: type) -> type:
    """What runs for `op` (a Function, an optimizer class, the backward pass's gradient strategy): its
    registered fast kernel while fast mode is on, else `op` itself. The one place the switch is read."""
    return KERNELS.get(op, op) if _fast else op


def is_fast_enabled() -> bool:
    return _fast


def set_fast_enabled(on: bool) -> None:
    """Fast mode on or off (`tinygrad_lite.fast.enable()` / `disable()` call this)."""
    global _fast
    _fast = bool(on)


@contextlib.contextmanager
def fast_mode(on: bool) -> Iterator[None]:
    """Fast mode on or off inside a `with` block, then the previous mode again (`fast.enabled()` / `disabled()`)."""
    was = _fast
    set_fast_enabled(on)
    try:
        yield
    finally:
        set_fast_enabled(was)


def get_default_dtype() -> np.dtype:
    """The float dtype that new float Tensors get (float32 unless `set_default_dtype` changed it)."""
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Set the float dtype that new float Tensors get (float32 or float64)."""
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"default dtype must be float32 or float64, got {dtype}")
    _default_dtype = dtype


def is_grad_enabled() -> bool:
    return local.grad_enabled


class _GradMode:
    """Context manager and decorator that sets grad mode and restores the previous one."""
    enabled = True

    def __enter__(self):
        self._prev, local.grad_enabled = local.grad_enabled, self.enabled

    def __exit__(self, *exc):
        local.grad_enabled = self._prev

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


class set_grad_enabled(_GradMode):
    """`with set_grad_enabled(flag):` grad mode on or off, as `flag` says."""

    def __init__(self, mode: bool = True):
        self.enabled = bool(mode)

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(self.enabled):
                return fn(*args, **kwargs)
        return wrapper
