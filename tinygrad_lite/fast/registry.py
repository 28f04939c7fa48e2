"""The registry of fast kernels: `kernel(op)` registers a kernel for an op (a Function, an optimizer
class, or the backward pass's `MathGrads`) in `state.KERNELS`. Registering changes nothing that runs:
the kernels run only in fast mode (`tinygrad_lite.fast.enable()`), and the engine reads the switch in
one place, `state.implementation`.
"""
from __future__ import annotations

from .. import state

KERNELS = state.KERNELS  # op -> its kernel, every one registered


def kernel(op: type):
    """Class decorator: register the class as the fast kernel of `op` (run in its place in fast mode)."""
    def register(k: type) -> type:
        if op in KERNELS:
            raise ValueError(f"{op.__name__} already has a fast kernel ({KERNELS[op].__name__})")
        k.name, k.op = getattr(op, "name", op.__name__), op
        KERNELS[op] = k
        return k
    return register
