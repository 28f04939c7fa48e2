"""The optimizers' fast path: fused in-place kernels run over chunks of every param's flat buffer.

Registered with `kernel(...)` against what they speed up, as the op kernels are: `optim.SGD`,
`optim.AdamW` (their `update_all`) and `optim.ClipGradNorm` (its `total_norm` and `scale_`).
tests/test_fast_optim.py holds each equal to the math-first version in tinygrad_lite/optim.py.

The tricks:
- each update is one fused kernel on equal-shaped arrays (`_sgd_kernel`, `_adamw_kernel`) writing the
  param and its state in place through a few scratch buffers, so no full-size temporary is made;
- `_run_elementwise` feeds it chunks of `_CHUNK` elements (cache-sized, reusing per-thread scratch);
- optionally (`set_num_threads(n)`, opt-in: it starts threads) on a pool of n - 1 helper threads
  beside the calling one: NumPy's ufuncs release the GIL;
- the clipping norm is a float64 sum of squares over chunks, as BLAS dots of short blocks.
"""
from __future__ import annotations

import math
import os
import threading
from typing import Any, Callable

import numpy as np

from .. import optim
from .registry import kernel

_CHUNK = 1 << 18  # elements per chunk. Large: every ufunc call hands the GIL to the other thread, and on
#                   a 2-core VM a handoff costs more than a cache miss (gpt2 AdamW: 317 ms at 32K, 134 at 256K)
_MIN_PARALLEL = 1 << 22  # below this many elements in total, stay on the calling thread: waking a helper costs
#                          more than it saves for a small model (char model, 0.8M: 1.55 ms on one thread, 1.83 on two)
_num_threads = 1  # the calling thread plus a pool of _num_threads - 1 helpers; set_num_threads(n) changes it
_chosen = False  # set_num_threads was called: fast.enable() leaves the number alone
_pool = None  # a concurrent.futures.ThreadPoolExecutor, made on first use (importing this module starts nothing)
_pool_key = (-1, -1)  # (pid, size) the pool was made for
_local = threading.local()  # per-thread scratch buffers, reused across steps


def set_num_threads(n: int) -> None:
    """Run the optimizers' updates and gradient clipping on ``n`` threads: the calling one plus a pool of
    ``n - 1`` helpers, started on the next step. ``n = 1`` (the default) runs everything on the calling
    thread and stops the pool. ``os.cpu_count()`` is a good value for a training loop."""
    global _num_threads, _pool, _chosen
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_num_threads: n must be an int >= 1 (1: no helper threads), got {n!r}")
    _num_threads, _chosen = int(n), True
    if _num_threads == 1 and _pool is not None:
        _pool.shutdown(wait=False)
        _pool = None


def default_num_threads(n: int) -> None:
    """``set_num_threads(n)`` unless the user chose a number already (what ``fast.enable()`` calls)."""
    global _chosen
    if not _chosen:
        set_num_threads(n)
        _chosen = False


def get_num_threads() -> int:
    """The number of threads the optimizers run on (1: the calling thread alone)."""
    return _num_threads


def _get_pool():
    """The shared helper pool (re-created after a fork, whose child has none of the threads)."""
    from concurrent.futures import ThreadPoolExecutor
    global _pool, _pool_key
    key = (os.getpid(), max(_num_threads - 1, 1))
    if _pool is None or _pool_key != key:
        _pool = ThreadPoolExecutor(max_workers=key[1], thread_name_prefix="tinygrad_lite-optim")
        _pool_key = key
    return _pool


def _scratch(dtype: np.dtype, n: int, count: int) -> list[np.ndarray]:
    """``count`` scratch arrays of ``n`` elements, owned by the calling thread (cached when n <= _CHUNK)."""
    if n > _CHUNK:
        return [np.empty(n, dtype) for _ in range(count)]
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    out = []
    for i in range(count):
        key = (np.dtype(dtype).str, i)
        if key not in bufs or bufs[key].size < _CHUNK:
            bufs[key] = np.empty(_CHUNK, dtype)
        out.append(bufs[key][:n])
    return out


