"""Products of derivatives, with the signatures and return conventions of `torch.autograd.functional`.

    vjp(f, x, v)       -> (f(x), v^T J)         one backward pass
    jvp(f, x, v)       -> (f(x), J v)           the double-vjp trick: two backward passes
    vhp(f, x, v)       -> (f(x), v^T H)         backward of backward
    hvp(f, x, v)       -> (f(x), H v)           the double-vjp trick on the gradient
    jacobian(f, x)     -> J                     one backward pass per output element
    hessian(f, x)      -> H                     one backward pass per input element, through the gradient

`inputs` is a Tensor or a tuple of Tensors, and each result keeps that form (a tuple of tuples for
jacobian and hessian when both sides are tuples). The inputs need not require grad: each function
works on fresh leaves with the same values. Results are detached unless create_graph=True; with it
they carry a graph back to the original inputs. strict=True makes an output that does not depend
on an input an error, instead of a zero.

Forward-mode products (jvp, hvp) use the double-vjp trick: g(u) = J^T u is linear in a dummy
cotangent u, so differentiating g . v with respect to u gives J v. It needs every backward to be
differentiable, which tinygrad_lite's are (each is written in Tensor ops).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..state import enable_grad
from ..tensor import Tensor
from . import grad

__all__ = ["vjp", "jvp", "vhp", "hvp", "jacobian", "hessian"]


# ------------------------------------------------------------------ structure helpers
def _as_tuple(x, what: str, fn_name: str) -> tuple[bool, tuple]:
    """(was it a tuple, the Tensors as a tuple), checking each is a float Tensor."""
    is_tuple = isinstance(x, (tuple, list))
    xs = tuple(x) if is_tuple else (x,)
    for i, t in enumerate(xs):
        if not isinstance(t, Tensor):
            raise TypeError(f"{fn_name}: {what} must be a Tensor or a tuple of Tensors, but {what}[{i}] is "
                            f"{type(t).__name__}")
    return is_tuple, xs


def _prepare(xs: tuple, create_graph: bool) -> tuple:
    """Leaves to differentiate with respect to: with create_graph, a differentiable identity of each input
    (results stay connected to the caller's graph); otherwise a fresh leaf with the same values."""
    if create_graph:
        return tuple(x.reshape(x.shape) if x.requires_grad else Tensor(x.data, True, x.dtype) for x in xs)
    return tuple(Tensor(x.data, requires_grad=x.dtype.kind == "f", dtype=x.dtype) for x in xs)


def _call(func: Callable, xs: tuple, fn_name: str) -> tuple[bool, tuple]:
    with enable_grad():
        out = func(*xs)
    return _as_tuple(out, "the output of func", fn_name)


def _grads(outs, xs, seeds, create_graph: bool, strict: bool, fn_name: str, retain_graph: bool | None = None):
    """grad(outs, xs, seeds) with zeros (or, if strict, an error) for an input the outputs do not reach."""
    live = [(o, s) for o, s in zip(outs, seeds) if o is not None and o.requires_grad]
    found = grad([o for o, _ in live], xs, [s for _, s in live], retain_graph=retain_graph,
                 create_graph=create_graph, allow_unused=True) if live else (None,) * len(xs)
    result = []
    for i, (x, g) in enumerate(zip(xs, found)):
        if g is None:
            if strict:
                raise RuntimeError(f"{fn_name}: the output does not depend on input {i} (strict=True)")
            g = Tensor(np.zeros(x.shape, x.dtype), dtype=x.dtype)
        result.append(g)
    return tuple(result)


def _vectors(v, like: tuple, what: str, fn_name: str) -> tuple:
    """The vectors v, one per Tensor of `like` with its shape; None only for a single one-element Tensor."""
    if v is None:
        if len(like) != 1 or like[0].size != 1:
            raise RuntimeError(f"{fn_name}: v can be None only when the {what} is a single one-element Tensor")
        return (Tensor(np.ones(like[0].shape, like[0].dtype), dtype=like[0].dtype),)
    _, vs = _as_tuple(v, "v", fn_name)
    if len(vs) != len(like):
        raise RuntimeError(f"{fn_name}: v has {len(vs)} Tensors, the {what} has {len(like)}")
    for i, (a, b) in enumerate(zip(vs, like)):
        if a.shape != b.shape:
            raise RuntimeError(f"{fn_name}: v[{i}] has shape {a.shape}, the {what}[{i}] has shape {b.shape}")
    return vs


def _finish(ts: tuple, is_tuple: bool, create_graph: bool):
    """Detach unless create_graph; a tuple or a lone Tensor, as the caller gave."""
    ts = tuple(t if create_graph else Tensor(t.data, dtype=t.dtype) for t in ts)
    return ts if is_tuple else ts[0]


def _dummies(outs: tuple) -> tuple:
    """Zero cotangents u, one per output, that require grad: the variable of the double-vjp trick."""
    return tuple(Tensor(np.zeros(o.shape, o.dtype), requires_grad=True, dtype=o.dtype) for o in outs)


def _gradient(func: Callable, xs: tuple, create_graph: bool, strict: bool, fn_name: str):
    """(the leaves, func's one-element output, its gradient g recorded as a graph) for the second-order
    products: vhp, hvp and hessian all differentiate g again."""
    xs = _prepare(xs, create_graph)
    _, outs = _call(func, xs, fn_name)
    if len(outs) != 1 or outs[0].size != 1:
        raise RuntimeError(f"{fn_name}: func must return a single Tensor with one element, got shapes "
                           f"{[o.shape for o in outs]}")
    out = outs[0]
    return xs, out, _grads([out], xs, [Tensor(np.ones(out.shape, out.dtype), dtype=out.dtype)], True, strict, fn_name)


# ------------------------------------------------------------------ the products
def vjp(func: Callable, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), v^T J): the vector-Jacobian product, one backward pass."""
    in_tuple, xs = _as_tuple(inputs, "inputs", "vjp")
    xs = _prepare(xs, create_graph)
    out_tuple, outs = _call(func, xs, "vjp")
    vs = _vectors(v, outs, "output", "vjp")
    return _finish(outs, out_tuple, create_graph), _finish(_grads(outs, xs, vs, create_graph, strict, "vjp"),
                                                          in_tuple, create_graph)


def jvp(func: Callable, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), J v): the Jacobian-vector product, by the double-vjp trick (two backward passes):
    g(u) = J^T u is linear in u, so d(g . v)/du = J v."""
    in_tuple, xs = _as_tuple(inputs, "inputs", "jvp")
    vs = _vectors(v, xs, "input", "jvp")
    xs = _prepare(xs, create_graph)
    out_tuple, outs = _call(func, xs, "jvp")
    us = _dummies(outs)
    g = _grads(outs, xs, us, True, strict, "jvp")  # J^T u, recorded as a function of u
    jv = _grads([gi for gi in g], us, vs, create_graph, strict, "jvp")
    return _finish(outs, out_tuple, create_graph), _finish(jv, out_tuple, create_graph)


