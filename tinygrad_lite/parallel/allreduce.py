"""MPI gradient averaging: every parameter's .grad replaced by its mean over the ranks of a communicator.

    average = GradientAllReduce(comm)   # comm: an mpi4py communicator, e.g. MPI.COMM_WORLD
    loss.backward()                     # each rank: the gradient of its own rows
    average(params)                     # each rank: the mean of all ranks' gradients, in .grad

Calling MPI once per parameter would pay its latency a hundred times a step, so the gradients are
gathered into flat contiguous buffers of about BUCKET_BYTES (consecutive parameters of one dtype),
each buffer is summed over the ranks in place (one Allreduce), scaled by 1/N, and copied back. The
buffers are kept for the next step. Any Tensors with a `.grad` work: nothing here knows the model.
mpi4py is imported when a communicator is used, never by `import tinygrad_lite`.
"""
from __future__ import annotations

import time
from typing import Iterable

import numpy as np

__all__ = ["GradientAllReduce", "BUCKET_BYTES"]

BUCKET_BYTES = 32 << 20  # gradients are all-reduced in flat buffers of about this size


class GradientAllReduce:
    """``average(params)``: each parameter's .grad := its mean over the ranks of `comm` (in place). Counts the
    time it took (`seconds`) and the gradient bytes it averaged (`nbytes`), for the benchmarks."""

    def __init__(self, comm) -> None:
        self.comm = comm
        self.seconds, self.nbytes = 0.0, 0
        self._buffers: dict[str, np.ndarray] = {}  # dtype -> a flat buffer, reused

    def __call__(self, params: Iterable) -> None:
        from mpi4py import MPI

        start = time.perf_counter()
        params = [p for p in params if p.grad is not None]
        size = self.comm.Get_size()
        for bucket in _buckets(params):
            buf = self._buffer(sum(p.grad.size for p in bucket), bucket[0].grad.dtype)
            _gather(bucket, buf)
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)  # the sum over the ranks
            buf *= 1.0 / size  # ... their mean
            _scatter(buf, bucket)
        self.seconds += time.perf_counter() - start
        self.nbytes += sum(p.grad.nbytes for p in params)

    def _buffer(self, n: int, dtype) -> np.ndarray:
        key = np.dtype(dtype).str
        buf = self._buffers.get(key)
        if buf is None or buf.size < n:
            buf = self._buffers[key] = np.empty(n, dtype)
        return buf[:n]


def _buckets(params: list) -> list[list]:
    """Consecutive parameters of one dtype, about BUCKET_BYTES each."""
    out, cur, size = [], [], 0
    for p in params:
        if cur and (size + p.grad.nbytes > BUCKET_BYTES or p.grad.dtype != cur[0].grad.dtype):
            out.append(cur)
            cur, size = [], 0
        cur.append(p)
        size += p.grad.nbytes
    if cur:
        out.append(cur)
    return out


def _gather(bucket: list, buf: np.ndarray) -> None:
    """The bucket's gradients, one after the other, into the flat buffer."""
    pos = 0
    for p in bucket:
        buf[pos:pos + p.grad.size] = p.grad.reshape(-1)
        pos += p.grad.size


def _scatter(buf: np.ndarray, bucket: list) -> None:
    """The flat buffer back into the bucket's gradients, in place."""
    pos = 0
    for p in bucket:
        p.grad.reshape(-1)[...] = buf[pos:pos + p.grad.size]
        pos += p.grad.size
