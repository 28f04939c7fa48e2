"""Optimizers (SGD, AdamW), gradient clipping and a warmup + cosine learning-rate schedule.

Semantics follow PyTorch's ``torch.optim``: param groups are dicts with ``params`` plus hyperparameter
overrides, ``zero_grad`` sets ``.grad = None``, and ``state_dict`` holds per-param state keyed by the
param's index counted across all groups.

Every update works on ``p.data`` in place. The math of each optimizer is written once, as an
elementwise kernel over equal-shaped arrays (``_sgd_kernel``, ``_adamw_kernel``); ``_run_elementwise``
applies a kernel to large chunks of every param's flat buffer, on a small thread pool (NumPy
ufuncs release the GIL), so no full-size temporary is ever made.
"""
from __future__ import annotations

import copy
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "AdamW", "clip_grad_norm_", "cosine_with_warmup", "WarmupCosine"]

# ---------------------------------------------------------------------------------------------------
# chunked, threaded elementwise execution

_CHUNK = 1 << 18  # elements per chunk. Large: every ufunc call hands the GIL to the other thread, and on
#                   a 2-core VM a handoff costs more than a cache miss (gpt2 AdamW: 317 ms at 32K, 134 at 256K)
_MIN_PARALLEL = 1 << 18  # below this many elements in total, stay on the calling thread
_num_threads = os.cpu_count() or 1  # the calling thread plus a pool of _num_threads - 1 helpers
_pool: ThreadPoolExecutor | None = None
_pool_key = (-1, -1)  # (pid, size) the pool was made for
_local = threading.local()  # per-thread scratch buffers, reused across steps


def _get_pool() -> ThreadPoolExecutor:
    """The shared helper pool (re-created after a fork, whose child has none of the threads)."""
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


def _run_elementwise(kernel: Callable[..., None], jobs: list[Job], n_scratch: int,
                     scratch_dtype: np.dtype | type | None = None) -> None:
    """Run ``kernel(*arrays, scratch=[...], **kwargs)`` for every job, on chunks of the flat arrays.

    All arrays of a job have one shape. The kernel may write any array but the second (the gradient).
    A param whose data is not C-contiguous cannot be viewed flat, so it is updated whole, unchunked.
    Scratch arrays have the first array's dtype unless ``scratch_dtype`` is given.
    """
    tasks: list[tuple[tuple[np.ndarray, ...], dict[str, Any]]] = []
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

    def work(part: list[tuple[tuple[np.ndarray, ...], dict[str, Any]]]) -> None:
        for arrays, kwargs in part:
            p = arrays[0]
            tmp = _scratch(scratch_dtype or p.dtype, p.size, n_scratch)
            if p.ndim != 1:
                tmp = [t.reshape(p.shape) for t in tmp]
            kernel(*arrays, scratch=tmp, **kwargs)

    workers = min(_num_threads, len(tasks))
    if workers <= 1 or total < _MIN_PARALLEL:
        work(tasks)
        return
    # one interleaved share per worker; the calling thread does the first share itself
    futures = [_get_pool().submit(work, tasks[w::workers]) for w in range(1, workers)]
    try:
        work(tasks[0::workers])
    finally:
        wait(futures)  # all workers are done before we return or re-raise
    for f in futures:
        f.result()  # re-raise a worker's exception


# ---------------------------------------------------------------------------------------------------
# the optimizer base class


def _fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


