"""Optimizers (SGD, AdamW), gradient clipping and a warmup + cosine learning-rate schedule, math first.

Semantics follow PyTorch's ``torch.optim``: param groups are dicts with ``params`` plus hyperparameter
overrides, ``zero_grad`` sets ``.grad = None``, and ``state_dict`` holds per-param state keyed by the
param's index counted across all groups.

Each optimizer's rule is one short ``update(p, g, state, group)`` on the NumPy arrays of one param,
in place. ``step()`` runs it through ``update_all`` of the optimizer class itself, or, in fast mode
(``tinygrad_lite.fast.enable()``), of the fast kernel registered for that class (chunked, fused,
optionally threaded) and tested equal to it; ``clip_grad_norm_`` runs its two passes alike.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Iterable, Sequence

import numpy as np

from .state import implementation
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "AdamW", "clip_grad_norm_", "ClipGradNorm", "cosine_with_warmup", "WarmupCosine"]

Work = list[tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, Any]]]  # (param, grad, its state, its group)


def _fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def _grad_array(g: Any) -> np.ndarray:
    """A `.grad` as an array: an ndarray, or the data of a Tensor (after backward(create_graph=True))."""
    return g.data if isinstance(g, Tensor) else np.asarray(g)


# ---------------------------------------------------------------------------------------------------
# the optimizer base class


class Optimizer:
    """Base class: holds ``param_groups`` (dicts: ``params`` + hyperparameters) and per-param ``state``.

    ``params`` is an iterable of Tensors, or of dicts each with a ``params`` entry and any
    hyperparameter overrides; ``defaults`` fills the hyperparameters a group does not set.
    A subclass writes its rule as ``update(p, g, state, group)``.
    """

    name: str = ""  # the optimizer's name

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.name = cls.__dict__.get("name") or cls.__name__.lower()

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
        """(param, grad array) for each param of ``group`` that has a gradient, checking shape and dtype."""
        for p in group["params"]:
            if p.grad is None:
                continue
            g = _grad_array(p.grad)
            if g.shape != p.data.shape or g.dtype != p.data.dtype:
                raise ValueError(f"gradient of shape {_fmt_shape(g.shape)} dtype {g.dtype} does not match its "
                                 f"param of shape {_fmt_shape(p.data.shape)} dtype {p.data.dtype}")
            yield p, g

    def step(self) -> None:
        """Update every param that has a gradient, in place."""
        todo = [(p, g, group) for group in self.param_groups for p, g in self._params_with_grad(group)]
        work = [(p.data, g, self.state.setdefault(id(p), {}), group) for p, g, group in todo]  # all grads checked
        implementation(type(self)).update_all(self, work)  # this class's update, or in fast mode its kernel's

    def update_all(self, work: Work) -> None:
        """Run ``update`` on every (param, grad, state, group): what a fast kernel replaces."""
        for p, g, state, group in work:
            self.update(p, g, state, group)

    @staticmethod
    def update(p: np.ndarray, g: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        """One step of the rule for one param: ``p`` and ``state`` in place, ``g`` read only."""
        raise NotImplementedError

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


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay (PyTorch's rule,
    dampening 0). State per param, with momentum only: ``momentum_buffer`` (b)."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov))

    @staticmethod
    def update(p: np.ndarray, g: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        """One SGD step for one param, in place: p (any shape), g like p, state {} or {momentum_buffer}."""
        lr, mu, wd = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
        d = g + wd * p if wd != 0.0 else g  # L2 penalty: d(wd/2 |p|^2)/dp = wd p
        if mu != 0.0:
            b = state.get("momentum_buffer")
            if b is None:
                b = state["momentum_buffer"] = np.array(d, order="C")  # b_1 = d (a copy; an array if 0-d)
            else:
                b[...] = mu * b + d  # b_t = mu b_{t-1} + d
            d = d + mu * b if group["nesterov"] else b  # look ahead along b, or follow it
        p -= lr * d

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


# ---------------------------------------------------------------------------------------------------
# AdamW


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), ``torch.optim.AdamW``'s update (no amsgrad).

    State per param: ``step`` (int t), ``exp_avg`` (m), ``exp_avg_sq`` (v). Params without a grad are skipped.
    """

    def __init__(self, params_or_groups: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params_or_groups, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @staticmethod
    def update(p: np.ndarray, g: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        """One AdamW step for one param, in place: p (any shape), g like p, state {step, exp_avg, exp_avg_sq}.

        Python-float hyperparameters keep float32 arrays float32."""
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        b1, b2 = (float(b) for b in group["betas"])
        if not state:
            state.update(step=0, exp_avg=np.zeros(p.shape, p.dtype), exp_avg_sq=np.zeros(p.shape, p.dtype))
        m, v = state["exp_avg"], state["exp_avg_sq"]
        state["step"] = t = state["step"] + 1
        p *= 1.0 - lr * wd  # decoupled weight decay: shrink p itself, not through g
        m[...] = b1 * m + (1.0 - b1) * g  # first moment: running mean of g
        v[...] = b2 * v + (1.0 - b2) * g * g  # second moment: running mean of g^2
        m_hat = m / (1.0 - b1 ** t)  # bias correction: m and v start at 0
        v_hat = v / (1.0 - b2 ** t)
        p -= lr * m_hat / (np.sqrt(v_hat) + eps)

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


# ---------------------------------------------------------------------------------------------------
# gradient clipping


class ClipGradNorm:
    """clip_grad_norm_'s two passes over the gradient arrays (in fast mode, those of its fast kernel)."""

    name = "clip_grad_norm_"

    @staticmethod
    def total_norm(grads: list[np.ndarray]) -> float:
        """sqrt(sum of g^2 over every element of every grad), accumulated in float64."""
        return math.sqrt(math.fsum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))

    @staticmethod
    def scale_(grads: list[np.ndarray], factor: float) -> None:
        """g *= factor for every (distinct) grad, in place; a Python float keeps float32 grads float32."""
        for g in grads:
            g *= factor


def clip_grad_norm_(params: Tensor | Iterable[Tensor], max_norm: float, eps: float = 1e-6) -> float:
    """Scale all gradients in place so that their joint L2 norm is at most ``max_norm``.

    The norm is over all grads together (params without a grad are skipped), accumulated in float64.
    When it exceeds ``max_norm`` every grad is multiplied by ``max_norm / (norm + eps)``.
    Returns the norm before clipping (inf or nan if a gradient is not finite).
    """
    if not max_norm >= 0.0:
        raise ValueError(f"max_norm must be >= 0, got {max_norm}")
    params = [params] if isinstance(params, Tensor) else list(params)
    grads = [_grad_array(p.grad) for p in params if p.grad is not None]
    passes = implementation(ClipGradNorm)  # this class, or in fast mode its kernel
    norm = passes.total_norm(grads)  # ||g|| over all grads as one vector
    if norm > max_norm:
        # a grad array shared by two params (one engine array handed to both) is scaled once
        distinct = {(g.__array_interface__["data"][0], g.shape, g.strides): g for g in grads}
        passes.scale_(list(distinct.values()), max_norm / (norm + eps))
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