Job = tuple[tuple[np.ndarray, ...], dict[str, Any]]  # (arrays: written param first, kwargs for the kernel)


def _run_elementwise(kernel_fn: Callable[..., None], jobs: list[Job], n_scratch: int,
                     scratch_dtype: np.dtype | type | None = None) -> None:
    """Run ``kernel_fn(*arrays, scratch=[...], **kwargs)`` for every job, on chunks of the flat arrays.

    All arrays of a job have one shape. The kernel may write any array but the second (the gradient).
    A job whose written arrays are not C-contiguous cannot be viewed flat, so it runs whole, unchunked.
    Scratch arrays have the first array's dtype unless ``scratch_dtype`` is given.
    """
    tasks: list[Job] = []
    total = 0
    for arrays, kwargs in jobs:
        if not all(a.flags.c_contiguous for i, a in enumerate(arrays) if i != 1):
            tasks.append((arrays, kwargs))  # a whole, shaped update with full-size scratch
            total += arrays[0].size
            continue
        flat = tuple(a.reshape(-1) for a in arrays)  # views (the gradient may be copied if strided)
        n = flat[0].size
        total += n
        for lo in range(0, n, _CHUNK):
            tasks.append((tuple(a[lo:lo + _CHUNK] for a in flat), kwargs))

    def work(part: list[Job]) -> None:
        for arrays, kwargs in part:
            p = arrays[0]
            tmp = _scratch(scratch_dtype or p.dtype, p.size, n_scratch)
            if p.ndim != 1:
                tmp = [t.reshape(p.shape) for t in tmp]
            kernel_fn(*arrays, scratch=tmp, **kwargs)

    workers = min(_num_threads, len(tasks))
    if workers <= 1 or total < _MIN_PARALLEL:
        work(tasks)
        return
    # one interleaved share per worker; the calling thread does the first share itself
    futures = [_get_pool().submit(work, tasks[w::workers]) for w in range(1, workers)]
    try:
        work(tasks[0::workers])
    finally:
        for f in futures:
            f.exception()  # waits: all workers are done before we return or re-raise
    for f in futures:
        f.result()  # re-raise a worker's exception


# ---------------------------------------------------------------------------------------------------
# SGD


def _sgd_kernel(p: np.ndarray, g: np.ndarray, buf: np.ndarray | None = None, *, scratch: list[np.ndarray],
                lr: float, momentum: float, weight_decay: float, nesterov: bool, first: bool) -> None:
    """optim.SGD.update on equal-shaped arrays, in place. buf: momentum buffer (None when momentum == 0)."""
    tmp, tmp2 = scratch
    d = g
    if weight_decay != 0.0:
        np.multiply(p, weight_decay, out=tmp)
        d = np.add(g, tmp, out=tmp)  # d = g + wd * p
    if buf is not None:
        if first:
            np.copyto(buf, d)  # b_1 = d
        else:
            buf *= momentum
            buf += d  # b_t = mu * b_{t-1} + d
        if nesterov:
            np.multiply(buf, momentum, out=tmp2)
            d = np.add(d, tmp2, out=tmp2)  # d = d + mu * b_t
        else:
            d = buf  # d = b_t
    out = d if d is tmp or d is tmp2 else tmp  # a scratch buffer free to overwrite
    np.multiply(d, -lr, out=out)
    p += out  # p = p - lr * d


@kernel(optim.SGD)
class SGDKernel:
    @staticmethod
    def update_all(opt: optim.SGD, work: optim.Work) -> None:
        jobs: list[Job] = []
        for p, g, state, group in work:
            kwargs = dict(lr=float(group["lr"]), momentum=float(group["momentum"]),
                          weight_decay=float(group["weight_decay"]), nesterov=bool(group["nesterov"]), first=False)
            if kwargs["momentum"] == 0.0:
                jobs.append(((p, g), kwargs))
                continue
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = np.zeros(p.shape, p.dtype)
                kwargs["first"] = True
            jobs.append(((p, g, state["momentum_buffer"]), kwargs))
        _run_elementwise(_sgd_kernel, jobs, 2)


# ---------------------------------------------------------------------------------------------------
# AdamW


