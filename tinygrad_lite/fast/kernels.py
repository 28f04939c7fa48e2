"""Fast kernels for the fused ops: in place where the math-first version makes temporaries.

Each `@kernel(Op)` class has Op's forward signature and keeps what its own backward needs (it reads
nothing the op's forward would have set: a backward that builds a graph, which runs the op's own
backward, gets the op's context by running the op's forward again). Its `backward(ctx, g)` works on
NumPy arrays, never writes into g, and returns arrays, `SparseGrad`s or None. tests/test_fast.py holds
every one equal to its op. The tricks:
- row and column sums as matrix-vector products with a vector of ones (NumPy reduces short rows
  element by element, several times slower than a GEMV);
- an attention softmax that skips the row max when every score is far from overflow;
- GELU and layer norm in a few in-place passes over preallocated buffers;
- sparse gradients for embeddings and slices; linear and matmul as one GEMM over all leading axes.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .. import functional as F
from .. import special
from .. import tensor as T
from .registry import kernel
from .engine import RowGrad, SliceGrad


@functools.lru_cache(maxsize=256)
def _ones(n: int, dtype: np.dtype) -> np.ndarray:
    """A read-only vector of n ones: `x @ _ones(n)` sums the rows of x as one GEMV."""
    ones = np.ones(n, dtype=dtype)
    ones.flags.writeable = False
    return ones


def row_sum(x: np.ndarray) -> np.ndarray:
    """sum over the last axis, keepdims: x (..., n) -> (..., 1), as one GEMV."""
    return (x @ _ones(x.shape[-1], x.dtype))[..., None]


def col_sum(x2: np.ndarray) -> np.ndarray:
    """sum over the rows of a 2-D array: x2 (N, n) -> (n,) (a bias gradient), as one GEMV."""
    return _ones(x2.shape[0], x2.dtype) @ x2


def matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """np.matmul, but A (..., k) @ B (k, n) runs as one GEMM over all leading axes (NumPy loops over them)."""
    if B.ndim == 2 and A.ndim > 2:
        return np.matmul(A.reshape(-1, A.shape[-1]), B).reshape(*A.shape[:-1], B.shape[-1])
    return np.matmul(A, B)


def _shifted_exp_into(x: np.ndarray, axis: int):
    """F.shifted_exp, computing exp(x - m) in x's own buffer (x must be a fresh array)."""
    m = x.max(axis=axis, keepdims=True, initial=-np.inf)
    m[np.isneginf(m)] = 0.0
    e = np.subtract(x, m, out=x)
    np.exp(e, out=e)
    s = e.sum(axis=axis, keepdims=True)
    s[s == 0] = 1.0
    return e, m, s


# ------------------------------------------------------------------ primitives on the hot path
@kernel(T.MatMul)
class MatMul:
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return matmul(a, b)

    @staticmethod
    def backward(ctx, g):
        A, B = ctx.saved
        na, nb = ctx.needs_input_grad
        a_shape, b_shape = A.shape, B.shape
        if B.ndim == 1:  # vectors as a column (B) / row (A) matrix, as NumPy treats them. B first: for
            B, g = B[:, None], g[..., None]  # 1-D @ 1-D g is 0-d, and expand_dims(g, -2) needs an axis
        if A.ndim == 1:
            A, g = A[None, :], np.expand_dims(g, -2)
        ga = T.unbroadcast(matmul(g, np.swapaxes(B, -1, -2)), A.shape).reshape(a_shape) if na else None
        if not nb:
            return ga, None
        if B.ndim == 2 and not B.flags.c_contiguous and B.T.flags.c_contiguous:
            # B is a transposed view (a tied LM head: x @ W.T): build dB^T = G^T A in W's own layout, so
            # the transpose's backward hands W a contiguous gradient
            gb = np.matmul(g.reshape(-1, g.shape[-1]).T, A.reshape(-1, A.shape[-1])).T
        elif A.ndim > 2 and B.ndim == 2:  # fold batch axes into one GEMM: (N, k)^T (N, n)
            gb = np.matmul(A.reshape(-1, A.shape[-1]).T, g.reshape(-1, g.shape[-1]))
        else:
            gb = T.unbroadcast(np.matmul(np.swapaxes(A, -1, -2), g), B.shape)
        return ga, gb.reshape(b_shape)