class Optimizer:
    """Base class: holds ``param_groups`` (dicts: ``params`` + hyperparameters) and per-param ``state``.

    ``params`` is an iterable of Tensors, or of dicts each with a ``params`` entry and any
    hyperparameter overrides; ``defaults`` fills the hyperparameters a group does not set.
    """

    _n_scratch = 1  # scratch buffers the subclass kernel needs

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], defaults: dict[str, Any]):
        if isinstance(params, (Tensor, dict)):
            raise TypeError("params must be an iterable of Tensors or of param-group dicts, "
                            f"got a single {type(params).__name__}; wrap it in a list")
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}  # id(param) -> state of that param
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if all(isinstance(g, dict) for g in groups):
            for g in groups:
                self.add_param_group(g)
        elif any(isinstance(g, dict) for g in groups):
            raise TypeError("params must be all Tensors or all param-group dicts, not a mix")
        else:
            self.add_param_group({"params": groups})

    # -- groups -----------------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group: a dict with ``params`` (a Tensor or an iterable of Tensors) and overrides."""
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError(f"a param group must be a dict with a 'params' entry, got {param_group!r:.80}")
        group = dict(param_group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        where = f"param group {len(self.param_groups)}"
        if not params:
            raise ValueError(f"{where} has an empty parameter list")
        seen = {id(p): gi for gi, g in enumerate(self.param_groups) for p in g["params"]}
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{where}: params[{i}] must be a Tensor, got {type(p).__name__}")
            if not np.issubdtype(p.data.dtype, np.floating):
                raise ValueError(f"{where}: params[{i}] has dtype {p.data.dtype}, expected a float dtype")
            if id(p) in seen:
                other = "this group" if seen[id(p)] == len(self.param_groups) else f"param group {seen[id(p)]}"
                raise ValueError(f"{where}: params[{i}] (shape {_fmt_shape(p.shape)}) already appears in {other}; "
                                 "a param may be in only one group, once")
            seen[id(p)] = len(self.param_groups)
        group["params"] = params
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._check_hyperparameters(group, where)
        self.param_groups.append(group)

    def _check_hyperparameters(self, group: dict[str, Any], where: str) -> None:
        """Raise ValueError for a bad hyperparameter; subclasses extend."""
        if not group["lr"] >= 0.0:
            raise ValueError(f"{where}: lr must be >= 0, got {group['lr']}")

    def _state_keys(self, group: dict[str, Any]) -> set[str]:
        """Keys of the per-param state this optimizer keeps for a param of ``group``."""
        return set()

    # -- stepping ---------------------------------------------------------------------------------

    def zero_grad(self) -> None:
        """Drop every param's gradient (``.grad = None``), so the next backward starts afresh."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def _params_with_grad(self, group: dict[str, Any]) -> Iterable[tuple[Tensor, np.ndarray]]:
        """(param, grad) for each param of ``group`` that has a gradient, checking its shape and dtype."""
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            if g.shape != p.data.shape or g.dtype != p.data.dtype:
                raise ValueError(f"gradient of shape {_fmt_shape(g.shape)} dtype {g.dtype} does not match its "
                                 f"param of shape {_fmt_shape(p.data.shape)} dtype {p.data.dtype}")
            yield p, g

    def _job(self, p: Tensor, g: np.ndarray, group: dict[str, Any]) -> Job:
        """Create/advance ``p``'s state and return the kernel job for it; subclasses implement."""
        raise NotImplementedError

    _kernel: Callable[..., None]  # the subclass's elementwise update (a staticmethod)

    def step(self) -> None:
        """Update every param that has a gradient, in place."""
        todo = [(p, g, group) for group in self.param_groups for p, g in self._params_with_grad(group)]
        jobs = [self._job(p, g, group) for p, g, group in todo]  # all grads checked before any state changes
        _run_elementwise(self._kernel, jobs, self._n_scratch)

    # -- saving and loading -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [{hyperparameters..., "params": [index, ...]}]}``.

        A param's index counts across all groups in order; arrays are copies."""
        state: dict[int, dict[str, Any]] = {}
        groups = []
        index = 0
        for group in self.param_groups:
            saved = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            saved["params"] = list(range(index, index + len(group["params"])))
            for p in group["params"]:
                if self.state.get(id(p)):
                    state[index] = copy.deepcopy(self.state[id(p)])
                index += 1
            groups.append(saved)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``state_dict()``: groups and params must correspond in number and shapes.

        Raises ValueError naming what differs; on error the optimizer is left unchanged."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError("optimizer state dict must be a dict with exactly the keys 'state' and "
                             f"'param_groups', got {type(state_dict).__name__}"
                             + (f" with keys {sorted(state_dict)}" if isinstance(state_dict, dict) else ""))
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state dict has {len(saved_groups)} param groups, the optimizer has "
                             f"{len(self.param_groups)}")
        new_groups, new_state = [], {}
        for gi, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"param group {gi} has {len(saved['params'])} params in the state dict, "
                                 f"{len(group['params'])} in the optimizer")
            missing = sorted(set(self.defaults) - set(saved))
            if missing:
                raise ValueError(f"param group {gi} of the state dict lacks the hyperparameters {missing} "
                                 f"(is it from another optimizer than {type(self).__name__}?)")
            merged = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            merged["params"] = group["params"]
            self._check_hyperparameters(merged, f"state dict param group {gi}")
            expected_keys = self._state_keys(merged)
            for index, p in zip(saved["params"], group["params"]):
                st = saved_state.get(index)
                if not st:
                    continue
                where = f"state of param {index} (group {gi}, shape {_fmt_shape(p.shape)})"
                if set(st) != expected_keys:
                    raise ValueError(f"{where} has keys {sorted(st)}, expected {sorted(expected_keys)}")
                loaded = {}
                for k, v in st.items():
                    if isinstance(v, np.ndarray):
                        if v.shape != p.data.shape:
                            raise ValueError(f"{where}: '{k}' has shape {_fmt_shape(v.shape)}, expected the "
                                             "param's shape")
                        loaded[k] = np.array(v, dtype=p.data.dtype, order="C", copy=True)
                    else:
                        loaded[k] = copy.deepcopy(v)
                new_state[id(p)] = loaded
            new_groups.append(merged)
        self.param_groups = new_groups
        self.state = new_state


