"""Fused ops: each is ONE graph node whose closed-form backward sits right below its forward.

Fusing saves memory and time over composing primitives (softmax alone would be five nodes), and lets
each op be numerically stable by construction (max-subtraction, erfc tails, saturating tanh).
Every op keeps the float dtype of its inputs (float32 in -> float32 out) and refuses mixed float dtypes.
Integer inputs (token ids, targets) are captured by the closures; they are never graph parents.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .autograd import RowGrad
from .tensor import Tensor, unbroadcast

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


# ------------------------------------------------------------------ shared NumPy kernels
def _shifted_exp(x: np.ndarray, axis: int, out: np.ndarray | None = None):
    """e = exp(x - m), m = max over `axis`, s = sum(e) over `axis`; returns (e, m, s), m and s keepdims.

    A row that is entirely -inf (fully masked) gets m = 0 (so e = 0, not exp(-inf + inf) = NaN)
    and s = 1 (so e / s = 0 and log(s) = 0): softmax is 0 there and log_softmax is -inf.
    """
    m = x.max(axis=axis, keepdims=True)
    m[np.isneginf(m)] = 0.0
    e = np.subtract(x, m, out=out)
    np.exp(e, out=e)
    s = e.sum(axis=axis, keepdims=True)
    s[s == 0] = 1.0
    return e, m, s


def _keep_mask(shape: tuple, p: float, dtype: np.dtype, rng: np.random.Generator | None) -> np.ndarray:
    """Inverted-dropout mask: 1/(1-p) with probability 1-p, else 0, in `dtype`."""
    rng = _default_rng if rng is None else rng
    u = rng.random(shape, dtype=np.float32 if dtype == np.float32 else np.float64)
    return (u >= p) * dtype.type(1.0 / (1.0 - p))


@functools.lru_cache(maxsize=256)
def _causal_bias(tq: int, tk: int, dtype: np.dtype) -> np.ndarray:
    """(tq, tk): 0 where query i may see key j, -inf where it may not (added to the scores).
    Query i sits at absolute position i + (tk - tq) (KV-cache decoding), so it sees keys j <= i + tk - tq."""
    bias = np.zeros((tq, tk), dtype=dtype)
    bias[np.triu_indices(tq, k=tk - tq + 1, m=tk)] = -np.inf
    bias.flags.writeable = False
    return bias


@functools.lru_cache(maxsize=256)
def _ones(n: int, dtype: np.dtype) -> np.ndarray:
    """A read-only vector of n ones: `x @ _ones(n)` sums the rows of x as one GEMV, several times faster
    than x.sum(axis=-1) for short rows (NumPy reduces a short contiguous row element by element)."""
    ones = np.ones(n, dtype=dtype)
    ones.flags.writeable = False
    return ones


# |x| within which exp(x) is a normal float with room to spare: float32 spans e^-87.3 to e^88.7, so
# e^60 can be summed over 10^12 terms without overflow; float64 spans e^-708 to e^709
_EXP_SAFE = {np.dtype(np.float32): 60.0, np.dtype(np.float64): 600.0}


def _row_sum(x: np.ndarray) -> np.ndarray:
    """sum over the last axis, keepdims: x (..., n) -> (..., 1)."""
    return (x @ _ones(x.shape[-1], x.dtype))[..., None]


def _col_sum(x2: np.ndarray) -> np.ndarray:
    """sum over the rows of a 2-D array: x2 (N, n) -> (n,) (a bias gradient), as one GEMV."""
    return _ones(x2.shape[0], x2.dtype) @ x2


# ------------------------------------------------------------------ erf / erfc in float64
# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969):
# erf(x) = x P(x^2)/Q(x^2) for |x| <= 0.5; erfc(x) = exp(-x^2) P(x)/Q(x) for 0.5 < x <= 4;
# erfc(x) = exp(-x^2)/x (1/sqrt(pi) + P(1/x^2)/(x^2 Q(1/x^2))) for x > 4. About 1e-16 relative.
_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02, 3.20937758913846947e03,
      1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02,
      8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03,
      2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03,
      3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03)
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2,
      6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1, 6.05183413124413191e-2,
      2.33520497626869185e-3)


def _ratio(z: np.ndarray, num: tuple, den: tuple) -> np.ndarray:
    """Cody's nested evaluation of (num[-1] z^n + ... + num[n-1]) / (z^n + ... + den[n-1])."""
    n, d = num[-1] * z, z.copy()
    for a, b in zip(num[:-2], den[:-1]):
        n += a
        n *= z
        d += b
        d *= z
    n += num[-2]
    d += den[-1]
    n /= d
    return n