@kernel(T.GetItem)
class GetItem:
    @staticmethod
    def forward(ctx, x, index):
        ctx.shape, ctx.index = x.shape, index
        return x[index]

    @staticmethod
    def backward(ctx, g):  # a basic index: a sparse slice; advanced: scatter with add.at
        index, shape = ctx.index, ctx.shape
        parts = index if isinstance(index, tuple) else (index,)
        if not any(isinstance(i, (np.ndarray, list)) for i in parts):
            return SliceGrad(index, g, shape, g.dtype), None
        out = np.zeros(shape, g.dtype)
        np.add.at(out, index, g)
        return out, None


@kernel(T.Add)
class Add:
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a + b

    @staticmethod
    def backward(ctx, g):  # on arrays: no Tensor per gradient
        (sa, sb), (na, nb) = ctx.shapes, ctx.needs_input_grad
        return T.unbroadcast(g, sa) if na else None, T.unbroadcast(g, sb) if nb else None


@kernel(T.Reshape)
class Reshape:
    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None


@kernel(T.Transpose)
class Transpose:
    @staticmethod
    def forward(ctx, x, axes):
        ctx.inverse = tuple(np.argsort(axes))
        return x.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        return g.transpose(ctx.inverse), None


# ------------------------------------------------------------------ fused ops
@kernel(F.Softmax)
class Softmax:
    @staticmethod
    def forward(ctx, x, axis):
        y, _, z = _shifted_exp_into(np.array(x), axis)
        y /= z
        ctx.axis = axis
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):  # dx = y * (g - sum(g * y))
        (y,) = ctx.saved
        gy = g * y
        row = gy.sum(axis=ctx.axis, keepdims=True)
        np.subtract(g, row, out=gy)
        gy *= y
        return gy, None


@kernel(F.LogSoftmax)
class LogSoftmax:
    @staticmethod
    def forward(ctx, x, axis):
        e, m, s = _shifted_exp_into(np.array(x), axis)
        y = np.subtract(x, m, out=e)  # reuse the exp buffer
        y -= np.log(s)
        ctx.axis = axis
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):  # dx = g - softmax * sum(g), softmax = exp(y)
        (y,) = ctx.saved
        p = np.exp(y)
        p *= g.sum(axis=ctx.axis, keepdims=True)
        np.subtract(g, p, out=p)
        return p, None


@kernel(F.CrossEntropy)
class CrossEntropy:
    @staticmethod
    def forward(ctx, logits, t, valid, reduction):
        e, m, s = F.shifted_exp(logits, axis=1)  # the one full-size buffer; softmax = e / s
        rows = np.arange(t.size)
        losses = np.where(valid, np.log(s[:, 0]) - (logits[rows, t] - m[:, 0]), 0).astype(logits.dtype)
        n_valid = int(valid.sum())
        ctx.t, ctx.valid, ctx.reduction, ctx.n_valid, ctx.e, ctx.s = t, valid, reduction, n_valid, e, s
        return F.reduce_losses(losses, reduction, n_valid)

    @staticmethod
    def backward(ctx, g):  # (softmax - onehot) * w, normalising e by s on the way
        if ctx.reduction == "none":
            w = g
        elif ctx.reduction == "sum":
            w = g.item()
        else:  # all targets ignored: the loss is NaN but the gradient is 0
            w = g.item() / ctx.n_valid if ctx.n_valid else 0.0
        w = np.where(ctx.valid, w, 0).astype(ctx.e.dtype)  # (N,) per-row weight; ignored rows 0
        grad = np.multiply(ctx.e, w[:, None] / ctx.s)  # fresh (N, V)
        grad[np.arange(ctx.t.size), ctx.t] -= w
        return grad, None, None, None


