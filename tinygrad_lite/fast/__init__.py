"""Speed, beside the math, off until asked for: `tinygrad_lite.fast.enable()`.

By default every op runs the forward and backward written in its class (tensor.py, functional.py)
and the optimizers their `update` (optim.py): what a student reads is what runs. `enable()` switches
the whole engine to the kernels registered here, each tested equal to the op it replaces:

- kernels.py: `kernel(op)` classes with the op's forward signature and a backward on NumPy arrays
  (one GEMM over all leading axes, in-place GELU and layer norm, an attention softmax without the row
  max, row sums as matrix-vector products, sparse gradients for embeddings and slices). They run in
  an op's place in fast mode; a backward pass with `create_graph=True` runs the ops' own backward;
- engine.py: `FastGrads`, the backward pass's kernel: gradients added in place when no one else holds
  the array, sparse gradients kept sparse;
- optim.py: the optimizers' updates and clipping, fused, chunked, optionally on threads;
- memory.py: `reuse_freed_memory()`, glibc malloc tuning.

`enable()` also makes the process settings the kernels are measured with (malloc reuse, optimizer
threads); `disable()`, `is_enabled()`, `with enabled():`, `with disabled():`.
"""
from __future__ import annotations

import contextlib
import os

from .. import state
from . import engine, kernels  # noqa: F401  (register the kernels and FastGrads; this changes nothing that runs)
from .memory import reuse_freed_memory
from .optim import default_num_threads, get_num_threads, set_num_threads  # noqa: F401
from .registry import KERNELS, kernel  # noqa: F401


def is_enabled() -> bool:
    """Is fast mode on (the kernels run in place of the ops they replace)?"""
    return state.is_fast_enabled()


def enable(on: bool = True) -> None:
    """Fast mode on, for the whole process: every registered kernel runs in place of its op (its forward,
    and its backward in a backward pass that builds no graph), the backward pass adds gradients in place,
    and the optimizers run their kernels. Also makes the process settings the kernels are measured with:
    glibc's malloc keeps freed blocks for reuse, and the optimizers run on one thread per core (unless
    `set_num_threads` chose). `enable(False)` is `disable()`."""
    if on:
        _process_settings()
    state.set_fast_enabled(on)


def disable() -> None:
    """Fast mode off: every op runs the forward and backward written in its class (the default)."""
    state.set_fast_enabled(False)


def enabled() -> contextlib.AbstractContextManager:
    """`with fast.enabled():` fast mode inside the block, then the previous mode again."""
    _process_settings()
    return state.fast_mode(True)


def disabled() -> contextlib.AbstractContextManager:
    """`with fast.disabled():` the math-first ops inside the block, then the previous mode again."""
    return state.fast_mode(False)


def _process_settings() -> None:
    """What the kernels are measured with: malloc keeps freed blocks, the optimizers run on one thread per core."""
    reuse_freed_memory()
    default_num_threads(os.cpu_count() or 1)


def tune_process(num_threads: int | None = None) -> None:
    """The process settings alone, without fast mode: malloc keeps freed blocks for reuse, and the optimizers'
    kernels run on `num_threads` threads (default: one per CPU core). `enable()` makes them itself."""
    reuse_freed_memory()
    set_num_threads(num_threads or os.cpu_count() or 1)


def __getattr__(name: str):
    """`tinygrad_lite.fast.DataParallel` moved to `tinygrad_lite.parallel` (it starts processes, and fast/
    holds kernels only); the old name still imports, loading it on first use."""
    if name in ("DataParallel", "WorkerError"):
        from .. import parallel
        return getattr(parallel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