def _adamw_kernel(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, *, scratch: list[np.ndarray],
                  lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                  bias_correction1: float, bias_correction2_sqrt: float) -> None:
    """optim.AdamW.update on equal-shaped arrays, in place, through one scratch buffer.

    bias_correction1 = 1 - beta1**t, bias_correction2_sqrt = sqrt(1 - beta2**t); Python-float scalars
    keep float32 arrays float32."""
    (tmp,) = scratch
    if weight_decay != 0.0:
        p *= 1.0 - lr * weight_decay  # p = p * (1 - lr * wd)
    m *= beta1
    np.multiply(g, 1.0 - beta1, out=tmp)
    m += tmp  # m = beta1 * m + (1 - beta1) * g
    v *= beta2
    np.multiply(g, g, out=tmp)
    tmp *= 1.0 - beta2
    v += tmp  # v = beta2 * v + (1 - beta2) * g^2
    # p -= lr * m_hat / (sqrt(v_hat) + eps), m_hat = m / bc1, v_hat = v / bc2; multiplying through by
    # sqrt(bc2) saves a pass: p -= (lr sqrt(bc2) / bc1) * m / (sqrt(v) + eps sqrt(bc2))
    np.sqrt(v, out=tmp)
    tmp += eps * bias_correction2_sqrt
    np.divide(m, tmp, out=tmp)
    tmp *= -(lr * bias_correction2_sqrt / bias_correction1)
    p += tmp


@kernel(optim.AdamW)
class AdamWKernel:
    @staticmethod
    def update_all(opt: optim.AdamW, work: optim.Work) -> None:
        jobs: list[Job] = []
        for p, g, state, group in work:
            if not state:
                state.update(step=0, exp_avg=np.zeros(p.shape, p.dtype), exp_avg_sq=np.zeros(p.shape, p.dtype))
            state["step"] = t = state["step"] + 1
            beta1, beta2 = (float(b) for b in group["betas"])
            kwargs = dict(lr=float(group["lr"]), beta1=beta1, beta2=beta2, eps=float(group["eps"]),
                          weight_decay=float(group["weight_decay"]), bias_correction1=1.0 - beta1 ** t,
                          bias_correction2_sqrt=math.sqrt(1.0 - beta2 ** t))
            jobs.append(((p, g, state["exp_avg"], state["exp_avg_sq"]), kwargs))
        _run_elementwise(_adamw_kernel, jobs, 1)


# ---------------------------------------------------------------------------------------------------
# gradient clipping

_DOT_BLOCK = 8192  # OpenBLAS runs a dot of <= 10,000 elements on the calling thread; longer ones start
#                   BLAS threads of their own, which fight with ours (measured: 10-100x slower under load)


def _sum_squares_kernel(g: np.ndarray, *, scratch: list[np.ndarray], out: list[float]) -> None:
    """Append sum(g**2) of a (chunk of a) gradient to ``out``, accumulated in float64."""
    g64 = scratch[0].reshape(-1)
    np.copyto(g64, g.reshape(-1))  # exact up-cast into a chunk-sized float64 buffer
    total = 0.0
    for lo in range(0, g64.size, _DOT_BLOCK):
        block = g64[lo:lo + _DOT_BLOCK]
        total += float(np.dot(block, block))
    out.append(total)  # list.append is atomic under the GIL


def _scale_kernel(g: np.ndarray, *, scratch: list[np.ndarray], factor: float) -> None:
    g *= factor  # a Python float keeps float32 grads float32


@kernel(optim.ClipGradNorm)
class ClipGradNormKernel:
    @staticmethod
    def total_norm(grads: list[np.ndarray]) -> float:
        partial: list[float] = []
        _run_elementwise(_sum_squares_kernel, [((g,), {"out": partial}) for g in grads], 1, np.float64)
        return math.sqrt(math.fsum(partial))  # fsum: exactly rounded, so independent of the threads' order

    @staticmethod
    def scale_(grads: list[np.ndarray], factor: float) -> None:
        _run_elementwise(_scale_kernel, [((g,), {"factor": float(factor)}) for g in grads], 0)