_GELU_C, _GELU_A, _GELU_CLIP = F._GELU_C, F._GELU_A, F._GELU_CLIP


@kernel(F.GELU)
class GELU:
    @staticmethod
    def forward(ctx, x, approximate):
        ctx.approximate = approximate
        ctx.save_for_backward(x)
        if approximate == "none":
            ctx.cdf = special.normal_cdf(x)  # Phi(x)
            return x * ctx.cdf
        x = np.atleast_1d(x)  # in-place ufuncs need arrays: 0-d arithmetic gives NumPy scalars
        xc = np.clip(x, -_GELU_CLIP, _GELU_CLIP)
        x2 = np.multiply(xc, xc)  # kept: the backward's 1 + 3 a x^2
        u = x2 * (_GELU_C * _GELU_A)
        u += _GELU_C
        u *= xc
        np.tanh(u, out=u)
        u += 1.0  # u = 1 + tanh(c (x + a x^3)), kept
        ctx.x2, ctx.u = x2, u
        y = np.multiply(u, x, out=xc)
        y *= 0.5  # y = 0.5 x (1 + tanh(...))
        return y.reshape(ctx.saved[0].shape)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        shape, x, g = x.shape, np.atleast_1d(x), np.atleast_1d(g)
        if ctx.approximate == "none":  # dy/dx = Phi(x) + x phi(x)
            xc = np.clip(x, -40.0, 40.0)
            d = xc * xc
            d *= -0.5
            np.exp(d, out=d)
            d *= 1.0 / math.sqrt(2.0 * math.pi)
            d *= x
            d += ctx.cdf.reshape(d.shape)
            d *= g
            return d.reshape(shape), None
        # dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2), t = tanh(...); with u = 1 + t, 1 - t^2 = (2 - u) u:
        # dy/dx = u (0.5 + (2 - u) w), w = x (c/2 + 3 a c/2 x^2). Clipped |x| > 10: u is exactly 0 or 2.
        u = ctx.u
        d = ctx.x2 * (1.5 * _GELU_C * _GELU_A)
        d += 0.5 * _GELU_C
        d *= x  # w
        t = np.subtract(2.0, u)
        d *= t  # (2 - u) w
        d += 0.5
        d *= u
        d *= g
        return d.reshape(shape), None


@kernel(F.LayerNorm)
class LayerNorm:
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        C = x.shape[-1]
        inv_c = x.dtype.type(1.0 / C)
        x0 = x[..., :1]  # shift by each row's first element: a constant row gives exactly 0 (math version)
        xhat = x - x0
        xhat -= row_sum(xhat) * inv_c  # x - mean, (..., C)
        rstd = row_sum(np.square(xhat)) * inv_c  # var, (..., 1)
        rstd += eps
        np.sqrt(rstd, out=rstd)
        np.reciprocal(rstd, out=rstd)  # 1 / sqrt(var + eps)
        xhat *= rstd
        y = xhat * weight if weight is not None else xhat.copy()
        if bias is not None:
            y += bias
        ctx.xhat, ctx.rstd, ctx.weight = xhat, rstd, weight
        return y

    @staticmethod
    def backward(ctx, g):
        nx, nw, nb = ctx.needs_input_grad[:3]
        xhat, rstd, weight = ctx.xhat, ctx.rstd, ctx.weight
        C = xhat.shape[-1]
        inv_c = xhat.dtype.type(1.0 / C)
        gxh = g * xhat if (nx or nw) else None
        dx = dw = db = None
        if nx:  # with gx = g * weight: dx = rstd (gx - mean(gx) - xhat mean(gx xhat))
            if weight is None:
                m1, m2, gx = row_sum(g) * inv_c, row_sum(gxh) * inv_c, g
            else:
                m1, m2 = (g @ weight)[..., None] * inv_c, (gxh @ weight)[..., None] * inv_c
                gx = g * weight
            dx = xhat * m2
            np.subtract(gx, dx, out=dx)
            dx -= m1
            dx *= rstd
        if nw:
            dw = col_sum(gxh.reshape(-1, C))  # dweight = sum over positions of g xhat
        if nb:
            db = col_sum(g.reshape(-1, C))  # dbias = sum over positions of g
        return dx, dw, db, None


