"""Data parallelism over MPI: the same run on one process or many.

    mpiexec -n 4 python -m gpt train ...        # 4 processes (ranks), one model each

Every rank holds the whole model and the same optimizer state. Each step the global batch (N ranks x
B rows, times K micro-batches with --grad-accum K) is drawn once from the run's seed, on every rank
alike; rank r computes the gradient of its own rows, and the gradients are averaged over the ranks
with an MPI all-reduce, so every rank takes the same optimizer step. The mean of per-rank means
equals the mean over the global batch because every shard has the same number of tokens: N ranks
with batch B take the steps of one process with batch N*B. Dropout masks are drawn for the global
batch and sliced (`ShardedRandom`), so that holds with dropout too.

`World` is the one place MPI is used. Without mpi4py, or outside mpiexec, it is a world of one rank
whose collectives do nothing, and training runs as it always did.
"""
from __future__ import annotations

import os
import re
import sys
import time
from contextlib import contextmanager
from typing import Iterable

import numpy as np

from .errors import RunFailed, UsageError

__all__ = ["World", "ShardedRandom", "shard_dropout", "mpi_rank", "abort_world", "keep_global_batch",
           "global_batch_note"]

BUCKET_BYTES = 32 << 20  # gradients are all-reduced in flat buffers of about this size


