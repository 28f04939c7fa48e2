"""Data parallelism: one model's batch split over worker processes that share its parameters.

`DataParallel(model, workers=N)` (workers.py) runs the forward and backward pass of each part of a
batch in its own process, on the parameters' shared memory, and adds the parts' gradients: the cores
NumPy's one-core elementwise ops leave idle. It starts processes, so it is imported only by code that
asks for it (`import tinygrad_lite` does not load this package). Each worker runs the engine the parent
runs: the math-first ops, or the fast kernels when `tinygrad_lite.fast` is enabled.
"""
from .workers import DataParallel, WorkerError, cross_entropy_loss

__all__ = ["DataParallel", "WorkerError", "cross_entropy_loss"]
