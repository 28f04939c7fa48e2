"""Fused ops: each is ONE graph node, a `Function` whose closed-form backward sits below its forward.

Fusing saves memory and time over composing primitives (softmax alone would be five nodes) and lets
each op be numerically stable by construction (max-subtraction, erfc tails, a saturating tanh). Each
backward is written in Tensor ops, recomputing from the saved inputs what depends on them, so that
it can itself be differentiated (`create_graph=True`); `tinygrad_lite.fast` holds faster kernels for
these ops, tested equal to them. Every op keeps its inputs' float dtype and refuses mixed dtypes.
Integer inputs (token ids, targets) are plain arrays for the backward; they are never graph inputs.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from . import special
from .function import Function, register
from .state import is_grad_enabled
from .tensor import IndexAdd, Tensor, unbroadcast

__all__ = ["softmax", "log_softmax", "cross_entropy", "gelu", "layer_norm", "embedding", "linear",
           "dropout", "scaled_dot_product_attention"]

_REDUCTIONS = ("mean", "sum", "none")
_default_rng = np.random.default_rng()  # used by dropout when no `rng` is given


# ------------------------------------------------------------------ input checks
def _floats(op: str, **tensors: Tensor | None) -> np.dtype:
    """Check that every given (non-None) input is a float Tensor and that they share one dtype."""
    first, dtype = None, None
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        if t.dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be a floating-point Tensor, got dtype {t.dtype}")
        if dtype is None:
            first, dtype = name, t.dtype
        elif t.dtype != dtype:
            raise TypeError(f"{op}: mixed float dtypes: {first} is {dtype} but {name} is {t.dtype}; "
                            f"cast one explicitly (tinygrad_lite never promotes silently)")
    return dtype


def _indices(op: str, name: str, idx) -> np.ndarray:
    """An integer ndarray from an integer ndarray, Tensor or nested list."""
    arr = idx.data if isinstance(idx, Tensor) else np.asarray(idx)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name} must have an integer dtype, got {arr.dtype}")
    return arr


def _check_p(op: str, p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{op}: dropout probability must be in [0, 1), got {p}")


def shifted_exp(x: np.ndarray, axis: int):
    """e = exp(x - m), m = max over `axis`, s = sum(e) over `axis`; returns (e, m, s), m and s keepdims.

    A slice that is entirely -inf (fully masked) gets m = 0 (so e = 0, not exp(-inf + inf) = NaN)
    and s = 1 (so e / s = 0 and log(s) = 0): softmax is 0 there and log_softmax is -inf.
    """
    m = x.max(axis=axis, keepdims=True, initial=-np.inf)  # initial: an empty axis has max -inf
    m[np.isneginf(m)] = 0.0
    e = np.exp(x - m)
    s = e.sum(axis=axis, keepdims=True)
    s[s == 0] = 1.0
    return e, m, s


def keep_mask(shape: tuple, p: float, dtype: np.dtype, rng: np.random.Generator | None) -> np.ndarray:
    """Inverted-dropout mask: 1/(1-p) with probability 1-p, else 0, in `dtype`."""
    rng = _default_rng if rng is None else rng
    u = rng.random(shape, dtype=np.float32 if dtype == np.float32 else np.float64)
    return (u >= p) * dtype.type(1.0 / (1.0 - p))


@functools.lru_cache(maxsize=256)
def causal_bias(tq: int, tk: int, dtype: np.dtype) -> np.ndarray:
    """(tq, tk): 0 where query i may see key j, -inf where it may not (added to the scores).
    Query i sits at absolute position i + (tk - tq) (KV-cache decoding), so it sees keys j <= i + tk - tq."""
    bias = np.zeros((tq, tk), dtype=dtype)
    bias[np.triu_indices(tq, k=tk - tq + 1, m=tk)] = -np.inf
    bias.flags.writeable = False
    return bias


# ------------------------------------------------------------------ softmax family
@register
class Softmax(Function):
    @staticmethod
    def forward(ctx, x, axis: int):
        e, _, s = shifted_exp(x, axis)
        y = e / s
        ctx.axis = axis
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):  # dx = y * (g - sum(g * y))
        (y,) = ctx.saved_tensors
        return y * (g - (g * y).sum(ctx.axis, keepdims=True)), None


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis`, computed as exp(x - max). Shape unchanged.

    A slice that is entirely -inf (fully masked) gives zeros (and a zero gradient), not NaN.
    A 0-d x is one slice of one element (softmax 1), as in PyTorch."""
    _floats("softmax", x=x)
    return Softmax.apply(x.reshape(1), 0).reshape(()) if x.ndim == 0 else Softmax.apply(x, axis)


