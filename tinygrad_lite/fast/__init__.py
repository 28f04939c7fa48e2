"""Speed, beside the math: every kernel here replaces a math-first op and is tested equal to it.

- `kernel(op)` registers a class with the same `forward` signature as `op` and a `backward` on NumPy
  arrays. While fast mode is on (the default) the op's forward runs the kernel, and a backward pass
  that builds no graph runs the kernel's backward; `create_graph=True` always runs the op's own
  math-first backward (the kernel's forward saves what that needs).
- `FastGrads` (engine.py) adds gradients in place when no one else holds the array, and keeps
  sparse gradients (an embedding's rows, a slice) sparse.
- `DataParallel(model, workers=N)` (workers.py) splits each batch by rows over N worker processes that
  share the parameters' memory: the cores NumPy's one-core elementwise ops leave idle.
- Process-wide switches are opt-in calls, never import side effects: `reuse_freed_memory()` (malloc
  tuning), `set_num_threads(n)` (a thread pool for the optimizers), or both: `tune_process()`.

`disabled()` runs a block on the math-first versions alone; the tests compare the two.
"""
from __future__ import annotations

import os

from . import engine, kernels  # noqa: F401  (register the kernels and FastGrads)
from .memory import reuse_freed_memory
from .optim import get_num_threads, set_num_threads  # noqa: F401  (optimizer kernels; opt-in thread pool)
from .registry import KERNELS, disabled, enable, is_enabled, kernel  # noqa: F401
from .workers import DataParallel, WorkerError  # noqa: F401


def tune_process(num_threads: int | None = None) -> None:
    """Both process-wide speed switches at once, for a training loop or a benchmark: malloc keeps freed
    blocks for reuse (`reuse_freed_memory`), and the optimizers run on `num_threads` threads
    (`set_num_threads`; default: one per CPU core). `python -m gpt` calls it for every command."""
    reuse_freed_memory()
    set_num_threads(num_threads or os.cpu_count() or 1)


enable(True)
