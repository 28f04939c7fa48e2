"""Keep freed memory for reuse: the cheapest speed-up a NumPy training loop can get.

Every step allocates the same large arrays again (activations, logits, gradients). glibc's malloc
serves arrays above its mmap threshold (at most 32 MB) with fresh mmap()s and returns them to the
kernel on free, so each step page-faults and zero-fills hundreds of MB anew: about a quarter of a
GPT-2 124M training step on a 2-core machine. Raising the mmap and trim thresholds makes malloc keep
freed blocks in its heap and hand them out again, as a caching allocator would. Peak memory is
unchanged (the blocks are reused, not added to); the process just does not give them back early.

It changes the whole process, so it is opt-in: call `tinygrad_lite.fast.reuse_freed_memory()` once,
before the training loop (`python -m gpt train` and the benchmarks do). TINYGRAD_LITE_SYSTEM_MALLOC=1
turns the call into a no-op. Off glibc (macOS, musl, Windows) it does nothing.
"""
from __future__ import annotations

import ctypes
import os

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers from glibc's malloc.h
_enabled = False


def reuse_freed_memory() -> bool:
    """Ask glibc's malloc to keep and reuse freed blocks of any size. Returns whether it applied."""
    global _enabled
    if _enabled:
        return True
    if os.environ.get("TINYGRAD_LITE_SYSTEM_MALLOC") or os.name != "posix":
        return False
    import ctypes.util  # here, not at the top: it loads subprocess, which `import tinygrad_lite` should not
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # serve every block from the heap (no per-array mmap) and never trim freed memory back
    _enabled = bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _enabled
