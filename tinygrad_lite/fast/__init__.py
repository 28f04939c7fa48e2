"""Speed, beside the math: every kernel here replaces a math-first op and is tested equal to it.

- `kernel(op)` registers a class with the same `forward` signature as `op` and a `backward` on NumPy
  arrays. While fast mode is on (the default) the op's forward runs the kernel, and a backward pass
  that builds no graph runs the kernel's backward; `create_graph=True` always runs the op's own
  math-first backward (the kernel's forward saves what that needs).
- `FastGrads` (engine.py) adds gradients in place when no one else holds the array, and keeps
  sparse gradients (an embedding's rows, a slice) sparse.
- Process-wide switches are opt-in calls, never import side effects: `reuse_freed_memory()` (malloc
  tuning), `set_num_threads(n)` (a thread pool for the optimizers), or both: `tune_process()`.

`disabled()` runs a block on the math-first versions alone; the tests compare the two.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from .. import function

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
    from .engine import FastGrads
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


def tune_process(num_threads: int | None = None) -> None:
    """Both process-wide speed switches at once, for a training loop or a benchmark: malloc keeps freed
    blocks for reuse (`reuse_freed_memory`), and the optimizers run on `num_threads` threads
    (`set_num_threads`; default: one per CPU core). `python -m gpt` calls it for every command."""
    reuse_freed_memory()
    set_num_threads(num_threads or os.cpu_count() or 1)


from . import engine, kernels  # noqa: E402,F401  (register the kernels and FastGrads)
from .memory import reuse_freed_memory  # noqa: E402
from .optim import get_num_threads, set_num_threads  # noqa: E402,F401  (optimizer kernels; opt-in thread pool)

enable(True)