# ---------------------------------------------------------------------------------------------------
# SGD


def _sgd_kernel(p: np.ndarray, g: np.ndarray, buf: np.ndarray | None = None, *, scratch: list[np.ndarray],
                lr: float, momentum: float, weight_decay: float, nesterov: bool, first: bool) -> None:
    """One SGD step on equal-shaped arrays, in place (PyTorch's rule, dampening 0).

    p: param, g: gradient (read only), buf: momentum buffer (None when momentum == 0).
    """
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


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay (PyTorch's rule):

        d = g + wd * p;  b = d (first step) or mu * b + d;  d = d + mu * b (nesterov) or b;  p -= lr * d
    """

    _n_scratch = 2
    _kernel = staticmethod(_sgd_kernel)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov))

    def _check_hyperparameters(self, group: dict[str, Any], where: str) -> None:
        super()._check_hyperparameters(group, where)
        if not group["momentum"] >= 0.0:
            raise ValueError(f"{where}: momentum must be >= 0, got {group['momentum']}")
        if not group["weight_decay"] >= 0.0:
            raise ValueError(f"{where}: weight_decay must be >= 0, got {group['weight_decay']}")
        if group["nesterov"] and group["momentum"] == 0.0:
            raise ValueError(f"{where}: nesterov momentum needs momentum > 0")

    def _state_keys(self, group: dict[str, Any]) -> set[str]:
        return {"momentum_buffer"} if group["momentum"] != 0.0 else set()

    def _job(self, p: Tensor, g: np.ndarray, group: dict[str, Any]) -> Job:
        kwargs = dict(lr=float(group["lr"]), momentum=float(group["momentum"]),
                      weight_decay=float(group["weight_decay"]), nesterov=bool(group["nesterov"]), first=False)
        if group["momentum"] == 0.0:
            return (p.data, g), kwargs
        st = self.state.setdefault(id(p), {})
        if "momentum_buffer" not in st:
            st["momentum_buffer"] = np.zeros(p.data.shape, p.data.dtype)
            kwargs["first"] = True
        return (p.data, g, st["momentum_buffer"]), kwargs


# ---------------------------------------------------------------------------------------------------
# AdamW


def _adamw_kernel(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, *, scratch: list[np.ndarray],
                  lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                  bias_correction1: float, bias_correction2_sqrt: float) -> None:
    """One AdamW step (Loshchilov & Hutter; PyTorch's order of operations) on equal-shaped arrays, in place.

    p: param, g: gradient (read only), m: first moment, v: second moment. Python-float scalars keep
    float32 arrays float32. bias_correction1 = 1 - beta1**t, bias_correction2_sqrt = sqrt(1 - beta2**t).
    """
    (tmp,) = scratch
    if weight_decay != 0.0:
        p *= 1.0 - lr * weight_decay  # p = p * (1 - lr * wd)        decoupled weight decay
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


class AdamW(Optimizer):
    """Adam with decoupled weight decay, exactly PyTorch's ``torch.optim.AdamW`` (no amsgrad).

    State per param: ``step`` (int), ``exp_avg`` (m), ``exp_avg_sq`` (v). Params without a grad are skipped.
    """

    _kernel = staticmethod(_adamw_kernel)

    def __init__(self, params_or_groups: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params_or_groups, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _check_hyperparameters(self, group: dict[str, Any], where: str) -> None:
        super()._check_hyperparameters(group, where)
        betas = group["betas"]
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{where}: betas must be two numbers in [0, 1), got {betas}")
        if not group["eps"] >= 0.0:
            raise ValueError(f"{where}: eps must be >= 0, got {group['eps']}")
        if not group["weight_decay"] >= 0.0:
            raise ValueError(f"{where}: weight_decay must be >= 0, got {group['weight_decay']}")

    def _state_keys(self, group: dict[str, Any]) -> set[str]:
        return {"step", "exp_avg", "exp_avg_sq"}

    def _job(self, p: Tensor, g: np.ndarray, group: dict[str, Any]) -> Job:
        st = self.state.get(id(p))
        if not st:
            st = self.state[id(p)] = {"step": 0, "exp_avg": np.zeros(p.data.shape, p.data.dtype),
                                      "exp_avg_sq": np.zeros(p.data.shape, p.data.dtype)}
        st["step"] += 1
        beta1, beta2 = (float(b) for b in group["betas"])
        kwargs = dict(lr=float(group["lr"]), beta1=beta1, beta2=beta2, eps=float(group["eps"]),
                      weight_decay=float(group["weight_decay"]),
                      bias_correction1=1.0 - beta1 ** st["step"],
                      bias_correction2_sqrt=math.sqrt(1.0 - beta2 ** st["step"]))
        return (p.data, g, st["exp_avg"], st["exp_avg_sq"]), kwargs


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


def _scale_kernel(g: np.ndarray, *, scratch: list[np.ndarray], scale: float) -> None:
    g *= scale  # a Python float keeps float32 grads float32


def clip_grad_norm_(params: Tensor | Iterable[Tensor], max_norm: float, eps: float = 1e-6) -> float:
    """Scale all gradients in place so that their joint L2 norm is at most ``max_norm``.

    The norm is over all grads together (params without a grad are skipped), accumulated in float64.
    When it exceeds ``max_norm`` every grad is multiplied by ``max_norm / (norm + eps)``.
    Returns the norm before clipping (inf or nan if a gradient is not finite).
    """
    if not max_norm >= 0.0:
        raise ValueError(f"max_norm must be >= 0, got {max_norm}")
    params = [params] if isinstance(params, Tensor) else list(params)
    grads = [p.grad for p in params if p.grad is not None]
    partial: list[float] = []
    _run_elementwise(_sum_squares_kernel, [((g,), {"out": partial}) for g in grads], 1, np.float64)
    norm = math.sqrt(math.fsum(partial))  # fsum: exactly rounded, so independent of the threads' order
    if norm > max_norm:
        # a grad array shared by two params (one engine array handed to both) is scaled once
        distinct = {(g.__array_interface__["data"][0], g.shape, g.strides): g for g in grads}
        jobs = [((g,), {"scale": max_norm / (norm + eps)}) for g in distinct.values()]
        _run_elementwise(_scale_kernel, jobs, 0)
    return norm


# ---------------------------------------------------------------------------------------------------
# learning-rate schedule


def cosine_with_warmup(it: int, lr: float, min_lr: float, warmup_iters: int, max_iters: int) -> float:
    """Learning rate at iteration ``it`` (from 0), nanoGPT's schedule.

    - ``it < warmup_iters``: linear warmup ``lr * (it + 1) / (warmup_iters + 1)`` (never 0, just under lr);
    - ``warmup_iters <= it <= max_iters``: cosine decay from ``lr`` at ``warmup_iters`` to ``min_lr`` at
      ``max_iters``: ``min_lr + 0.5 * (1 + cos(pi * (it - warmup_iters) / (max_iters - warmup_iters))) * (lr - min_lr)``;
    - ``it > max_iters``: ``min_lr``.
    """
    _check_schedule(lr, min_lr, warmup_iters, max_iters)
    if it < 0:
        raise ValueError(f"iteration must be >= 0, got {it}")
    if it < warmup_iters:
        return lr * (it + 1) / (warmup_iters + 1)
    if it >= max_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (max_iters - warmup_iters)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * decay_ratio)) * (lr - min_lr)


def _check_schedule(lr: float, min_lr: float, warmup_iters: int, max_iters: int) -> None:
    if warmup_iters < 0:
        raise ValueError(f"warmup_iters must be >= 0, got {warmup_iters}")
    if max_iters < warmup_iters:
        raise ValueError(f"max_iters must be >= warmup_iters, got max_iters={max_iters} < warmup_iters={warmup_iters}")
    if not 0.0 <= min_lr <= lr:
        raise ValueError(f"need 0 <= min_lr <= lr, got min_lr={min_lr}, lr={lr}")


class WarmupCosine:
    """Sets each param group's ``lr`` to ``cosine_with_warmup(it, group["initial_lr"], min_lr, ...)``.

    Construction applies iteration 0; call ``step()`` after each ``optimizer.step()`` to move to the next
    iteration (PyTorch's LRScheduler convention). ``initial_lr`` is stored in each group (its ``lr``
    at construction unless already set, e.g. by a loaded optimizer state). ``min_lr`` is one value for
    all groups or one per group.
    """

    def __init__(self, optimizer: Optimizer, warmup_iters: int, max_iters: int,
                 min_lr: float | Sequence[float] = 0.0):
        self.optimizer = optimizer
        self.warmup_iters = int(warmup_iters)
        self.max_iters = int(max_iters)
        self.min_lr = min_lr
        self.last_iter = 0
        self._apply()

    def _min_lrs(self) -> list[float]:
        n = len(self.optimizer.param_groups)
        if isinstance(self.min_lr, (int, float)):
            return [float(self.min_lr)] * n
        if len(self.min_lr) != n:
            raise ValueError(f"min_lr has {len(self.min_lr)} values, the optimizer has {n} param groups")
        return [float(m) for m in self.min_lr]

    def _apply(self) -> None:
        groups = self.optimizer.param_groups
        initial = [float(g.get("initial_lr", g["lr"])) for g in groups]  # groups added later start now
        lrs = [cosine_with_warmup(self.last_iter, lr, m, self.warmup_iters, self.max_iters)
               for lr, m in zip(initial, self._min_lrs())]
        for g, lr0, lr in zip(groups, initial, lrs):  # all checked: now set
            g["initial_lr"], g["lr"] = lr0, lr

    def step(self) -> None:
        """Advance one iteration and set the groups' learning rates."""
        self.last_iter += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"last_iter": self.last_iter, "warmup_iters": self.warmup_iters, "max_iters": self.max_iters,
                "min_lr": copy.deepcopy(self.min_lr)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        keys = {"last_iter", "warmup_iters", "max_iters", "min_lr"}
        if not isinstance(state_dict, dict) or set(state_dict) != keys:
            raise ValueError(f"scheduler state dict must have exactly the keys {sorted(keys)}")
        old = self.state_dict()
        self.__dict__.update(copy.deepcopy(state_dict))
        try:
            self._apply()
        except ValueError:
            self.__dict__.update(old)
            raise
