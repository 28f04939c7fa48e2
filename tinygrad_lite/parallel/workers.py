"""DataParallel: each batch split by rows over worker processes that share the model's memory.

NumPy runs an elementwise op (layer norm, GELU, a softmax) on one core, where PyTorch spreads it over
its threads. Python threads sharing the work queue up on the GIL: on 2 cores, two threads each on
half the batch made the char model's step (4 layers, n_embd 128, B=12, T=64) 6 % faster than one
thread, and two processes make it 8-15 % faster (benchmarks/bench_step.py). So a batch is split over
worker processes. Each holds a replica of the model whose parameters *are* the parent's arrays, in
shared memory, so an optimizer step in the parent is seen at once; it hands the gradient of its rows
back through shared memory too, and runs its BLAS on one thread (the workers fill the cores).

    par = DataParallel(model, workers=2)  # loss_fn(model, *batch) -> mean loss; default cross_entropy(model(x), y)
    loss = par.backward(x, y)             # as loss_fn(model, x, y).backward(); loss.item(): .grad accumulates
    par.loss(x, y)                        # the loss alone, no graph
    par.close()                           # or `with DataParallel(model) as par:`

The loss of a batch is the mean of its parts' losses weighted by their rows: exactly the loss of the
whole batch when that is a mean over rows that all weigh the same (cross-entropy over (B, T) tokens with
no ignored targets), and so are the gradients (tests/test_workers.py holds them equal). Dropout does
not split so (each worker would draw its own masks): a model with active dropout is refused while
training. The model's class and `loss_fn` must be importable by name (not defined in `__main__`).
POSIX only (the workers get their socket and the shared memory as inherited file descriptors).
"""
from __future__ import annotations

import io
import json
import mmap
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
import weakref
from multiprocessing.connection import Connection

import numpy as np

from .. import functional as F
from ..nn import Dropout
from ..state import fast_mode, is_fast_enabled, no_grad
from ..fast.memory import reuse_freed_memory

_ALIGN = 16  # elements: every array in the shared block starts on a 64-byte boundary (float32)
_ONE_THREAD = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


class WorkerError(RuntimeError):
    """A worker failed (its traceback is in the message) or died; the DataParallel is closed after a death."""


def cross_entropy_loss(model, x, y):
    """The default loss_fn: mean cross-entropy of model(x) (B, T, V) against targets y (B, T)."""
    return F.cross_entropy(model(x), y)


def _layout(shapes: list) -> tuple[list[tuple], int]:
    """Where arrays of these shapes lie in one flat block, packed and aligned: (start, end, shape) each; and
    the block's size in elements."""
    spans, n = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=np.int64))
        spans.append((n, n + size, tuple(shape)))
        n += -(-size // _ALIGN) * _ALIGN
    return spans, max(n, _ALIGN)


def _shared_file(nbytes: int) -> int:
    """An open, already unlinked file of nbytes, its space reserved: in /dev/shm (memory) when it has the room
    (a container's is often 64 MB), else in the temporary directory (the page cache keeps it in memory)."""
    places = [d for d in ("/dev/shm", tempfile.gettempdir()) if os.path.isdir(d)]
    for d in places:
        st = os.statvfs(d)
        if st.f_bavail * st.f_frsize < nbytes * 1.05:
            continue
        fd, path = tempfile.mkstemp(prefix="tinygrad_lite-", dir=d)
        os.unlink(path)
        try:  # reserve the pages now: running out of them later would kill the process with SIGBUS
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, nbytes)
            else:
                os.ftruncate(fd, nbytes)
            return fd
        except OSError:
            os.close(fd)
    raise OSError(f"DataParallel needs {nbytes / 2**20:,.0f} MB of shared memory (the parameters and one gradient "
                  f"per worker); none of {', '.join(places)} has that much free")