@register
class LogSoftmax(Function):
    name = "log_softmax"

    @staticmethod
    def forward(ctx, x, axis: int):
        e, m, s = shifted_exp(x, axis)
        y = (x - m) - np.log(s)
        ctx.axis = axis
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):  # dx = g - softmax * sum(g), softmax = exp(y)
        (y,) = ctx.saved_tensors
        return g - y.exp() * g.sum(ctx.axis, keepdims=True), None


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along `axis`, computed as (x - max) - log(sum(exp(x - max))). Shape unchanged.

    A slice that is entirely -inf (fully masked) gives -inf there; its gradient is g (softmax taken as 0)."""
    _floats("log_softmax", x=x)
    return LogSoftmax.apply(x.reshape(1), 0).reshape(()) if x.ndim == 0 else LogSoftmax.apply(x, axis)


@register
class CrossEntropy(Function):
    name = "cross_entropy"

    @staticmethod
    def forward(ctx, logits, t, valid, reduction: str):
        """logits (N, V); t (N,) target ids (0 where ignored); valid (N,) which targets count."""
        e, m, s = shifted_exp(logits, axis=1)
        rows = np.arange(t.size)
        # -log softmax[t] = logsumexp - x_t = log(s) - (x_t - m): no cancellation between two big numbers
        losses = np.where(valid, np.log(s[:, 0]) - (logits[rows, t] - m[:, 0]), 0).astype(logits.dtype)
        n_valid = int(valid.sum())
        ctx.t, ctx.valid, ctx.reduction, ctx.n_valid = t, valid, reduction, n_valid
        ctx.save_for_backward(logits, e, s)
        return reduce_losses(losses, reduction, n_valid)

    @staticmethod
    def backward(ctx, g):  # d loss_i / d logits_ij = w_i (softmax_ij - [j == t_i]), w_i = dL/d loss_i
        logits, e, s = ctx.saved_tensors
        N, V = logits.shape
        # softmax = e / s from the forward, a constant, unless this backward is recorded (create_graph): then a
        # function of the logits, differentiated too
        p = softmax(logits, -1) if is_grad_enabled() else e / s
        w = g if ctx.reduction == "none" else g.reshape(1).broadcast_to((N,))
        if ctx.reduction == "mean":  # all targets ignored: the loss is NaN but the gradient is 0
            w = w * (1.0 / max(ctx.n_valid, 1))
        w = w * ctx.valid  # ignored rows get no gradient
        onehot_w = IndexAdd.apply(w, (np.arange(N), ctx.t), (N, V))  # w_i at (i, t_i), zeros elsewhere
        return p * w.reshape(N, 1) - onehot_w, None, None, None


def reduce_losses(losses: np.ndarray, reduction: str, n_valid: int) -> np.ndarray:
    """The per-row losses (N,), their sum, or their mean over the n_valid rows that count (NaN if none)."""
    if reduction == "none":
        return losses
    total = losses.sum()
    return np.asarray(total if reduction == "sum" else (total / n_valid if n_valid else np.nan), losses.dtype)


def cross_entropy(logits: Tensor, targets, ignore_index: int | None = None, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy, fused. logits (..., V) float; targets (...) integer ids in [0, V).

    loss_i = logsumexp(logits_i) - logits_i[target_i]; positions whose target == ignore_index get 0.
    reduction "mean": sum / (number of non-ignored targets), a scalar; if every target is ignored this is
    0/0 = NaN (as in PyTorch) and the gradient is all zeros. "sum": a scalar. "none": (...) per position.
    A row of all -inf logits gives loss +inf (probability 0) with a finite gradient.
    """
    _floats("cross_entropy", logits=logits)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    t = _indices("cross_entropy", "targets", targets)
    if logits.ndim < 1 or t.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: targets shape {t.shape} must equal logits shape {logits.shape} "
                         f"without its last (class) axis, i.e. {logits.shape[:-1]}")
    V = logits.shape[-1]
    t = t.reshape(-1)
    valid = np.ones(t.shape, dtype=bool) if ignore_index is None else t != ignore_index
    bad = valid & ((t < 0) | (t >= V))
    if bad.any():
        i = int(np.argmax(bad))
        pos = tuple(int(p) for p in np.unravel_index(i, logits.shape[:-1]))
        raise ValueError(f"cross_entropy: target {int(t[i])} at position {pos} is outside the class range "
                         f"[0, V={V})" + (f" and is not ignore_index={ignore_index}" if ignore_index is not None
                                          else ""))
    tt = np.where(valid, t, 0).astype(np.intp)  # ignored rows point at class 0; their weight is 0
    loss = CrossEntropy.apply(logits.reshape(-1, V), tt, valid, reduction)
    return loss.reshape(logits.shape[:-1]) if reduction == "none" else loss