def _erf_small(x: np.ndarray) -> np.ndarray:  # |x| <= 0.5
    return x * _ratio(x * x, _A, _B)


def _erfc_large(y: np.ndarray) -> np.ndarray:  # y > 0.5
    y = np.minimum(y, 30.0)  # erfc(30) underflows to 0; keeps y*y finite
    r = np.empty_like(y)
    mid = y <= 4.0
    r[mid] = _ratio(y[mid], _C, _D)
    yt = y[~mid]
    z = 1.0 / (yt * yt)
    r[~mid] = (1.0 / math.sqrt(math.pi) - z * _ratio(z, _P, _Q)) / yt
    # exp(-y^2) = exp(-s^2) exp(-(y-s)(y+s)), s = y truncated to 1/16: the rounding of y*y would cost digits
    s = np.floor(y * 16.0)
    s /= 16.0
    r *= np.exp(-s * s)
    d = np.subtract(y, s)  # y - s
    s += y  # y + s
    d *= s
    np.negative(d, out=d)
    r *= np.exp(d, out=d)
    return r


def _erfc(x: np.ndarray) -> np.ndarray:
    """Vectorised erfc = 1 - erf of a float64 array, accurate in both tails (no cancellation)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    small = np.abs(x) <= 0.5
    out[small] = 1.0 - _erf_small(x[small])
    big = x[~small]
    r = _erfc_large(np.abs(big))
    out[~small] = np.where(big > 0, r, 2.0 - r)  # erfc(-y) = 2 - erfc(y)
    return out


# ------------------------------------------------------------------ softmax family
def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis`, computed as exp(x - max). Shape unchanged.

    A slice that is entirely -inf (fully masked) gives zeros (and a zero gradient), not NaN.
    """
    _floats("softmax", x=x)
    y, _, z = _shifted_exp(x.data, axis)
    y /= z

    def backward(g):  # dx = y * (g - sum(g * y))
        gy = g * y
        row = gy.sum(axis=axis, keepdims=True)
        np.subtract(g, row, out=gy)
        gy *= y
        return (gy,)
    return Tensor._make(y, (x,), backward, "softmax")


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along `axis`, computed as (x - max) - log(sum(exp(x - max))). Shape unchanged.

    A slice that is entirely -inf (fully masked) gives -inf there; its gradient is g (softmax taken as 0).
    """
    _floats("log_softmax", x=x)
    e, m, s = _shifted_exp(x.data, axis)
    y = np.subtract(x.data, m, out=e)  # reuse the exp buffer
    y -= np.log(s)

    def backward(g):  # dx = g - softmax * sum(g), softmax = exp(y)
        p = np.exp(y)
        p *= g.sum(axis=axis, keepdims=True)
        np.subtract(g, p, out=p)
        return (p,)
    return Tensor._make(y, (x,), backward, "log_softmax")


def cross_entropy(logits: Tensor, targets, ignore_index: int | None = None, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy, fused. logits (..., V) float; targets (...) integer ids in [0, V).

    loss_i = logsumexp(logits_i) - logits_i[target_i]; positions whose target == ignore_index get 0.
    reduction "mean": sum / (number of non-ignored targets), a scalar; if every target is ignored this is
    0/0 = NaN (as in PyTorch) and the gradient is all zeros. "sum": a scalar. "none": (...) per position.
    A row of all -inf logits gives loss +inf (probability 0) with a finite gradient.
    Memory: one (N, V) buffer (exp(x - max), kept for backward) plus one for the gradient.
    """
    dtype = _floats("cross_entropy", logits=logits)
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
    tt = np.where(valid, t, 0).astype(np.intp)  # ignored rows point at class 0; their weight is 0 below
    rows = np.arange(t.size)
    n_valid = int(valid.sum())

    x2 = logits.data.reshape(-1, V)  # (N, V)
    e, m, s = _shifted_exp(x2, axis=1)  # the one full-size buffer; softmax = e / s
    # -log softmax[target] = logsumexp - x_t = log(s) - (x_t - m): no cancellation between two big numbers
    losses = np.where(valid, np.log(s[:, 0]) - (x2[rows, tt] - m[:, 0]), 0).astype(dtype, copy=False)  # (N,)
    if reduction == "none":
        out = losses.reshape(logits.shape[:-1])
    elif reduction == "sum":
        out = np.asarray(losses.sum(), dtype=dtype)
    else:
        out = np.asarray(losses.sum() / n_valid if n_valid else np.nan, dtype=dtype)

    def backward(g):  # d loss_i / d logits_ij = (softmax_ij - [j == t_i]) * w_i
        if reduction == "none":
            w = g.reshape(-1)
        elif reduction == "sum":
            w = g.item()
        else:  # all targets ignored: the loss is NaN but the gradient is 0
            w = g.item() / n_valid if n_valid else 0.0
        w = np.where(valid, w, 0).astype(dtype)  # (N,) per-row weight; ignored rows 0
        grad = np.multiply(e, w[:, None] / s)  # fresh (N, V): softmax * w, normalising on the way
        grad[rows, tt] -= w
        return (grad.reshape(logits.shape),)
    return Tensor._make(out, (logits,), backward, "cross_entropy")