def _pickle(obj, shared: dict) -> bytes:
    """pickle.dumps(obj), writing each array whose id is in `shared` as its index there (no copy of its data)."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.persistent_id = lambda obj: shared.get(id(obj)) if isinstance(obj, np.ndarray) else None
    pickler.dump(obj)
    return buf.getvalue()


def _unpickle(data: bytes, arrays: list):
    """The inverse of _pickle, given the arrays the indices stand for."""
    unpickler = pickle.Unpickler(io.BytesIO(data))
    unpickler.persistent_load = lambda i: arrays[i]
    return unpickler.load()


def _views(flat: np.ndarray, spans: list) -> list[np.ndarray]:
    """The arrays of a flat block laid out by _layout, as views."""
    return [flat[start:end].reshape(shape) for start, end, shape in spans]


class DataParallel:
    """Forward and backward of each batch split by rows over `workers` processes (default: one per core)."""

    def __init__(self, model, loss_fn=cross_entropy_loss, workers: int | None = None):
        if os.name != "posix":
            raise OSError("DataParallel needs a POSIX system (Linux, macOS): train with one process instead")
        workers = (os.cpu_count() or 1) if workers is None else workers
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        self.model, self.loss_fn, self.workers = model, loss_fn, workers
        self.params = model.parameters()
        self._dropouts = [m for _, m in model.named_modules() if isinstance(m, Dropout)]
        dtypes = {p.dtype for p in self.params}
        if len(dtypes) != 1:
            raise ValueError(f"DataParallel needs parameters of one float dtype, got {sorted(map(str, dtypes))}")
        self.dtype = np.dtype(dtypes.pop())
        self.shapes = [tuple(p.shape) for p in self.params]
        self._spans, n = _layout(self.shapes)
        in_main = [type(m).__name__ for _, m in model.named_modules() if type(m).__module__ == "__main__"]
        in_main += [loss_fn.__name__] if getattr(loss_fn, "__module__", None) == "__main__" else []
        if in_main:
            raise TypeError(f"DataParallel's workers import the model's classes and loss_fn by name, but "
                            f"{', '.join(dict.fromkeys(in_main))} is defined in __main__ (the script being run): "
                            f"move it into a module the script imports")
        # one shared block: the parameters, then one gradient block per worker, in a file unlinked at once
        fd = _shared_file((1 + workers) * n * self.dtype.itemsize)
        try:
            self._mmap = mmap.mmap(fd, (1 + workers) * n * self.dtype.itemsize)
            flat = np.frombuffer(self._mmap, dtype=self.dtype)
            self._pviews = _views(flat[:n], self._spans)
            self._grads = [flat[(1 + w) * n:(2 + w) * n] for w in range(workers)]
            self._procs = self._conns = None
            for p, v in zip(self.params, self._pviews):  # the parent's parameters move into the shared block
                np.copyto(v, p.data)
                p.data = v
            try:  # the model and loss_fn travel by pickle, the parameters' arrays as references to the block
                payload = _pickle((model, loss_fn), {id(v): i for i, v in enumerate(self._pviews)})
            except Exception as e:
                self.close()
                raise TypeError(f"DataParallel sends the model and loss_fn to its workers by pickle, which failed: "
                                f"{e} (loss_fn must be a module-level function, not a lambda or a nested "
                                f"function)") from None
            try:
                self._procs, self._conns = self._start(fd, payload, n)
            except BaseException:
                self.close()
                raise
        finally:
            os.close(fd)
        self._finalizer = weakref.finalize(self, _stop, self._procs, self._conns)
        try:
            self._call([("setup", None, 0.0, False, np.geterr(), False)] * workers)  # every worker is ready
        except BaseException:
            self.close()
            raise

    def _start(self, fd: int, payload: bytes, n: int):
        env = dict(os.environ, **{k: "1" for k in _ONE_THREAD})
        env["TINYGRAD_LITE_WORKER_PATH"] = json.dumps(sys.path)  # find the model's modules as we do
        code = ("import json, os, sys; sys.path[:0] = json.loads(os.environ['TINYGRAD_LITE_WORKER_PATH']); "
                "from tinygrad_lite.parallel.workers import _serve; _serve()")
        procs, conns = [], []
        try:
            for w in range(self.workers):  # start them all, then send: each unpickles while the next starts
                mine, theirs = socket.socketpair()
                env["TINYGRAD_LITE_WORKER"] = f"{theirs.fileno()},{fd},{w},{n}"
                procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.DEVNULL,
                                              pass_fds=(theirs.fileno(), fd), start_new_session=True))
                theirs.close()
                conns.append(Connection(mine.detach()))
            for conn in conns:
                conn.send((self.dtype.str, self.shapes))
                conn.send_bytes(payload)
        except BaseException:
            _stop(procs, conns)
            raise
        return procs, conns

    # ------------------------------------------------------------ the two calls
    def backward(self, *batch, scale: float = 1.0) -> float:
        """Add the gradient of scale * loss_fn(model, *batch) into every parameter's `.grad`, as
        `loss.backward()` would; return the loss (a float). Each array of `batch` is split by rows, and
        worker k's part weighs rows_k / rows in the loss and its gradient."""
        if self.model.training and any(m.p > 0 for m in self._dropouts):
            raise ValueError("DataParallel cannot split a model with dropout while training: each worker would draw "
                             "its own masks, unlike one process (set dropout to 0, or train without DataParallel)")
        loss, used = self._run("backward", batch, scale)
        flat = self._grads[0].copy() if used == 1 else np.add(self._grads[0], self._grads[1])
        for g in self._grads[2:used]:
            flat += g
        for p, g in zip(self.params, _views(flat, self._spans)):  # dL/dp = sum over the parts
            if p.grad is None:
                p.grad = g
            else:
                p.grad += g
        return loss

    def loss(self, *batch) -> float:
        """loss_fn(model, *batch) as a float, with no graph (an evaluation)."""
        return self._run("loss", batch, 0.0)[0]

    # ------------------------------------------------------------ plumbing
    def _run(self, kind: str, batch: tuple, scale: float) -> tuple[float, int]:
        """Send each worker its rows; return the loss (the parts' losses weighted by their rows) and how many
        workers took part. A part's gradient is of scale * rows_k / rows times its loss."""
        parts = self._split(batch)
        self._sync_parameters()
        weights = [len(part[0]) / len(batch[0]) for part in parts]
        losses = self._call([(kind, part, scale * w, self.model.training, np.geterr(), is_fast_enabled())
                             for part, w in zip(parts, weights)])
        return sum(loss * w for loss, w in zip(losses, weights)), len(parts)

    def _split(self, batch: tuple) -> list[tuple]:
        """The batch's arrays cut into up to `workers` parts of consecutive rows (sizes differ by at most 1)."""
        if self._procs is None:
            raise RuntimeError("this DataParallel is closed (close() was called, or a call to it was interrupted)")
        if not batch:
            raise ValueError("DataParallel needs a batch: backward(x, y) with arrays of one length along axis 0")
        arrays = [np.asarray(a.data if hasattr(a, "_wrap") else a) for a in batch]
        lengths = {a.shape[0] if a.ndim else None for a in arrays}
        if len(lengths) != 1 or None in lengths or 0 in lengths:
            raise ValueError(f"DataParallel splits the batch by rows: every array needs the same nonzero length "
                             f"along axis 0, got shapes {[a.shape for a in arrays]}")
        n = lengths.pop()
        bounds = np.linspace(0, n, min(self.workers, n) + 1).round().astype(int)
        return [tuple(a[lo:hi] for a in arrays) for lo, hi in zip(bounds[:-1], bounds[1:])]

    def _sync_parameters(self) -> None:
        """A parameter whose .data was replaced by a new array (not written in place): copy it into the block."""
        for p, v in zip(self.params, self._pviews):
            if p.data is not v:
                if p.data.shape != v.shape:
                    raise ValueError(f"a parameter changed shape from {v.shape} to {p.data.shape} under DataParallel")
                np.copyto(v, p.data)
                p.data = v

    def _call(self, messages: list) -> list[float]:
        """Send one message to each of the first len(messages) workers and collect their answers."""
        try:
            for w, (conn, message) in enumerate(zip(self._conns, messages)):
                try:
                    conn.send(message)
                except OSError:
                    raise self._died(w) from None
            answers = []
            for w, conn in enumerate(self._conns[:len(messages)]):
                try:
                    answers.append(conn.recv())
                except (EOFError, OSError):
                    raise self._died(w) from None
        except BaseException:  # interrupted between question and answer: the workers are out of step, stop them
            self.close()
            raise
        failed = [(w, text) for w, (kind, text) in enumerate(answers) if kind == "error"]
        if failed:
            w, text = failed[0]
            raise WorkerError(f"DataParallel worker {w} failed: {text.strip().splitlines()[-1]}\n(the worker's "
                              f"traceback:)\n{text}")
        return [value for _, value in answers]

    def _died(self, w: int) -> WorkerError:
        return WorkerError(f"DataParallel worker {w} (pid {self._procs[w].pid}) died; the run cannot go on without it")

    def close(self) -> None:
        """Stop the workers; the model keeps its parameters (copied out of the shared memory)."""
        if self._procs is not None:
            self._finalizer()
            self._procs = self._conns = None
        for p, v in zip(self.params, self._pviews):  # (the gradients are the parent's own arrays already)
            if p.data is v:
                p.data = v.copy()

    def __enter__(self) -> "DataParallel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DataParallel(workers={self.workers}, {'closed' if self._procs is None else 'running'})"