@kernel(F.Embedding)
class Embedding:
    @staticmethod
    def forward(ctx, weight, ids):
        ctx.ids, ctx.shape = ids.reshape(-1), weight.shape
        return weight[ids]

    @staticmethod
    def backward(ctx, g):  # sparse: only the rows of the ids looked up
        V, C = ctx.shape
        return RowGrad(ctx.ids, g.reshape(-1, C), V), None


@kernel(F.Linear)
class Linear:
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        y = x.reshape(-1, x.shape[-1]) @ weight  # (N, in) @ (in, out): one GEMM for all leading axes
        if bias is not None:
            y += bias
        return y.reshape(*x.shape[:-1], weight.shape[1])

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved
        nx, nw, nb = ctx.needs_input_grad
        g2 = g.reshape(-1, weight.shape[1])
        dx = (g2 @ weight.T).reshape(x.shape) if nx else None  # dx = g W^T
        dw = x.reshape(-1, x.shape[-1]).T @ g2 if nw else None  # dW = x^T g
        return dx, dw, (col_sum(g2) if nb else None)  # db = sum_rows g


@kernel(F.Dropout)
class Dropout:
    @staticmethod
    def forward(ctx, x, mask):
        ctx.mask = mask
        return x * mask

    @staticmethod
    def backward(ctx, g):
        return g * ctx.mask, None


# |x| within which exp(x) is a normal float with room to spare: float32 spans e^-87.3 to e^88.7, so
# e^60 can be summed over 10^12 terms without overflow; float64 spans e^-708 to e^709
_EXP_SAFE = {np.dtype(np.float32): 60.0, np.dtype(np.float64): 600.0}
_ATTN_BLOCK = 64  # causal attention in blocks of at least this many query rows (at most 8 blocks; at T = 64 two
#                   blocks of 32 rows save no time)