# ------------------------------------------------------------------ activations, normalisation
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715
_GELU_CLIP = 10.0  # tanh(c(x + a x^3)) == +-1 exactly beyond |x| ~ 7.6, so clipping at 10 changes nothing


def gelu(x: Tensor, approximate: str = "tanh") -> Tensor:
    """GELU, elementwise, shape unchanged.

    "tanh" (GPT-2's gelu_new): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    "none" (exact): x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), with Phi computed as 0.5 erfc(-x / sqrt 2)
    so the negative tail keeps full relative accuracy.
    """
    _floats("gelu", x=x)
    xd = x.data
    if approximate == "tanh":
        xc = np.clip(xd, -_GELU_CLIP, _GELU_CLIP)  # keeps x^3 finite for huge |x|
        th = xc * xc
        th *= _GELU_C * _GELU_A
        th += _GELU_C
        th *= xc
        np.tanh(th, out=th)  # th = tanh(c (x + a x^3)) = tanh(x (c + c a x^2))
        y = np.add(th, 1.0, out=xc)
        y *= xd
        y *= 0.5  # y = 0.5 x (1 + th)

        def backward(g):  # dy/dx = 0.5 (1 + th) + 0.5 c x (1 + 3 a x^2) (1 - th^2)
            xc = np.clip(xd, -_GELU_CLIP, _GELU_CLIP)  # where clipped, 1 - th^2 == 0 anyway
            d = xc * xc
            d *= 1.5 * _GELU_C * _GELU_A
            d += 0.5 * _GELU_C
            d *= xc  # 0.5 c x (1 + 3 a x^2)
            t = np.multiply(th, th, out=xc)
            np.subtract(1.0, t, out=t)
            d *= t  # ... (1 - th^2)
            np.multiply(th, 0.5, out=t)
            d += t
            d += 0.5
            d *= g
            return (d,)
    elif approximate == "none":
        phi_cdf = (0.5 * _erfc(xd.astype(np.float64) * -math.sqrt(0.5))).astype(xd.dtype, copy=False)  # Phi(x)
        y = xd * phi_cdf

        def backward(g):  # dy/dx = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi)
            xc = np.clip(xd, -40.0, 40.0)  # exp(-800) == 0: keeps x^2 finite
            d = xc * xc
            d *= -0.5
            np.exp(d, out=d)
            d *= 1.0 / math.sqrt(2.0 * math.pi)
            d *= xd
            d += phi_cdf
            d *= g
            return (d,)
    else:
        raise ValueError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")
    return Tensor._make(y, (x,), backward, "gelu")


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
    inv_c = x.dtype.type(1.0 / C)
    xhat = x.data - _row_sum(x.data) * inv_c  # x - mean, (..., C)
    rstd = _row_sum(np.square(xhat)) * inv_c  # var, (..., 1)
    rstd += eps
    np.sqrt(rstd, out=rstd)
    np.reciprocal(rstd, out=rstd)  # 1 / sqrt(var + eps)
    xhat *= rstd
    y = xhat * weight.data if weight is not None else xhat.copy()
    if bias is not None:
        y += bias.data
    parents = tuple(p for p in (x, weight, bias) if p is not None)

    def backward(g):
        gxh = g * xhat if (x.requires_grad or (weight is not None and weight.requires_grad)) else None
        dx = dw = db = None
        if x.requires_grad:
            # with gx = g * weight: dx = rstd (gx - mean(gx) - xhat mean(gx xhat))
            if weight is None:
                m1, m2 = _row_sum(g) * inv_c, _row_sum(gxh) * inv_c
                gx = g
            else:
                w = weight.data
                m1, m2 = (g @ w)[..., None] * inv_c, (gxh @ w)[..., None] * inv_c  # mean(g w), mean(g w xhat)
                gx = g * w
            dx = xhat * m2
            np.subtract(gx, dx, out=dx)
            dx -= m1
            dx *= rstd
        if weight is not None and weight.requires_grad:
            dw = _col_sum(gxh.reshape(-1, C))  # dweight = sum over positions of g xhat
        if bias is not None and bias.requires_grad:
            db = _col_sum(g.reshape(-1, C))  # dbias = sum over positions of g
        return (dx,) + ((dw,) if weight is not None else ()) + ((db,) if bias is not None else ())
    return Tensor._make(y, parents, backward, "layer_norm")