def vhp(func: Callable, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), v^T H), func returning one element: the gradient's vjp (backward of backward)."""
    in_tuple, xs = _as_tuple(inputs, "inputs", "vhp")
    vs = _vectors(v, xs, "input", "vhp")
    xs, out, g = _gradient(func, xs, create_graph, strict, "vhp")
    return _finish((out,), False, create_graph), _finish(_grads(g, xs, vs, create_graph, strict, "vhp"),
                                                         in_tuple, create_graph)


def hvp(func: Callable, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), H v), func returning one element: the double-vjp trick on the gradient g = grad f
    (H^T u = d(g . u)/dx is linear in u; its vjp with v is H v). Equals vhp for a twice continuously
    differentiable func, whose Hessian is symmetric."""
    in_tuple, xs = _as_tuple(inputs, "inputs", "hvp")
    vs = _vectors(v, xs, "input", "hvp")
    xs, out, g = _gradient(func, xs, create_graph, strict, "hvp")
    us = _dummies(g)
    ht_u = _grads(g, xs, us, True, strict, "hvp")  # H^T u
    return _finish((out,), False, create_graph), _finish(_grads(ht_u, us, vs, create_graph, strict, "hvp"),
                                                         in_tuple, create_graph)


def jacobian(func: Callable, inputs, create_graph: bool = False, strict: bool = False):
    """The Jacobian of func at inputs: for output i and input j, a Tensor of shape out_i.shape + in_j.shape
    (J[i][j]; J[i] or J[j] when one side is a single Tensor; J when both are). One backward per output element."""
    in_tuple, xs = _as_tuple(inputs, "inputs", "jacobian")
    xs = _prepare(xs, create_graph)
    out_tuple, outs = _call(func, xs, "jacobian")
    return _jacobian_of(outs, xs, out_tuple, in_tuple, create_graph, strict, "jacobian")


def hessian(func: Callable, inputs, create_graph: bool = False, strict: bool = False):
    """The Hessian of func (one element) at inputs: H[i][j] of shape in_i.shape + in_j.shape (H when
    inputs is a single Tensor): the Jacobian of the gradient, one backward per input element."""
    in_tuple, xs = _as_tuple(inputs, "inputs", "hessian")
    xs, _, g = _gradient(func, xs, create_graph, strict, "hessian")
    return _jacobian_of(g, xs, in_tuple, in_tuple, create_graph, strict, "hessian")


def _jacobian_of(outs: tuple, xs: tuple, out_tuple: bool, in_tuple: bool, create_graph: bool, strict: bool,
                 fn_name: str):
    """rows[i][j][r] = d outs[i].flat[r] / d xs[j], each row one backward pass seeded with a one-hot."""
    blocks = []
    for o in outs:
        rows = [[] for _ in xs]
        for r in range(o.size):
            onehot = np.zeros(o.size, o.dtype)
            onehot[r] = 1.0
            seed = Tensor(onehot.reshape(o.shape), dtype=o.dtype)
            for j, g in enumerate(_grads([o], xs, [seed], create_graph, strict, fn_name, retain_graph=True)):
                rows[j].append(g)
        blocks.append(tuple(_stack_rows(rs, o.shape, x.shape, x.dtype, create_graph) for rs, x in zip(rows, xs)))
    per_out = tuple(b if in_tuple else b[0] for b in blocks)
    return per_out if out_tuple else per_out[0]


def _stack_rows(rows: list, out_shape: tuple, in_shape: tuple, dtype, create_graph: bool) -> Tensor:
    if not rows:  # an empty output: a (0, ...) Jacobian
        return Tensor(np.zeros(out_shape + in_shape, dtype), dtype=dtype)
    if create_graph:
        return Tensor.stack(rows, 0).reshape(out_shape + in_shape)
    return Tensor(np.stack([r.data for r in rows]).reshape(out_shape + in_shape), dtype=dtype)
