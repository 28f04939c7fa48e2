"""The op table: every differentiable op with its input domains, its shape cases and a NumPy reference.

One row per way of calling an op (a function of float64 Tensors returning a Tensor or a tuple of
Tensors), the input domain that keeps central differences away from kinks and singularities, its
shape cases (broadcasting over different ranks and size-1 axes, edge cases) and, where there is one,
an independent NumPy reference for the forward. `make_inputs(row, case, layout)` builds a case's
inputs, contiguous or as non-contiguous views of the same values.

tests/test_ops_gradcheck.py checks every (row, case) with gradcheck, on the math ops and on the fast
kernels, and fails when a registered op (`function.OPS`) has no row; the exercises' grader
(`tinygrad_lite.exercises`) grades a learner's backward passes on the same cases.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import functional as F
from ..function import OPS as REG
from ..tensor import Tensor

__all__ = ["Case", "case", "Op", "TABLE", "SAME", "make_inputs", "outputs", "seed_for", "as_array", "fixed_dropout"]

SAME = "same"  # ref=SAME: the row's own function, applied to plain NumPy arrays, is the reference


@dataclass(frozen=True)
class Case:
    shapes: tuple  # one shape per input
    kw: dict = field(default_factory=dict)  # keyword arguments for the op (axis, index, targets, ...)
    id: str = ""


def _short(v) -> str:
    v = v.data if isinstance(v, Tensor) else v
    return "array" + "x".join(map(str, v.shape)) if isinstance(v, np.ndarray) else str(v).replace(" ", "")


def case(*shapes, id: str | None = None, **kw) -> Case:
    if id is None:
        id = "@".join("x".join(map(str, s)) or "scalar" for s in shapes)
        id += "".join(f"-{k}={_short(v)}" for k, v in kw.items())
    return Case(tuple(tuple(s) for s in shapes), kw, id)


@dataclass(frozen=True)
class Op:
    name: str
    fn: Callable[..., Any]
    cases: tuple
    # per input: "any" (-2, 2), "pos" (0.5, 2), "nonzero" |x| in (0.3, 1.5), "distinct" (no ties),
    # or "const"/"const_nonzero"/"const_pos": a plain NumPy array (not differentiated) with those values
    domain: str | tuple = "any"
    ref: Callable[..., Any] | str | None = None  # None: no forward check (see the dropout test instead)
    op: str | None = ""  # the registered op the row checks: "" = the row's name; None = composed of several


# ------------------------------------------------------------------ shape cases
BINARY = (case((3, 4), (3, 4)), case((3, 4), (4,)), case((2, 1, 4), (3, 1)), case((4,), (2, 3, 4)),
          case((), (2, 3)))
WITH_CONST = (case((3, 4), (3, 4)), case((3, 4), (4,)), case((2, 1, 4), (3, 1)), case((4,), (2, 3, 4)))
UNARY = (case((5,)), case((3, 4)), case((2, 1, 3)), case(()))
REDUCE = (case((3, 4)), case((3, 4), axis=None, keepdims=True), case((3, 4), axis=1),
          case((2, 3, 4), axis=-1, keepdims=True), case((2, 3, 4), axis=(0, 2)),
          case((2, 3, 4), axis=(0, -1), keepdims=True), case((2, 1, 4), axis=(1, 2)), case((5,), axis=0))
MATMUL = (case((3, 4), (4, 5)), case((2, 3, 4, 5), (5, 6)), case((3, 4, 5), (1, 5, 2)),
          case((2, 1, 3, 4), (5, 4, 2)), case((4,), (4, 3)), case((3, 4), (4,)), case((4,), (4,)),
          case((4,), (2, 4, 3)))

BOOL = np.array([[True, False, True, False]])
GETITEM = (
    case((4, 3), id="int", index=1), case((4, 3), id="negint", index=-1),
    case((4, 3), id="slice", index=slice(1, 3)), case((5, 3), id="negstep", index=slice(None, None, -2)),
    case((4, 3), id="negstep-tuple", index=(slice(3, 0, -1), slice(None, None, -1))),
    case((4, 3), id="none", index=(None, 1)), case((2, 3, 4), id="ellipsis", index=(Ellipsis, 1)),
    case((2, 3, 4), id="ellipsis-none", index=(0, Ellipsis, None)),
    case((5, 3), id="repeated-array", index=np.array([0, 2, 0, -1, 0, 4])),
    case((4, 3), id="repeated-list", index=[1, 1, 3]),
    case((4, 3), id="tuple-slice-list", index=(slice(None), [2, 2, 0])),
    case((4, 3), id="array-2d", index=np.array([[0, 1], [1, 1]])),
    case((3, 4, 2), id="mix-array-slice", index=(np.array([2, 0, 2]), slice(1, None), None)),
    case((3, 4, 2), id="mix-int-array", index=(1, np.array([3, 3, 0]))),
    case((3, 4, 2), id="mix-two-arrays", index=(np.array([0, 0, 2]), slice(None), np.array([1, 1, 0]))),
)


def as_array(x):
    return x.data if isinstance(x, Tensor) else x


def _index_add_ref(g, index, shape):
    out = np.zeros(shape)
    np.add.at(out, index, g)
    return out


def _split_ref(x, sizes, axis=0):
    if isinstance(sizes, int):  # chunks of `sizes`, the last one possibly smaller
        sizes = [min(sizes, x.shape[axis] - s) for s in range(0, x.shape[axis], sizes)]
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


# ----------------------------------------------------------- references for F
def _softmax_ref(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _cross_entropy_ref(logits, targets, ignore_index=None, reduction="mean"):
    logp = np.log(_softmax_ref(logits, -1))
    nll = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    keep = np.ones(targets.shape, bool) if ignore_index is None else targets != ignore_index
    nll = np.where(keep, nll, 0.0)
    return {"none": nll, "sum": nll.sum(), "mean": nll.sum() / keep.sum()}[reduction]


_erf = np.vectorize(math.erf)


def _gelu_ref(x, approximate="tanh"):
    if approximate == "none":
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _layer_norm_ref(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


def _attention_ref(q, k, v, causal=True):
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:  # query i (of Tq, the last Tq of the Tk positions) sees keys j <= i + Tk - Tq
        tq, tk = s.shape[-2:]
        s = np.where(np.arange(tk)[None, :] > np.arange(tq)[:, None] + (tk - tq), -np.inf, s)
    return _softmax_ref(s, -1) @ v


def fixed_dropout(x: Tensor, p: float, seed: int = 1234) -> Tensor:
    """Training-mode dropout with the same mask on every call (finite differences re-run the forward):
    a fresh Generator with a fixed seed each time."""
    return F.dropout(x, p, training=True, rng=np.random.default_rng(seed))


IDS = np.array([[1, 4, 1], [0, 4, 4]])  # repeated ids: their weight rows must accumulate
TARGETS = np.array([[1, 0, 4], [2, 2, 3]])

# ------------------------------------------------------------------------ the table
TABLE: list[Op] = [
    # elementwise binary, both operands differentiable
    Op("add", lambda a, b: a + b, BINARY, ref=SAME),
    Op("sub", lambda a, b: a - b, BINARY, ref=SAME),
    Op("mul", lambda a, b: a * b, BINARY, ref=SAME),
    Op("div", lambda a, b: a / b, BINARY, ("any", "nonzero"), ref=SAME),
    Op("pow_tensor_tensor", lambda a, b: a ** b, BINARY, ("pos", "any"), ref=SAME, op="pow"),
    # with Python scalars, on either side
    Op("pow_tensor_scalar", lambda a: a ** 2.5, UNARY, "pos", ref=SAME, op="pow"),
    Op("pow_tensor_negscalar", lambda a: a ** -1.5, UNARY, "pos", ref=SAME, op="pow"),
    Op("pow_tensor_int", lambda a: a ** 3, UNARY, ref=SAME, op="pow"),
    Op("pow_scalar_tensor", lambda a: 1.7 ** a, UNARY, ref=SAME, op="pow"),
    Op("add_scalar", lambda a: a + 2.5, UNARY, ref=SAME, op="add"),
    Op("radd_scalar", lambda a: 2.5 + a, UNARY, ref=SAME, op="add"),
    Op("rsub_scalar", lambda a: 3.0 - a, UNARY, ref=SAME, op="sub"),
    Op("rmul_scalar", lambda a: -1.5 * a, UNARY, ref=SAME, op="mul"),
    Op("rtruediv_scalar", lambda a: 2.0 / a, UNARY, "nonzero", ref=SAME, op="div"),
    Op("div_scalar", lambda a: a / 4.0, UNARY, ref=SAME, op="div"),
    # with NumPy arrays (constants), on either side
    Op("radd_array", lambda a, c: c + a, WITH_CONST, ("any", "const"), ref=SAME, op="add"),
    Op("rsub_array", lambda a, c: c - a, WITH_CONST, ("any", "const"), ref=SAME, op="sub"),
    Op("rmul_array", lambda a, c: c * a, WITH_CONST, ("any", "const"), ref=SAME, op="mul"),
    Op("rtruediv_array", lambda a, c: c / a, WITH_CONST, ("nonzero", "const"), ref=SAME, op="div"),
    Op("truediv_array", lambda a, c: a / c, WITH_CONST, ("any", "const_nonzero"), ref=SAME, op="div"),
    Op("rpow_array", lambda a, c: c ** a, WITH_CONST, ("any", "const_pos"), ref=SAME, op="pow"),
    Op("neg", lambda a: -a, UNARY, ref=SAME),
    # matmul: 2-D, batched with broadcasting, vectors
    Op("matmul", lambda a, b: a @ b, MATMUL, ref=SAME),
    Op("rmatmul_array", lambda b, c: c @ b, (case((4, 5), (3, 4)), case((2, 4, 3), (4,)), case((4,), (2, 5, 4))),
       ("any", "const"), ref=SAME, op="matmul"),
    # reductions
    Op("sum", lambda x, **kw: x.sum(**kw), REDUCE, ref=SAME),
    Op("mean", lambda x, **kw: x.mean(**kw), REDUCE, ref=SAME, op=None),
    Op("max", lambda x, **kw: x.max(**kw), REDUCE, "distinct", ref=SAME),
    Op("var", lambda x, **kw: x.var(**kw), REDUCE + (case((3, 4), axis=0, ddof=1),), ref=SAME, op=None),
    # elementwise unary
    Op("exp", lambda x: x.exp(), UNARY, ref=np.exp),
    Op("log", lambda x: x.log(), UNARY, "pos", ref=np.log),
    Op("tanh", lambda x: x.tanh(), UNARY, ref=np.tanh),
    Op("sqrt", lambda x: x.sqrt(), UNARY, "pos", ref=np.sqrt),
    Op("relu", lambda x: x.relu(), UNARY, "nonzero", ref=lambda x: np.maximum(x, 0)),
    Op("sigmoid", lambda x: x.sigmoid(), UNARY, ref=lambda x: 1 / (1 + np.exp(-x))),
    Op("abs", lambda x: x.abs(), UNARY, "nonzero", ref=np.abs),
    # movement
    Op("reshape", lambda x, shape: x.reshape(*shape),
       (case((3, 4), shape=(4, 3)), case((3, 4), shape=(-1,)), case((2, 3, 4), shape=(6, -1)),
        case((2, 1, 3), shape=(3, 1, 2, 1)), case((), shape=(1, 1))), ref=lambda x, shape: x.reshape(shape)),
    Op("reshape_tuple", lambda x, shape: x.reshape(shape),
       (case((3, 4), shape=(2, 6)), case((2, 3, 4), shape=(4, 6)), case((2, 1, 3), shape=(6,))), ref=SAME, op="reshape"),
    Op("transpose", lambda x, axes: x.transpose(*axes),
       (case((2, 3, 4), axes=()), case((2, 3, 4), axes=(1, 0, 2)), case((2, 3, 4), axes=(-1, 0, 1)),
        case((3, 4), axes=()), case((2, 1, 3), axes=(2, 0, 1))), ref=lambda x, axes: x.transpose(*axes)),
    Op("transpose_tuple", lambda x: x.transpose((2, 0, 1)), (case((2, 3, 4)), case((1, 3, 2)), case((4, 1, 1))),
       ref=SAME, op="transpose"),
    Op("T", lambda x: x.T, (case((3, 4)), case((2, 3, 4)), case((5,)), case((2, 1, 3))), ref=SAME, op="transpose"),
    Op("swapaxes", lambda x, a, b: x.swapaxes(a, b),
       (case((2, 3, 4), a=0, b=2), case((3, 4), a=-1, b=-2), case((2, 1, 3), a=1, b=2)), ref=SAME, op="transpose"),
    Op("getitem", lambda x, index: x[index], GETITEM, ref=SAME),
    Op("split", lambda x, sizes, axis=0: tuple(x.split(sizes, axis)),
       (case((5, 3), sizes=2), case((5, 3), sizes=[1, 3, 1]), case((3, 5), sizes=2, axis=-1),
        case((2, 6, 1), sizes=[2, 4], axis=1), case((4, 2), sizes=4)), ref=_split_ref, op="getitem"),
    Op("cat", lambda *xs, axis: Tensor.cat(xs, axis),
       (case((2, 3), (4, 3), axis=0), case((2, 3), (2, 1), (2, 2), axis=-1), case((2, 1, 3), (2, 2, 3), axis=1),
        case((3,), (2,), axis=0)), ref=lambda *xs, axis: np.concatenate(xs, axis)),
    Op("stack", lambda *xs, axis: Tensor.stack(xs, axis),
       (case((3, 4), (3, 4), axis=0), case((3, 4), (3, 4), axis=1), case((2, 3), (2, 3), (2, 3), axis=-1),
        case((2, 1), (2, 1), axis=2), case((), (), axis=0)), ref=lambda *xs, axis: np.stack(xs, axis), op="cat"),
    Op("masked_fill", lambda x, mask: x.masked_fill(mask, -7.5),
       (case((3, 4), mask=BOOL[0]), case((2, 3, 4), mask=np.array([[True], [False], [True]])),
        case((3, 4), mask=np.arange(12).reshape(3, 4) % 3 == 0), case((2, 1, 4), mask=Tensor(BOOL))),
       ref=lambda x, mask: np.where(as_array(mask), -7.5, x), op="where"),
    Op("where", lambda a, b, cond: Tensor.where(cond, a, b),
       (case((3, 4), (3, 4), cond=BOOL[0]), case((2, 3, 4), (4,), cond=np.array([[True], [False], [True]])),
        case((3, 1), (1, 4), cond=BOOL), case((4,), (2, 1, 4), cond=Tensor(BOOL))),
       ref=lambda a, b, cond: np.where(as_array(cond), a, b)),
    Op("where_tensor_scalar", lambda a, cond: Tensor.where(cond, a, 0.25),
       (case((3, 4), cond=BOOL[0]), case((2, 1, 4), cond=BOOL), case((4,), cond=np.array([[True], [False]]))),
       ref=lambda a, cond: np.where(cond, a, 0.25), op="where"),
    Op("where_scalar_tensor", lambda b, cond: Tensor.where(cond, -1.0, b),
       (case((3, 4), cond=BOOL[0]), case((2, 1, 4), cond=BOOL), case((4,), cond=np.array([[True], [False]]))),
       ref=lambda b, cond: np.where(cond, -1.0, b), op="where"),
    Op("broadcast_to", lambda x, shape: x.broadcast_to(shape),
       (case((3, 1), shape=(2, 3, 4)), case((4,), shape=(3, 4)), case((), shape=(2, 2)), case((2, 1, 3), shape=(2, 5, 3))),
       ref=lambda x, shape: np.broadcast_to(x, shape)),
    Op("index_add", lambda g, index, shape: REG["index_add"].apply(g, index, shape),
       (case((6, 3), index=np.array([0, 2, 0, 4, 4, 0]), shape=(5, 3)), case((2, 3), index=(slice(1, 3),), shape=(4, 3)),
        case((3,), index=(np.array([1, 1, 0]), np.array([2, 2, 1])), shape=(2, 3)), case((2, 2), index=(0, Ellipsis), shape=(3, 2, 2))),
       ref=_index_add_ref),
    Op("cast", lambda x: REG["cast"].apply(x, np.dtype(np.float64)), UNARY, ref=lambda x: x.copy()),  # float64 -> float64: the op itself
    # fused functional ops: each one graph node with a closed-form backward
    Op("softmax", lambda x, axis: F.softmax(x, axis=axis),
       (case((3, 4), axis=-1), case((3, 4), axis=0), case((2, 3, 4), axis=-1), case((2, 1, 3), axis=0), case((5,), axis=-1)),
       ref=_softmax_ref),
    Op("log_softmax", lambda x, axis: F.log_softmax(x, axis=axis),
       (case((3, 4), axis=-1), case((3, 4), axis=0), case((2, 3, 4), axis=-1), case((2, 1, 3), axis=0), case((5,), axis=-1)),
       ref=lambda x, axis: np.log(_softmax_ref(x, axis))),
    Op("cross_entropy", lambda x, targets, **kw: F.cross_entropy(x, targets, **kw),
       (case((2, 3, 5), targets=TARGETS), case((2, 3, 5), targets=TARGETS, reduction="sum"),
        case((2, 3, 5), targets=TARGETS, reduction="none"), case((4, 3), targets=np.array([2, 0, 1, 2])),
        case((2, 3, 5), targets=TARGETS, ignore_index=2), case((2, 3, 5), targets=TARGETS, ignore_index=2, reduction="sum"),
        case((2, 3, 5), targets=TARGETS, ignore_index=2, reduction="none")), ref=_cross_entropy_ref),
    Op("normal_cdf", lambda x: REG["normal_cdf"].apply(x), UNARY, ref=lambda x: 0.5 * (1 + _erf(x / math.sqrt(2)))),
    Op("gelu", lambda x, approximate: F.gelu(x, approximate=approximate),
       (case((5,), approximate="tanh"), case((3, 4), approximate="tanh"), case((2, 1, 3), approximate="tanh"),
        case((5,), approximate="none"), case((3, 4), approximate="none"), case((2, 1, 3), approximate="none")),
       ref=_gelu_ref),
    Op("layer_norm", lambda x, w, b: F.layer_norm(x, w, b),
       (case((3, 5), (5,), (5,)), case((2, 3, 5), (5,), (5,)), case((2, 1, 4), (4,), (4,)), case((1, 2, 2, 3), (3,), (3,))),
       ref=_layer_norm_ref),
    Op("layer_norm_no_affine", lambda x: F.layer_norm(x, None, None, eps=1e-3),
       (case((3, 5)), case((2, 3, 4)), case((2, 1, 2))), ref=lambda x: _layer_norm_ref(x, 1.0, 0.0, eps=1e-3), op="layer_norm"),
    Op("embedding", lambda w, ids: F.embedding(ids, w),
       (case((5, 3), ids=IDS), case((6, 4), ids=np.array([3, 3, 3, 0])), case((5, 1), ids=IDS[0])),
       ref=lambda w, ids: w[ids]),
    Op("linear", lambda x, w, b: F.linear(x, w, b),
       (case((2, 3, 4), (4, 5), (5,)), case((3, 4), (4, 2), (2,)), case((2, 1, 4), (4, 3), (3,))),
       ref=lambda x, w, b: x @ w + b),
    Op("linear_nobias", lambda x, w: F.linear(x, w),
       (case((2, 3, 4), (4, 5)), case((3, 4), (4, 2)), case((4,), (4, 3))), ref=lambda x, w: x @ w, op="linear"),
    Op("dropout", lambda x, p: fixed_dropout(x, p), (case((3, 4), p=0.5), case((2, 3, 4), p=0.25), case((5,), p=0.1))),
    Op("sdpa", lambda q, k, v, causal: F.scaled_dot_product_attention(q, k, v, causal=causal),
       (case((2, 3, 4), (2, 3, 4), (2, 3, 4), causal=True), case((2, 3, 4), (2, 3, 4), (2, 3, 4), causal=False),
        case((2, 2, 4), (2, 5, 4), (2, 5, 3), causal=True), case((2, 2, 4), (2, 5, 4), (2, 5, 3), causal=False),
        case((1, 2, 3, 2), (1, 2, 4, 2), (1, 2, 4, 3), causal=True),
        case((2, 3, 2), (1, 4, 2), (1, 4, 3), causal=True), case((3, 2), (2, 1, 3, 2), (3, 2), causal=False)),
       ref=_attention_ref, op="scaled_dot_product_attention"),
]


# ------------------------------------------------------------------------ inputs
def seed_for(*parts: str) -> int:
    return zlib.crc32("/".join(parts).encode())


def _values(domain: str, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    kind = domain.removeprefix("const").lstrip("_") or "any"
    if kind == "any":
        return rng.uniform(-2, 2, shape)
    if kind == "pos":
        return rng.uniform(0.5, 2, shape)
    if kind == "nonzero":  # away from the kink / pole at 0
        n = int(np.prod(shape))  # both signs whenever n > 1; a lone element is positive
        signs = rng.permutation(np.where(np.arange(n) % 2 == 0, 1.0, -1.0)) if n > 1 else np.ones(n)
        return (signs * rng.uniform(0.3, 1.5, n)).reshape(shape)
    if kind == "distinct":  # a shuffled grid 0.25 apart: no ties, gaps far above eps
        n = int(np.prod(shape))
        return ((rng.permutation(n) - n / 2) * 0.25 + rng.uniform(0, 0.05, n)).reshape(shape)
    raise ValueError(domain)


def _noncontiguous(a: np.ndarray) -> np.ndarray:
    """The same values, non-contiguous: built with the shape reversed and viewed through .T, else strided."""
    if a.ndim >= 2:
        t = np.ascontiguousarray(a.T).T
        if not t.flags.c_contiguous:
            return t
    if a.size <= 1:
        return a  # one element is contiguous in every layout
    base = np.zeros(a.shape[:-1] + (2 * a.shape[-1],))
    base[..., ::2] = a
    return base[..., ::2]


def make_inputs(op: Op, c: Case, layout: str) -> list:
    """Float64 leaf Tensors (requires_grad) or, for "const" domains, plain NumPy arrays."""
    rng = np.random.default_rng(seed_for(op.name, c.id))
    domains = op.domain if isinstance(op.domain, tuple) else (op.domain,) * len(c.shapes)
    assert len(domains) == len(c.shapes), f"{op.name}: {len(domains)} domains for {len(c.shapes)} inputs"
    inputs = []
    for dom, shape in zip(domains, c.shapes):
        a = _values(dom, shape, rng)
        if layout == "noncontig":
            a = _noncontiguous(a)
        x = a if dom.startswith("const") else Tensor(a, requires_grad=True, dtype=np.float64)
        if layout == "noncontig":  # the op really sees a non-contiguous .data
            assert a.size <= 1 or not (x.data if isinstance(x, Tensor) else x).flags.c_contiguous
        inputs.append(x)
    return inputs


def outputs(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)
