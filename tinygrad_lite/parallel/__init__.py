"""Data parallelism: the gradient of one batch computed in several processes.

`DataParallel(model, workers=N)` (workers.py) runs the forward and backward pass of each part of a
batch in its own process, on the parameters' shared memory, and adds the parts' gradients: the cores
NumPy's one-core elementwise ops leave idle. Each worker runs the engine the parent runs: the
math-first ops, or the fast kernels when `tinygrad_lite.fast` is enabled.

`GradientAllReduce(comm)` (allreduce.py) averages the gradients of processes that each hold a whole
replica of the model, over MPI (mpi4py): every rank computes the gradient of its own rows, and after
the all-reduce every rank holds their mean and takes the same optimizer step.

This package starts processes, so it is imported only by code that asks for it (`import tinygrad_lite`
does not load it).
"""
from .allreduce import GradientAllReduce
from .workers import DataParallel, WorkerError, cross_entropy_loss

__all__ = ["DataParallel", "WorkerError", "cross_entropy_loss", "GradientAllReduce"]
