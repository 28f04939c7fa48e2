"""The registry of fast kernels and the switch between them and the math-first ops.

`kernel(op)` registers a kernel for an op (a Function, or an optimizer class); `enable(False)` or
`with disabled():` puts every op back on its own math-first implementation.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from .. import function
from .engine import FastGrads

KERNELS: dict[type, type] = {}  # op Function -> its fast kernel
_enabled = True


def kernel(op: type):
    """Class decorator: register the class as the fast kernel of `op` (a Function) and install it."""
    def register(k: type) -> type:
        if op in KERNELS:
            raise ValueError(f"op {op.name!r} already has a fast kernel ({KERNELS[op].__name__})")
        k.name, k.op = op.name, op
        KERNELS[op] = k
        if _enabled:
            op.impl = k
        return k
    return register


def is_enabled() -> bool:
    return _enabled


def enable(on: bool = True) -> None:
    """Turn fast mode on (every registered kernel, and FastGrads for backward passes that build no
    graph) or off (the math-first versions only)."""
    global _enabled
    _enabled = bool(on)
    for op, k in KERNELS.items():
        op.impl = k if on else op
    function.no_graph_grads = FastGrads if on else function.math_no_graph


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """`with fast.disabled():` run the math-first versions only, then restore the previous mode."""
    was = _enabled
    enable(False)
    try:
        yield
    finally:
        enable(was)
