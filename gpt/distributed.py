"""Data parallelism: one training step's gradient over MPI ranks, micro-batches and worker processes.

    mpiexec -n 4 python -m gpt train ...        # 4 processes (ranks), one model each
    python -m gpt train --grad-accum 2          # 2 micro-batches per step
    python -m gpt train --workers 2             # each (micro-)batch split over 2 processes

The training loop calls one thing for all of it, `ParallelStep.forward_backward(x, y)`: with one rank,
one micro-batch and one worker it is ``F.cross_entropy(model(x), y).backward()``. Every rank holds the
whole model and the same optimizer state. Each step the global batch (N ranks x K micro-batches x B
rows) is drawn once from the run's seed, on every rank alike; rank r computes the gradient of its own
rows, and the gradients are averaged over the ranks with an MPI all-reduce
(`tinygrad_lite.parallel.GradientAllReduce`), so every rank takes the same optimizer step. The mean of
per-rank means equals the mean over the global batch because every part has the same number of
tokens: N ranks with batch B and K micro-batches take the steps of one process with batch N K B.
Dropout masks are drawn for the global batch and sliced (gpt/randomness.py), so that holds with
dropout too. Worker processes (`tinygrad_lite.parallel.DataParallel`) split a micro-batch by rows and
share the model's memory.

`World` is the one place MPI is used. Without mpi4py, or outside mpiexec, it is a world of one rank
whose collectives do nothing.
"""
from __future__ import annotations

import os
import re
import sys
import time
from contextlib import contextmanager
from typing import Iterable

import numpy as np

import tinygrad_lite.functional as F
from tinygrad_lite.parallel import DataParallel, GradientAllReduce, WorkerError

from .errors import RunFailed, UsageError
from .randomness import ShardedRandom, shard_dropout  # noqa: F401  their home is randomness.py; importable here too

__all__ = ["ParallelStep", "World", "worker_count", "mpi_rank", "abort_world", "keep_global_batch",
           "global_batch_note"]


class ParallelStep:
    """The gradient of one training step, the one call the loop makes, whatever computes it.

        step = ParallelStep(model, world, batch_size=B, grad_accum=K, workers=W, dropout=generators.dropout.values())
        x, y = data.get_batch("train", step.rows, T, rng)  # the global batch (N K B, T), the same on every rank
        loss = step.forward_backward(x, y)                  # its mean loss; every .grad holds its gradient
        step.close()                                        # or `with ParallelStep(...) as step:`

    With one rank, K = 1 and one worker that is the plain step. Otherwise rank r computes micro-batch k on the
    rows of part k N + r with its loss scaled by 1/K (the micro-batches' gradients add up to the gradient of
    their mean), dropout serves each part its rows of the global batch's masks, each micro-batch is split by rows
    over W worker processes sharing the model's memory, and the ranks average the gradients. A worker that fails
    or dies is RunFailed naming --workers when the step's `with` block ends.
    """

    def __init__(self, model, world: "World", batch_size: int, grad_accum: int = 1, workers: int = 1,
                 dropout: Iterable[ShardedRandom] = (), required: bool = False) -> None:
        """required: workers > 1 were asked for (--workers), so processes that cannot start are RunFailed; else
        the step runs in this process and `note` says why."""
        self.model, self.world, self.B, self.K = model, world, batch_size, grad_accum
        self.params = model.parameters()  # the tied wte / lm_head matrix once
        self.rows = world.size * grad_accum * batch_size  # of the global batch
        self.dropout = list(dropout)
        self.workers, self.data_parallel, self.note = 1, None, None
        if workers > 1:  # the parameters move into memory shared with the workers
            try:
                self.data_parallel, self.workers = DataParallel(model, workers=workers), workers
            except (OSError, WorkerError) as e:  # no room in shared memory, processes not allowed, ...
                if required:
                    raise RunFailed(f"--workers {workers}: the worker processes could not start: {e}") from None
                self.note = f"workers: could not start them ({e}); training in one process"
        self.plain = world.size == 1 and grad_accum == 1 and self.data_parallel is None

    def forward_backward(self, x: np.ndarray, y: np.ndarray) -> float:
        """Fill every parameter's .grad with the gradient of the mean loss over the global batch x, y (N K B, T),
        and return that loss."""
        for p in self.params:  # (model.zero_grad() would walk the module tree every step)
            p.grad = None
        if self.plain:
            loss = F.cross_entropy(self.model(x), y)
            loss.backward()
            return loss.item()
        N, r, B, K = self.world.size, self.world.rank, self.B, self.K
        for d in self.dropout:
            d.next_step()
        total = 0.0
        for k in range(K):
            part = k * N + r  # this rank's rows of micro-batch k
            for d in self.dropout:
                d.use_part(part)
            rows = slice(part * B, (part + 1) * B)
            total += self._backward(x[rows], y[rows])
        self.world.average_gradients(self.params)
        return self.world.mean(total / K)

    def _backward(self, x: np.ndarray, y: np.ndarray) -> float:
        """Add the gradient of loss(x, y) / K to every .grad, on the workers if any; return the loss."""
        if self.data_parallel is not None:
            return self.data_parallel.backward(x, y, scale=1 / self.K)
        loss = F.cross_entropy(self.model(x), y)
        (loss / self.K if self.K > 1 else loss).backward()  # the gradients of the micro-batches add up
        return loss.item()

    def close(self) -> None:
        """Stop the workers, if any; the model's parameters are copied back out of the shared memory."""
        if self.data_parallel is not None:
            self.data_parallel.close()

    def __enter__(self) -> "ParallelStep":
        return self

    def __exit__(self, kind, error, tb) -> None:
        self.close()
        if isinstance(error, WorkerError):
            raise RunFailed(f"--workers {self.workers}: {error}") from None


_ROWS_PER_WORKER, _MAX_WORKERS = 4, 8  # the default --workers: rows of the batch each, and processes at most


def worker_count(requested: int | None, batch_size: int, dropout: float, ranks: int) -> int:
    """How many processes each batch is split over: `requested` (--workers; at most one per row of the batch:
    the start-up lines say so), else one per core this rank may use (at most one per 4 rows, and 8), unless
    dropout is on (workers cannot draw the masks one process would) or the system is not POSIX."""
    if requested is not None:
        if requested > 1 and dropout > 0:
            raise UsageError(f"--workers {requested} splits each batch over processes, which cannot draw the dropout "
                             f"masks of one process: give --dropout 0, or --workers 1 (dropout is {dropout:g})")
        return min(requested, batch_size)
    if dropout > 0 or os.name != "posix":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # a worker's step has a fixed cost (its Python, its share of the gradient sum): give each 4 rows or more
    return max(1, min(cores // ranks, batch_size // _ROWS_PER_WORKER, _MAX_WORKERS))


class World:
    """The ranks of this run: `rank` of `size`, and the collectives training needs."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self._average = None if comm is None else GradientAllReduce(comm)  # tinygrad_lite.parallel's

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
        """Replace every parameter's .grad by its mean over the ranks (tinygrad_lite.parallel.GradientAllReduce:
        flat buffers, one MPI call per 32 MB)."""
        if self.comm is not None:
            with self._mpi_errors():
                self._average(params)

    @property
    def allreduce_seconds(self) -> float:
        """The time the gradient all-reduces took so far (0 with one rank)."""
        return 0.0 if self._average is None else self._average.seconds

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
    # mpiexec forwards a rank's output through a proxy that the abort kills too: give it a moment to pass on the
    # error line just written (without it the line was lost about once in 30 runs)
    time.sleep(0.5)
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