# ------------------------------------------------------------------ activations, normalisation
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715
_GELU_CLIP = 10.0  # tanh(c(x + a x^3)) == +-1 exactly beyond |x| ~ 7.6, so clipping at 10 changes nothing


@register
class NormalCDF(Function):
    name = "normal_cdf"

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return special.normal_cdf(x)  # Phi(x) = 0.5 erfc(-x / sqrt 2)

    @staticmethod
    def backward(ctx, g):  # d Phi / dx = phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
        (x,) = ctx.saved_tensors
        return g * (x * x * -0.5).exp() * (1.0 / math.sqrt(2.0 * math.pi))


def _clip(x: Tensor, lim: float) -> Tensor:
    """x clipped to [-lim, lim] (a constant outside, so its gradient is 0 there); x itself when nothing is."""
    if -lim <= x.data.min(initial=0.0) and x.data.max(initial=0.0) <= lim:
        return x
    return Tensor.where(np.abs(x.data) > lim, np.clip(x.data, -lim, lim), x)


@register
class GELU(Function):
    @staticmethod
    def forward(ctx, x, approximate: str):
        ctx.approximate = approximate
        if approximate == "tanh":
            xc = np.clip(x, -_GELU_CLIP, _GELU_CLIP)  # keeps x^3 finite for huge |x|
            t = np.tanh(xc * (_GELU_C + _GELU_C * _GELU_A * (xc * xc)))  # t = tanh(c (x + a x^3))
            ctx.save_for_backward(x, t)
            return 0.5 * x * (1 + t)
        ctx.save_for_backward(x)
        return x * special.normal_cdf(x)  # exact: x Phi(x)

    @staticmethod
    def backward(ctx, g):
        if ctx.approximate == "tanh":
            # dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2) = 0.5 (1 + t) (1 + x (1 - t) c (1 + 3 a x^2))
            x, t = ctx.saved_tensors  # t from the forward, a constant ...
            xc = _clip(x, _GELU_CLIP)  # (where clipped, 1 - t or 1 + t is exactly 0)
            x2 = xc * xc
            if is_grad_enabled():  # ... unless this backward is recorded (create_graph): then t(x), differentiated too
                t = (xc * (_GELU_C + _GELU_C * _GELU_A * x2)).tanh()
            return g * (0.5 * (1 + t)) * (1 + xc * (1 - t) * (_GELU_C + 3 * _GELU_C * _GELU_A * x2)), None
        (x,) = ctx.saved_tensors
        phi = (_clip(x, 40.0) * x * -0.5).exp() * (1.0 / math.sqrt(2.0 * math.pi))  # exp(-800) == 0: no overflow
        return g * (NormalCDF.apply(x) + x * phi), None  # dy/dx = Phi(x) + x phi(x)


def gelu(x: Tensor, approximate: str = "tanh") -> Tensor:
    """GELU, elementwise, shape unchanged.

    "tanh" (GPT-2's gelu_new): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    "none" (exact): x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), with Phi computed as 0.5 erfc(-x / sqrt 2)
    so the negative tail keeps full relative accuracy.
    """
    _floats("gelu", x=x)
    if approximate not in ("tanh", "none"):
        raise ValueError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")
    return GELU.apply(x, approximate)


@register
class LayerNorm(Function):
    name = "layer_norm"

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        xhat, rstd = normalized(x, eps)  # (..., C), (..., 1)
        ctx.eps = eps
        ctx.save_for_backward(x, weight, bias, xhat, rstd)
        return (xhat if weight is None else xhat * weight) + (0 if bias is None else bias)

    @staticmethod
    def backward(ctx, g):
        x, weight, bias, xhat, rstd = ctx.saved_tensors  # xhat, rstd from the forward, constants ...
        nx, nw, nb = ctx.needs_input_grad[:3]
        if is_grad_enabled():  # ... unless this backward is recorded (create_graph): then functions of x
            xhat, rstd = normalized(x, ctx.eps)
        gx = g if weight is None else g * weight
        C = x.shape[-1]
        dx = rstd * (gx - gx.mean(-1, keepdims=True) - xhat * (gx * xhat).mean(-1, keepdims=True)) if nx else None
        dw = (g * xhat).reshape(-1, C).sum(0) if nw else None  # dweight = sum over positions of g xhat
        db = g.reshape(-1, C).sum(0) if nb else None  # dbias = sum over positions of g
        return dx, dw, db, None