# ------------------------------------------------------------------ embedding, linear, dropout
def embedding(idx, weight: Tensor) -> Tensor:
    """Row lookup: idx integer (...) ids in [0, V), weight (V, C) -> (..., C). Repeated ids accumulate grads."""
    _floats("embedding", weight=weight)
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (V, C), got shape {weight.shape}")
    ids = _indices("embedding", "idx", idx)
    V, C = weight.shape
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        bad = np.unique(ids[(ids < 0) | (ids >= V)])
        raise ValueError(f"embedding: token id(s) {bad[:10].tolist()}{' ...' if len(bad) > 10 else ''} "
                         f"outside the vocabulary [0, V={V})")
    ids = ids.astype(np.intp, copy=False)
    out = weight.data[ids]  # (..., C)
    flat = ids.reshape(-1)

    def backward(g):  # dweight[v] = sum of g over the positions holding id v
        return (RowGrad(flat, g.reshape(-1, C), V),)  # sparse: only the rows of ids in idx
    return Tensor._make(out, (weight,), backward, "embedding")


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight + bias. x (..., in), weight (in, out) (GPT-2 Conv1D layout), bias (out,) -> (..., out)."""
    _floats("linear", x=x, weight=weight, bias=bias)
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[0]:
        raise ValueError(f"linear: x of shape {x.shape} does not fit weight of shape {weight.shape}: "
                         f"weight must be 2-D (in, out) with in == x.shape[-1]")
    n_in, n_out = weight.shape
    if bias is not None and bias.shape != (n_out,):
        raise ValueError(f"linear: bias shape {bias.shape} must be (out,) = ({n_out},)")
    x2 = x.data.reshape(-1, n_in)  # (N, in): one sgemm for all leading axes
    y = x2 @ weight.data
    if bias is not None:
        y += bias.data
    y = y.reshape(*x.shape[:-1], n_out)
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g):
        g2 = g.reshape(-1, n_out)
        dx = (g2 @ weight.data.T).reshape(x.shape) if x.requires_grad else None  # dx = g W^T
        dw = x2.T @ g2 if weight.requires_grad else None  # dW = x^T g
        if bias is None:
            return dx, dw
        return dx, dw, (_col_sum(g2) if bias.requires_grad else None)  # db = sum_rows g
    return Tensor._make(y, parents, backward, "linear")


def dropout(x: Tensor, p: float, training: bool, rng: np.random.Generator | None = None) -> Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p). Shape unchanged.

    Returns `x` itself when not training or p == 0. `rng` defaults to a module-level Generator.
    """
    _check_p("dropout", p)
    _floats("dropout", x=x)
    if not training or p == 0:
        return x
    mask = _keep_mask(x.shape, p, x.dtype, rng)  # 0 or 1/(1-p), x's dtype
    return Tensor._make(x.data * mask, (x,), lambda g: (g * mask,), "dropout")  # d(x m)/dx = m