def _softmax_scores_(s: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """softmax(s + bias) over the last axis, in s's own buffer. Scores all within +-_EXP_SAFE (the usual case)
    need no shift by the row max: exp(s) then neither overflows nor leaves the normal range, so it is as
    accurate, and NumPy's row-wise max over short rows costs more than the rest of the softmax."""
    lim = _EXP_SAFE.get(s.dtype, 0.0)
    no_shift = s.size > 0 and -lim < s.min() and s.max() < lim  # False with a NaN or another dtype
    if bias is not None:
        s += bias  # -inf on the future: those probabilities are exactly 0
    if no_shift:
        z = row_sum(np.exp(s, out=s))
    else:
        _, _, z = _shifted_exp_into(s, -1)
    return np.divide(s, z, out=s)


@kernel(F.Attention)
class Attention:
    """Causal attention skips the scores of the future: the query rows go in blocks, and a block of rows
    [lo, hi) only meets the keys up to its last row's position (for T = 128 in two blocks: 3/4 of the
    scores, and about 1/4 less time). One block, all keys, otherwise."""

    @staticmethod
    def forward(ctx, q, k, v, causal, keep):
        dtype = q.dtype
        scale = dtype.type(1.0 / math.sqrt(q.shape[-1]))
        tq, tk = q.shape[-2], k.shape[-2]
        qs = q * scale  # (..., Tq, D): scaling q costs less than scaling the (Tq, Tk) scores
        same = q.shape[:-2] == k.shape[:-2] == v.shape[:-2]  # no broadcasting between them
        n = max(1, min(8, tq // _ATTN_BLOCK)) if causal and same else 1
        rows = [round(tq * i / n) for i in range(n + 1)]
        out = np.empty((*np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]), tq, v.shape[-1]), dtype)
        blocks = []  # (lo, hi, keys, P, P with dropout) per block of query rows
        for lo, hi in zip(rows[:-1], rows[1:]):
            kh = hi + tk - tq if causal else tk  # the keys rows lo..hi-1 may see (KV-cache: Tq < Tk)
            s = np.matmul(qs[..., lo:hi, :], np.swapaxes(k[..., :kh, :], -1, -2))  # (..., rows, keys) = q k^T/sqrt(D)
            p = _softmax_scores_(s, F.causal_bias(hi - lo, kh, dtype) if causal else None)
            pd = p if keep is None else p * keep[..., lo:hi, :kh]
            np.matmul(pd, v[..., :kh, :], out=out[..., lo:hi, :])  # (..., rows, Dv)
            blocks.append((lo, hi, kh, p, pd))
        ctx.causal, ctx.keep, ctx.qs, ctx.blocks, ctx.out, ctx.scale = causal, keep, qs, blocks, out, scale
        ctx.save_for_backward(q, k, v)
        return out

    @staticmethod
    def backward(ctx, g):
        q, k, v = ctx.saved
        nq, nk, nv = ctx.needs_input_grad[:3]
        if len(ctx.blocks) == 1:
            _, _, _, p, pd = ctx.blocks[0]
            return (*_attention_grads(g, k, v, ctx.qs, p, pd, ctx.keep, ctx.out, ctx.scale, nq, nk, nv, q.shape),
                    None, None)
        # blocks: dQ row by row; dK and dV summed over the blocks that saw each key (the last saw them all)
        dq = np.empty_like(q) if nq else None
        dk = dv = None
        for lo, hi, kh, p, pd in reversed(ctx.blocks):
            keep = None if ctx.keep is None else ctx.keep[..., lo:hi, :kh]
            bq, bk, bv = _attention_grads(g[..., lo:hi, :], k[..., :kh, :], v[..., :kh, :], ctx.qs[..., lo:hi, :],
                                          p, pd, keep, ctx.out[..., lo:hi, :], ctx.scale, nq, nk, nv, None)
            if nq:
                dq[..., lo:hi, :] = bq
            if nk:
                dk = bk if dk is None else _add_rows(dk, bk)
            if nv:
                dv = bv if dv is None else _add_rows(dv, bv)
        return dq, dk, dv, None, None


def _add_rows(total: np.ndarray, part: np.ndarray) -> np.ndarray:
    """total[..., :rows, :] += part: a block's gradient for the first keys."""
    total[..., :part.shape[-2], :] += part
    return total


def _attention_grads(g, k, v, qs, p, pd, keep, out, scale, nq, nk, nv, q_shape):
    """dQ, dK, dV of out = (P keep) V, P = softmax(q k^T / sqrt(D)) (one block of rows when q_shape is None:
    no broadcasting to undo)."""
    unb = (lambda a, shape: a) if q_shape is None else T.unbroadcast
    dq = dk = dv = None
    if nv:
        dv = unb(np.matmul(np.swapaxes(pd, -1, -2), g), v.shape)  # dV = P^T g
    if nq or nk:
        dp = np.matmul(g, np.swapaxes(v, -1, -2))  # dP = g V^T
        if keep is not None:
            dp *= keep
        # softmax: dS = P (dP - r), r_i = sum_j dP_ij P_ij = g_i . out_i (FlashAttention's trick: a dot
        # over Dv instead of a sum over Tk; it holds with dropout too, out = (P keep) V)
        dp -= np.einsum("...d,...d->...", g, out)[..., None]
        dp *= p  # dS, the gradient of the scaled scores
        if nq:
            dq = np.matmul(dp, k)
            dq *= scale
            dq = unb(dq, q_shape)  # dQ = dS K / sqrt(D)
        if nk:
            dk = unb(np.matmul(np.swapaxes(dp, -1, -2), qs), k.shape)  # dK = dS^T Q / sqrt(D)
    return dq, dk, dv