def normalized(x, eps: float):
    """xhat = (x - mean) / sqrt(var + eps) over the last axis (..., C), and rstd = 1 / sqrt(var + eps) (..., 1),
    of NumPy arrays (the forward) or of Tensors (a recorded backward): the same code, differentiable on Tensors.
    The mean is shifted by each row's first element: a constant row gives x - mean == 0 exactly, not a
    rounding error that 1/sqrt(eps) would amplify."""
    x0 = x[..., :1]
    xc = x - (x0 + (x - x0).mean(-1, keepdims=True))
    rstd = ((xc * xc).mean(-1, keepdims=True) + eps) ** -0.5
    return xc * rstd, rstd


def layer_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float = 1e-5) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last axis. x (..., C); weight, bias (C,) or None."""
    _floats("layer_norm", x=x, weight=weight, bias=bias)
    if x.ndim == 0:
        raise ValueError("layer_norm: x must have at least one axis (..., C), got a 0-d tensor")
    C = x.shape[-1]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != (C,):
            raise ValueError(f"layer_norm: {name} shape {p.shape} must be (C,) = ({C},) "
                             f"for x of shape {x.shape} (normalised over the last axis)")
    return LayerNorm.apply(x, weight, bias, eps)


# ------------------------------------------------------------------ embedding, linear, dropout
@register
class Embedding(Function):
    @staticmethod
    def forward(ctx, weight, ids):
        ctx.ids, ctx.shape = ids.reshape(-1), weight.shape
        return weight[ids]

    @staticmethod
    def backward(ctx, g):  # dweight[v] = sum of g over the positions holding id v
        return IndexAdd.apply(g.reshape(-1, ctx.shape[1]), ctx.ids, ctx.shape), None


def embedding(idx, weight: Tensor) -> Tensor:
    """Row lookup: idx integer (...) ids in [0, V), weight (V, C) -> (..., C). Repeated ids accumulate grads."""
    _floats("embedding", weight=weight)
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (V, C), got shape {weight.shape}")
    ids = _indices("embedding", "idx", idx)
    V = weight.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        bad = np.unique(ids[(ids < 0) | (ids >= V)])
        raise ValueError(f"embedding: token id(s) {bad[:10].tolist()}{' ...' if len(bad) > 10 else ''} "
                         f"outside the vocabulary [0, V={V})")
    return Embedding.apply(weight, ids.astype(np.intp, copy=False))


@register
class Linear(Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        y = x.reshape(-1, weight.shape[0]) @ weight  # (N, in) @ (in, out): every leading axis is a row
        return (y if bias is None else y + bias).reshape(*x.shape[:-1], weight.shape[1])

    @staticmethod
    def backward(ctx, g):  # y = x W + b: dx = g W^T, dW = x^T g, db = sum of g over the rows
        x, weight = ctx.saved_tensors
        nx, nw, nb = ctx.needs_input_grad
        n_in, n_out = weight.shape
        g2 = g.reshape(-1, n_out)  # (N, out): every leading axis is a row, so each product is one 2-D GEMM
        return ((g2 @ weight.T).reshape(x.shape) if nx else None, x.reshape(-1, n_in).T @ g2 if nw else None,
                g2.sum(0) if nb else None)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight + bias. x (..., in), weight (in, out) (GPT-2 Conv1D layout), bias (out,) -> (..., out)."""
    _floats("linear", x=x, weight=weight, bias=bias)
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[0]:
        raise ValueError(f"linear: x of shape {x.shape} does not fit weight of shape {weight.shape}: "
                         f"weight must be 2-D (in, out) with in == x.shape[-1]")
    if bias is not None and bias.shape != (weight.shape[1],):
        raise ValueError(f"linear: bias shape {bias.shape} must be (out,) = ({weight.shape[1]},)")
    return Linear.apply(x, weight, bias)


@register
class Dropout(Function):
    @staticmethod
    def forward(ctx, x, mask):
        ctx.mask = mask
        return x * mask

    @staticmethod
    def backward(ctx, g):  # d(x m)/dx = m
        return g * ctx.mask, None


