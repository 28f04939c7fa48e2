"""The classic mistakes of each op, recognised by what they compute.

A `Mistake` holds its sentence and the gradients it would give (NumPy, by input name; "out" for a
forward's output), from the op's `Call` (its arguments, output and upstream gradient g) and the
expected gradients. When the learner's gradient equals a mistake's and not the expected one, the
diagnosis says that sentence. The mistakes any op can make (a constant factor, a flipped sign, a
missing sum over broadcast axes, a transposed gradient) are recognised in diagnose.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..functional import _GELU_A, _GELU_C
from ..shapes import unbroadcast
from .plug import Call

Grads = dict[str, np.ndarray]


@dataclass(frozen=True)
class Mistake:
    sentence: str
    grads: Callable[[Call, Grads], Grads]


def _buffered_scatter(shape: tuple, index, values: np.ndarray) -> np.ndarray:
    """zeros(shape) with `out[index] += values`, which NumPy buffers: a repeated index adds only once."""
    out = np.zeros(shape)
    out[index] += values
    return out


_REPEATS = ("repeated {} counted once: out[{}] += g adds once per distinct position (NumPy buffers the update); "
            "np.add.at(out, {}, g), or IndexAdd, adds every time")
ADD = ()
MUL = (Mistake("the inputs swapped: d(a*b)/da is b, not a, and d(a*b)/db is a",
               lambda c, e: {"a": unbroadcast(c.g * c.args["a"], np.shape(c.args["a"])),
                             "b": unbroadcast(c.g * c.args["b"], np.shape(c.args["b"]))}),)
MATMUL = ()  # its mistakes (the order of the factors, the batch sums) show in the shapes: diagnose.py
LINEAR = ()
EXP = (Mistake("the input x used where the output e^x was meant: d e^x/dx = e^x",
               lambda c, e: {"x": c.g * c.args["x"]}),)
LOG = (Mistake("the output log x used where the input x was meant: d log x/dx = 1/x",
               lambda c, e: {"x": c.g / c.out}),)
TANH = (Mistake("the input x used where the output tanh x was meant: d tanh x/dx = 1 - tanh(x)^2",
                lambda c, e: {"x": c.g * (1 - c.args["x"] ** 2)}),
        Mistake("a missing square: d tanh x/dx = 1 - tanh(x)^2, not 1 - tanh(x)",
                lambda c, e: {"x": c.g * (1 - c.out)}))
TRANSPOSE = (Mistake("the forward's permutation applied again: undo it with its inverse, np.argsort(axes)",
                     lambda c, e: {"x": np.transpose(c.g, c.args["axes"])}),)
INDEX_ADD = (Mistake(_REPEATS.format("indices", "index", "index"), lambda c, e: {
    "out": _buffered_scatter(c.args["shape"], c.args["index"], c.args["g"])}),)
GETITEM = (Mistake(_REPEATS.format("indices", "index", "index"), lambda c, e: {
    "x": _buffered_scatter(np.shape(c.args["x"]), c.args["index"], c.g)}),)
EMBEDDING = (Mistake(_REPEATS.format("ids", "ids", "ids"), lambda c, e: {
    "weight": _buffered_scatter(np.shape(c.args["weight"]), c.args["ids"].reshape(-1),
                                c.g.reshape(-1, np.shape(c.args["weight"])[1]))}),)


SOFTMAX = (Mistake("only the diagonal of the Jacobian, y (1 - y): each y_i depends on every x_j of its slice, "
                   "so dL/dx = y * (g - sum(g * y))", lambda c, e: {"x": c.g * c.out * (1 - c.out)}),
           Mistake("a missing term: - y * sum(g * y), from each y_i's dependence on the other x_j of its slice",
                   lambda c, e: {"x": c.g * c.out}),
           Mistake("the sum of g * y without keepdims, or along another axis: it runs along the softmax axis, "
                   "kept for broadcasting", lambda c, e: {"x": c.out * (c.g - (c.g * c.out).sum())}))
LOG_SOFTMAX = (Mistake("the log-probabilities y used where the probabilities exp(y) were meant: dL/dx = g - exp(y) "
                       "* sum(g)", lambda c, e: {"x": c.g - c.out * c.g.sum(c.args["axis"], keepdims=True)}),
               Mistake("a missing term: - exp(y) * sum(g), from the logsumexp's dependence on every x_j",
                       lambda c, e: {"x": c.g}))


def _cross_entropy_grad(c: Call, count_ignored: bool = False, divide_by: int | None = None) -> np.ndarray:
    """d loss / d logits (N, V): w_i (softmax_i - onehot(t_i)), w = g (/ the count for "mean") on the counted rows."""
    logits, t, valid, reduction = c.args["logits"], c.args["t"], c.args["valid"], c.args["reduction"]
    n = len(t)
    w = np.broadcast_to(c.g, (n,)).astype(float)
    if reduction == "mean":
        w = w / (divide_by if divide_by is not None else max(int(valid.sum()), 1))
    w = w if count_ignored else w * valid
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(n), t] -= 1
    return p * w[:, None]


CROSS_ENTROPY = (
    Mistake("the ignored rows (target == ignore_index) get a gradient: multiply the weights by ctx.valid",
            lambda c, e: {"logits": _cross_entropy_grad(c, count_ignored=True)}),
    Mistake("the mean divided by all N rows: it divides by ctx.n_valid, the rows that count",
            lambda c, e: {"logits": _cross_entropy_grad(c, divide_by=len(c.args["t"]))}),
    Mistake("the mean's 1/n_valid missing", lambda c, e: {"logits": _cross_entropy_grad(c, divide_by=1)}))


def _layer_norm_parts(c: Call) -> tuple:
    """xhat, rstd and gx = g * w of a LayerNorm call, and a `mean` over the last axis (keepdims)."""
    x, w = c.args["x"], c.args["weight"]
    xc = x - x.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt((xc ** 2).mean(-1, keepdims=True) + c.args["eps"])
    gx = c.g if w is None else c.g * w
    return xc * rstd, rstd, gx, (lambda t: t.mean(-1, keepdims=True))


def _layer_norm_x(c: Call, mean_term: bool = True, var_term: bool = True, weight: bool = True) -> Grads:
    xhat, rstd, gx, mean = _layer_norm_parts(c)
    gx = gx if weight else c.g
    return {"x": rstd * (gx - (mean(gx) if mean_term else 0) - (xhat * mean(gx * xhat) if var_term else 0))}


LAYER_NORM = (
    Mistake("a missing term: - mean(g * w), from the mean's dependence on every x of the row",
            lambda c, e: _layer_norm_x(c, mean_term=False)),
    Mistake("a missing term: - xhat * mean(g * w * xhat), from the variance's dependence on every x of the row",
            lambda c, e: _layer_norm_x(c, var_term=False)),
    Mistake("both mean terms missing: the mean and the variance depend on every x of the row, giving "
            "- mean(g * w) and - xhat * mean(g * w * xhat)", lambda c, e: _layer_norm_x(c, False, False)),
    Mistake("the weight left out of dL/dx: the normalised x is multiplied by w, so use gx = g * w",
            lambda c, e: _layer_norm_x(c, weight=False)),
    Mistake("the input x used where the normalised xhat was meant: dL/dw = sum of g * xhat",
            lambda c, e: {"weight": (c.g * c.args["x"]).reshape(-1, c.args["x"].shape[-1]).sum(0)}))


def _gelu_parts(c: Call) -> tuple:
    x = c.args["x"]
    t = np.tanh(_GELU_C * (x + _GELU_A * x ** 3))
    return x, t, 0.5 * (1 + t), 0.5 * x * (1 - t * t) * _GELU_C


GELU = (Mistake("a missing term of the product rule: 0.5 x (1 - t^2) c (1 + 3 a x^2), from the x inside the tanh",
                lambda c, e: {"x": c.g * _gelu_parts(c)[2]}),
        Mistake("the chain rule stops early: the tanh's argument c (x + a x^3) has derivative c (1 + 3 a x^2)",
                lambda c, e: {"x": c.g * (_gelu_parts(c)[2] + _gelu_parts(c)[3])}))
ATTENTION = (Mistake("the 1/sqrt(D) scale of the scores missing from dq and dk",
                     lambda c, e: {n: e[n] * math.sqrt(c.args["q"].shape[-1]) for n in ("q", "k")
                                   if e.get(n) is not None}),)