def _stop(procs: list, conns: list) -> None:
    """Ask the workers to stop, and kill any that does not within a few seconds."""
    for conn in conns:
        try:
            conn.send(("stop", None, 0.0, False, None, False))
            conn.close()
        except OSError:
            pass
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ the worker process
def _serve() -> None:
    """A worker's life: map the shared block, rebuild the model on it, then answer the parent's calls."""
    for stop in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C and SIGTERM (to a whole process group) are the
        signal.signal(stop, signal.SIG_IGN)  # parent's to handle; the parent stops us
    sock, fd, w, n = (int(v) for v in os.environ["TINYGRAD_LITE_WORKER"].split(","))
    conn = Connection(sock)
    reuse_freed_memory()
    try:
        dtype, shapes = conn.recv()
        spans, _ = _layout(shapes)
        flat = np.frombuffer(mmap.mmap(fd, 0), dtype=dtype)
        os.close(fd)
        views = _views(flat[:n], spans)
        for v in views:
            v.flags.writeable = False  # the parent's optimizer owns the parameters
        model, loss_fn = _unpickle(conn.recv_bytes(), views)  # its parameters are the shared arrays
        params = model.parameters()
        if len(params) != len(views) or any(p.data is not v for p, v in zip(params, views)):
            raise RuntimeError("the unpickled model's parameters() are not the parent's, in its order")
        grads = _views(flat[(1 + w) * n:(2 + w) * n], spans)
        error = None
    except Exception:
        error = traceback.format_exc()
    while True:
        try:
            kind, batch, weight, training, errstate, fast_on = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if kind == "stop":
            return
        try:
            if error is not None:
                raise RuntimeError(f"the worker could not rebuild the model:\n{error}")
            # the parent's NumPy error state (overflow warnings off here when off there) and engine (math or fast)
            with np.errstate(**errstate), fast_mode(fast_on):
                answer = ("ok", _answer(model, loss_fn, params, grads, kind, batch, weight, training))
        except Exception:
            answer = ("error", traceback.format_exc())
        try:
            conn.send(answer)
        except OSError:
            return  # the parent is gone


def _answer(model, loss_fn, params, grads, kind, batch, weight, training) -> float | None:
    if kind == "setup":
        return None
    if model.training != training:
        model.train(training)
    if kind == "loss":
        with no_grad():
            return float(loss_fn(model, *batch).item())
    for p in params:
        p.grad = None
    loss = loss_fn(model, *batch)
    loss.backward(np.asarray(weight, dtype=loss.dtype))  # d(weight * loss)
    for p, g in zip(params, grads):  # this worker's gradients go to the parent through its shared block
        if p.grad is None:
            g.fill(0)
        else:
            np.copyto(g, p.grad)
        p.grad = None
    return float(loss.item())