def dropout(x: Tensor, p: float, training: bool, rng: np.random.Generator | None = None) -> Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p). Shape unchanged.

    Returns `x` itself when not training or p == 0. `rng` defaults to a module-level Generator.
    """
    _check_p("dropout", p)
    _floats("dropout", x=x)
    if not training or p == 0:
        return x
    return Dropout.apply(x, keep_mask(x.shape, p, x.dtype, rng))  # mask: 0 or 1/(1-p), x's dtype


# ------------------------------------------------------------------ attention
@register
class Attention(Function):
    name = "scaled_dot_product_attention"

    @staticmethod
    def forward(ctx, q, k, v, causal: bool, keep):
        """q (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv); keep: the dropout mask of P, or None."""
        s = attention_scores(q, k, causal)  # (..., Tq, Tk) = q k^T / sqrt(D), -inf on the future
        e, _, z = shifted_exp(s, -1)
        p = e / z  # softmax over the keys
        ctx.causal, ctx.keep = causal, keep
        ctx.save_for_backward(q, k, v, p)
        return np.matmul(p if keep is None else p * keep, v)  # (..., Tq, Dv)

    @staticmethod
    def backward(ctx, g):
        q, k, v, p = ctx.saved_tensors  # p from the forward, a constant ...
        nq, nk, nv = ctx.needs_input_grad[:3]
        scale = 1.0 / math.sqrt(q.shape[-1])
        if is_grad_enabled():  # ... unless this backward is recorded (create_graph): then p(q, k), differentiated too
            p = softmax(attention_scores(q, k, ctx.causal), -1)
        pd = p if ctx.keep is None else p * ctx.keep
        dv = unbroadcast(pd.swapaxes(-1, -2) @ g, v.shape) if nv else None  # dV = P^T g
        if not (nq or nk):
            return None, None, dv, None, None
        dp = g @ v.swapaxes(-1, -2)  # dP = g V^T
        if ctx.keep is not None:
            dp = dp * ctx.keep
        ds = p * (dp - (dp * p).sum(-1, keepdims=True))  # through the softmax
        dq = unbroadcast(ds @ k, q.shape) * scale if nq else None  # dQ = dS K / sqrt(D)
        dk = unbroadcast(ds.swapaxes(-1, -2) @ q, k.shape) * scale if nk else None  # dK = dS^T Q / sqrt(D)
        return dq, dk, dv, None, None


def attention_scores(q, k, causal: bool):
    """q k^T / sqrt(D) (..., Tq, Tk), plus -inf where a query may not see a key (causal), of NumPy arrays (the
    forward) or of Tensors (a recorded backward). q is scaled before the product: (Tq, D) is smaller than (Tq, Tk)."""
    s = (q * q.dtype.type(1.0 / math.sqrt(q.shape[-1]))) @ k.swapaxes(-1, -2)
    return s + causal_bias(q.shape[-2], k.shape[-2], q.dtype) if causal else s


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True, dropout_p: float = 0.0,
                                 training: bool = False, rng: np.random.Generator | None = None) -> Tensor:
    """softmax(q k^T / sqrt(D) + mask) v. q (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv) -> (..., Tq, Dv).

    Leading axes (e.g. (B, H)) broadcast. causal: query i (at absolute position i + Tk - Tq, as in a
    KV-cache decode step) sees keys j <= i + Tk - Tq; needs Tq <= Tk. Dropout on the attention
    probabilities when training and dropout_p > 0.
    """
    dtype = _floats("scaled_dot_product_attention", q=q, k=k, v=v)
    _check_p("scaled_dot_product_attention", dropout_p)
    if min(q.ndim, k.ndim, v.ndim) < 2 or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: need q (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv); "
                         f"got q {q.shape}, k {k.shape}, v {v.shape}")
    try:
        lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(f"scaled_dot_product_attention: leading axes of q {q.shape}, k {k.shape}, "
                         f"v {v.shape} do not broadcast") from None
    tq, tk = q.shape[-2], k.shape[-2]
    if causal and tq > tk:
        raise ValueError(f"scaled_dot_product_attention: causal needs Tq <= Tk, got Tq={tq}, Tk={tk}")
    keep = keep_mask(lead + (tq, tk), dropout_p, dtype, rng) if training and dropout_p > 0 else None
    return Attention.apply(q, k, v, causal, keep)