# ------------------------------------------------------------------ attention
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
        np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(f"scaled_dot_product_attention: leading axes of q {q.shape}, k {k.shape}, "
                         f"v {v.shape} do not broadcast") from None
    (tq, d), tk = q.shape[-2:], k.shape[-2]
    if causal and tq > tk:
        raise ValueError(f"scaled_dot_product_attention: causal needs Tq <= Tk, got Tq={tq}, Tk={tk}")
    scale = 1.0 / math.sqrt(d)

    qs = q.data * dtype.type(scale)  # (..., Tq, D): scaling q costs less than scaling the (Tq, Tk) scores
    s = np.matmul(qs, np.swapaxes(k.data, -1, -2))  # (..., Tq, Tk) = q k^T / sqrt(D)
    # softmax over the keys, in place. Scores all within +-_EXP_SAFE (the usual case) need no shift by
    # the row max: exp(s) then neither overflows nor leaves the normal range, so it is as accurate,
    # and NumPy's row-wise max over short rows costs more than the rest of the softmax.
    lim = _EXP_SAFE.get(dtype, 0.0)
    no_shift = s.size > 0 and -lim < s.min() and s.max() < lim  # False with a NaN or another float dtype
    if causal:
        s += _causal_bias(tq, tk, dtype)  # -inf on the future: those probabilities are exactly 0
    if no_shift:
        z = _row_sum(np.exp(s, out=s))
    else:
        _, _, z = _shifted_exp(s, -1, out=s)
    p = np.divide(s, z, out=s)  # (..., Tq, Tk)
    keep = _keep_mask(p.shape, dropout_p, dtype, rng) if training and dropout_p > 0 else None
    pd = p if keep is None else p * keep
    out = np.matmul(pd, v.data)  # (..., Tq, Dv)

    def backward(g):
        dq = dk = dv = None
        if v.requires_grad:
            dv = unbroadcast(np.matmul(np.swapaxes(pd, -1, -2), g), v.shape)  # dV = P^T g
        if q.requires_grad or k.requires_grad:
            dp = np.matmul(g, np.swapaxes(v.data, -1, -2))  # dP = g V^T
            if keep is not None:
                dp *= keep
            # softmax: dS = P (dP - r), r_i = sum_j dP_ij P_ij = g_i . out_i (FlashAttention's trick:
            # a dot over Dv instead of a sum over Tk; it holds with dropout too, out = (P keep) V)
            dp -= np.einsum("...d,...d->...", g, out)[..., None]
            dp *= p  # dS, the gradient of the scaled scores
            if q.requires_grad:
                dq = np.matmul(dp, k.data)
                dq *= dtype.type(scale)
                dq = unbroadcast(dq, q.shape)  # dQ = dS K / sqrt(D)
            if k.requires_grad:
                dk = unbroadcast(np.matmul(np.swapaxes(dp, -1, -2), qs), k.shape)  # dK = dS^T Q / sqrt(D)
        return dq, dk, dv
    return Tensor._make(out, (q, k, v), backward, "scaled_dot_product_attention")