class World:
    """The ranks of this run: `rank` of `size`, and the collectives training needs."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self._buffers: dict = {}
        self.allreduce_seconds, self.allreduce_bytes = 0.0, 0  # gradient all-reduces so far

    @classmethod
    def from_environment(cls) -> "World":
        """MPI's world when launched by mpiexec with more than one rank and mpi4py is installed, else one rank."""
        if not any(k in os.environ for k in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")):
            return cls()  # not under mpiexec: do not even load MPI
        try:
            from mpi4py import MPI
        except ImportError:
            raise RunFailed('launched under mpiexec, but mpi4py is not installed: pip install -e ".[mpi]"') from None
        comm = MPI.COMM_WORLD
        return cls(comm if comm.Get_size() > 1 else None)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, metrics and logs."""
        return self.rank == 0

    def on_main(self, fn):
        """fn() on rank 0, and its result, or the UsageError/RunFailed it raised, on every rank."""
        if self.comm is None:
            return fn()
        result = error = None
        if self.is_main:
            try:
                result = fn()
            except (UsageError, RunFailed) as e:
                error = e
        with self._mpi_errors():
            result, error = self.comm.bcast((result, error), root=0)
        if error is not None:
            raise self.alike(error)
        return result

    def together(self, fn):
        """fn() on every rank; when it fails (UsageError, RunFailed) on any, every rank raises the first failing
        rank's error, which rank 0 prints (naming that rank if it is another), and none goes on alone."""
        if self.comm is None:
            return fn()
        result = error = None
        try:
            result = fn()
        except (UsageError, RunFailed) as e:
            error = e
        with self._mpi_errors():
            errors = self.comm.allgather(error)
        failed = [(rank, e) for rank, e in enumerate(errors) if e is not None]
        if not failed:
            return result
        rank, first = failed[0]
        if rank != 0:
            first = type(first)(f"rank {rank} of {self.size}: {first}")
        raise self.alike(first)

    def alike(self, error: Exception) -> Exception:
        """Mark `error` as raised by every rank at the same point (rank 0's broadcast result, the same mean loss):
        rank 0 alone prints it, and no rank needs to end the others (gpt.cli does that for an error of one rank)."""
        error.collective = True
        error.quiet = not self.is_main
        return error

    @contextmanager
    def _mpi_errors(self):
        """An MPI error in a collective (another rank died, the network failed) as one RunFailed naming the rank."""
        from mpi4py import MPI
        try:
            yield
        except MPI.Exception as e:
            lines = str(e).strip().splitlines() or [type(e).__name__]
            others = sorted({int(r) for r in re.findall(r"\brank (\d+)", str(e)) if int(r) != self.rank})
            who = (f"rank {', '.join(map(str, others))} of {self.size} died or stopped answering" if others
                   else "another rank died or stopped answering")
            raise RunFailed(f"rank {self.rank} of {self.size}: {who} (MPI: {lines[0][:200]}); the run cannot go on "
                            f"without it: resume it with --resume") from None

    # ------------------------------------------------------------------ the collectives
    def mean(self, value: float) -> float:
        """The mean of a number over the ranks (a training loss: the mean of per-rank means)."""
        if self.comm is None:
            return value
        with self._mpi_errors():
            return self.comm.allreduce(float(value)) / self.size

    def max(self, value: int) -> int:
        """The largest of an integer over the ranks."""
        if self.comm is None:
            return value
        from mpi4py import MPI
        with self._mpi_errors():
            return self.comm.allreduce(int(value), op=MPI.MAX)

    def average_gradients(self, params: Iterable) -> None:
        """Replace every parameter's .grad by its mean over the ranks: flat contiguous buckets of about
        BUCKET_BYTES, each all-reduced in place (one MPI call per bucket, not per parameter)."""
        if self.comm is None:
            return
        from mpi4py import MPI
        start = time.perf_counter()
        params = [p for p in params if p.grad is not None]
        for bucket in _buckets(params):
            n = sum(p.grad.size for p in bucket)
            buf = self._buffer(n, bucket[0].grad.dtype)
            pos = 0
            for p in bucket:  # gather into one flat buffer
                buf[pos:pos + p.grad.size] = p.grad.reshape(-1)
                pos += p.grad.size
            with self._mpi_errors():
                self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            buf *= 1.0 / self.size
            pos = 0
            for p in bucket:  # and back, in place
                p.grad.reshape(-1)[...] = buf[pos:pos + p.grad.size]
                pos += p.grad.size
        self.allreduce_seconds += time.perf_counter() - start
        self.allreduce_bytes += sum(p.grad.nbytes for p in params)

    def check_replicas(self, params: Iterable) -> None:
        """Stop with RunFailed unless every rank holds the same parameters: a cheap checksum (a float64
        sum of each parameter, and of its entries times their positions) compared across the ranks."""
        if self.comm is None:
            return
        sums = np.array([[float(p.data.sum(dtype=np.float64)),
                          float(np.dot(p.data.reshape(-1).astype(np.float64), np.arange(p.data.size) % 7919))]
                         for p in params])
        with self._mpi_errors():
            everyone = self.comm.allgather(sums)
        for r, theirs in enumerate(everyone):
            if not np.array_equal(theirs, everyone[0]):
                raise self.alike(RunFailed(f"replicas drifted apart: rank {r}'s parameters differ from rank 0's "
                                f"(a non-deterministic step, or ranks running different code)"))

    def _buffer(self, n: int, dtype) -> np.ndarray:
        key = np.dtype(dtype).str
        buf = self._buffers.get(key)
        if buf is None or buf.size < n:
            buf = self._buffers[key] = np.empty(n, dtype)
        return buf[:n]


def mpi_rank() -> tuple[int, int] | None:
    """(rank, size) when this process is one of several MPI ranks (mpi4py already running), else None."""
    MPI = sys.modules.get("mpi4py.MPI")  # never loaded here: a process that did not load it has no world
    if MPI is None or not MPI.Is_initialized() or MPI.Is_finalized() or MPI.COMM_WORLD.Get_size() == 1:
        return None
    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()


def abort_world(code: int) -> None:
    """End every rank of this MPI run at once with exit status `code` (MPI_Abort)."""
    sys.stdout.flush()
    sys.stderr.flush()
    sys.modules["mpi4py.MPI"].COMM_WORLD.Abort(code)


def keep_global_batch(rows: int, ranks: int, max_batch: int) -> tuple[int, int] | None:
    """(batch_size, grad_accum) giving `ranks` ranks a global batch of `rows` (ranks x K x B = rows), with the
    fewest micro-batches K whose B is at most max_batch; None if no such split exists."""
    for K in range(1, rows // ranks + 1):
        if rows % (ranks * K) == 0 and rows // (ranks * K) <= max_batch:
            return rows // (ranks * K), K
    return None


def global_batch_note(before: tuple[int, int, int], now: tuple[int, int, int]) -> str | None:
    """The line a resumed run says when its (ranks, grad_accum, batch_size) changed: the global batch it keeps on
    another number of ranks, or the one it changes to; None when nothing changed."""
    (r0, k0, b0), (r1, k1, b1) = before, now
    if (r0, k0, b0) == (r1, k1, b1) or (r0 == r1 and r0 * k0 * b0 == r1 * k1 * b1):
        return None
    if r0 * k0 * b0 == r1 * k1 * b1:
        return (f"batch: the run took its steps on {r0} rank{'s' * (r0 > 1)}, now {r1}: --batch-size {b1} "
                f"--grad-accum {k1} keep its global batch of {r1 * k1 * b1} rows")
    return (f"batch: the run's global batch was {r0 * k0 * b0} rows ({r0} ranks x {k0} x {b0}), now {r1 * k1 * b1} "
            f"({r1} x {k1} x {b1}): its steps from here are not those it would have taken")


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


class ShardedRandom:
    """A random generator for dropout that gives each rank its rows of the masks one process would draw.

    Dropout asks for `random(shape)` with the batch as the first axis. Each call draws the mask of the
    whole global batch (`parts` x shape[0] rows) from the wrapped generator, on every rank alike, and
    returns part `part` of it. With gradient accumulation the micro-batches of one step reuse the masks
    the first one drew (call j of each forward gets the j-th global mask), so the generator advances as
    one process with the whole batch would. `next_step()` starts a new step.
    """

    def __init__(self, generator: np.random.Generator, parts: int = 1):
        self.generator, self.parts, self.part = generator, parts, 0
        self._masks: list[np.ndarray] = []
        self._call = 0

    @property
    def bit_generator(self) -> "ShardedRandom":  # `.bit_generator.state`, as on a numpy Generator: what
        return self  # activation recomputation saves and restores to draw the same masks again

    @property
    def state(self) -> dict:
        return {"generator": self.generator.bit_generator.state, "part": self.part, "call": self._call,
                "masks": len(self._masks)}

    @state.setter
    def state(self, state: dict) -> None:
        self.generator.bit_generator.state = state["generator"]
        self.part, self._call = state["part"], state["call"]
        del self._masks[state["masks"]:]  # masks drawn since are drawn again

    def use_part(self, part: int) -> None:
        """Serve rows of part `part` (0 <= part < parts) from now on, from the masks of this step."""
        self.part, self._call = part, 0

    def next_step(self) -> None:
        self._masks, self._call, self.part = [], 0, 0

    def random(self, shape, dtype=np.float64) -> np.ndarray:
        shape = tuple(shape)
        if self.parts == 1:
            return self.generator.random(shape, dtype=dtype)
        if self._call == len(self._masks):  # first use of this call site in this step: draw it whole
            self._masks.append(self.generator.random((self.parts * shape[0],) + shape[1:], dtype=dtype))
        mask = self._masks[self._call]
        self._call += 1
        return mask[self.part * shape[0]:(self.part + 1) * shape[0]]


def shard_dropout(model, parts: int) -> list[ShardedRandom]:
    """Give every module of `model` that draws dropout masks from a generator (`module.rng`) a ShardedRandom
    over it (one per distinct generator), split in `parts`; return them, for use_part/next_step."""
    wrappers: dict[int, ShardedRandom] = {}
    for _, module in model.named_modules():
        rng = getattr(module, "rng", None)
        if isinstance(rng, ShardedRandom):
            rng = rng.generator
        if isinstance(rng, np.random.Generator):
            module.rng = wrappers.setdefault(id(rng), ShardedRandom(rng, parts))
    return list(wrappers.values())
