"""Finite-difference gradient checking, with the semantics of torch.autograd.gradcheck.

For every input x_k of `fn` that is a floating-point Tensor with requires_grad=True, and every output y_j,
the analytical Jacobian dy_j/dx_k (from backward passes) is compared with the numerical one from central
differences, entry by entry in np.allclose's form:

    J_num[r, c] = (y_r(x + eps e_c) - y_r(x - eps e_c)) / (2 eps)
    pass  <=>   |J_ana - J_num| <= atol + rtol * |J_num|

The full check (default) compares the whole Jacobian -- one backward per output element, two forwards per
input element -- so it covers every possible upstream gradient, including the random non-uniform ones the
project asks ops to be checked with. `projections=True` (PyTorch's fast_mode; nothing to do with
`tinygrad_lite.fast`) compares one random projection v^T J u per (input, output) pair (u a random unit
vector over the input, v a random unit vector over the output, or `grad_outputs`): two forwards per input
and one backward per output. On a mismatch it falls back to the full check of that input, so the error
still names the element. Inputs must be leaf Tensors (their `.grad` is read).
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..state import enable_grad, no_grad
from ..tensor import Tensor

Jacobians = dict[int, list[np.ndarray]]  # input index -> one (out.size, in.size) float64 matrix per output


class GradcheckError(RuntimeError):
    """Analytical and numerical gradients disagree (or backward broke a rule); fields say where and by how much."""

    def __init__(self, message: str, input_index: int | None = None, output_index: int | None = None,
                 element: tuple[int, ...] | None = None, output_element: tuple[int, ...] | None = None,
                 numerical: float | None = None, analytical: float | None = None,
                 abs_err: float | None = None, rel_err: float | None = None, tol: float | None = None):
        super().__init__(message)
        self.input_index, self.output_index = input_index, output_index
        self.element, self.output_element = element, output_element  # multi-dim indices into input / output
        self.numerical, self.analytical = numerical, analytical
        self.abs_err, self.rel_err, self.tol = abs_err, rel_err, tol


def _is_checked(x: Any) -> bool:
    return isinstance(x, Tensor) and x.requires_grad and np.issubdtype(x.data.dtype, np.floating)


def _describe(inputs: Sequence[Any], k: int) -> str:
    x, name = inputs[k], getattr(inputs[k], "name", None)
    return f"input {k} {name!r} (shape {x.data.shape})" if name else f"input {k} (shape {x.data.shape})"


def _run(fn: Callable[..., Any], inputs: Sequence[Any]) -> tuple[Tensor, ...]:
    """fn(*inputs) as a tuple of floating-point output Tensors."""
    out = fn(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    for j, o in enumerate(outs):
        if not (isinstance(o, Tensor) and np.issubdtype(o.data.dtype, np.floating)):
            raise TypeError(f"gradcheck: fn must return a floating-point Tensor or a tuple of them; "
                            f"output {j} is {type(o).__name__} with dtype {getattr(o, 'dtype', None)}")
    return outs


def _values(fn: Callable[..., Any], inputs: Sequence[Any]) -> list[np.ndarray]:
    """The outputs of fn as float64 copies, computed without recording a graph."""
    with no_grad():
        return [o.data.astype(np.float64) for o in _run(fn, inputs)]


@contextmanager
def _keep_grads(inputs: Sequence[Any]) -> Iterator[None]:
    """Give every Tensor input back the very `.grad` object it had on entry."""
    saved = [(x, x.grad) for x in inputs if isinstance(x, Tensor)]
    try:
        yield
    finally:
        for x, g in saved:
            x.grad = g


def _indices(inputs: Sequence[Any], indices: Sequence[int] | None) -> list[int]:
    return [k for k in range(len(inputs)) if _is_checked(inputs[k])] if indices is None else list(indices)


def numerical_jacobian(fn: Callable[..., Any], inputs: Sequence[Any], eps: float = 1e-6,
                       indices: Sequence[int] | None = None) -> Jacobians:
    """Central-difference Jacobians d fn(*inputs)[j] / d inputs[k], perturbing each input's data in place."""
    out_sizes = [y.size for y in _values(fn, inputs)]
    jac: Jacobians = {}
    for k in _indices(inputs, indices):
        x = inputs[k].data
        jac[k] = [np.zeros((n, x.size)) for n in out_sizes]
        for col, c in enumerate(np.ndindex(x.shape)):
            old = x[c]  # a NumPy scalar of x's dtype: writing it back restores the exact bits
            try:
                x[c] = old + eps
                hi, plus = x[c], _values(fn, inputs)
                x[c] = old - eps
                lo, minus = x[c], _values(fn, inputs)
            finally:
                x[c] = old
            step = float(hi) - float(lo)  # 2 eps, as actually representable in x's dtype
            if step == 0.0:
                raise ValueError(f"gradcheck: eps={eps} is lost to rounding at element {c} of "
                                 f"{_describe(inputs, k)} (value {old}, dtype {x.dtype}); use float64 or a larger eps")
            for j, (p, m) in enumerate(zip(plus, minus)):
                jac[k][j][:, col] = (p - m).ravel() / step  # dy/dx_c ~= (y(x+h) - y(x-h)) / 2h
    return jac


def _backward_grads(y: Tensor, inputs: Sequence[Any], j: int, g: np.ndarray) -> dict[int, np.ndarray]:
    """Backprop upstream gradient g from output y = fn(*inputs)[j], keeping the graph for the next call.

    Returns {k: g . dy/dx_k} in float64 for every checked input k; a missing gradient (None) counts as zero.
    A gradient of the wrong shape or dtype, a backward that raises, or one that writes into its upstream
    gradient is a GradcheckError.
    """
    checked = _indices(inputs, None)
    for k in checked:
        inputs[k].grad = None
    if y.requires_grad:  # else no graph: every gradient is zero
        g_before = g.copy()
        try:  # g itself, not a copy, is the seed: a backward that writes into it is seen below
            y.backward(Tensor(g, dtype=g.dtype), retain_graph=True)
        except Exception as e:
            hint = ("; a backward must not modify its upstream gradient in place (the engine may share it "
                    "with other nodes, so it hands it out read-only)") if "read-only" in str(e) else ""
            raise GradcheckError(f"gradcheck: backward from output {j} raised {type(e).__name__}: {e}{hint}",
                                 output_index=j) from e
        if not np.array_equal(g, g_before):
            raise GradcheckError(f"gradcheck: backward from output {j} modified its upstream gradient in place",
                                 output_index=j)
    grads = {}
    for k in checked:
        x, gk = inputs[k], inputs[k].grad
        if gk is None:
            grads[k] = np.zeros(x.data.shape)
        elif not isinstance(gk, np.ndarray) or gk.shape != x.data.shape or gk.dtype != x.data.dtype:
            raise GradcheckError(
                f"gradcheck: the gradient of {_describe(inputs, k)} from output {j} has shape "
                f"{getattr(gk, 'shape', None)} and dtype {getattr(gk, 'dtype', type(gk).__name__)}; "
                f"expected shape {x.data.shape} and dtype {x.data.dtype}", input_index=k, output_index=j)
        else:
            grads[k] = gk.astype(np.float64)
    return grads


def analytical_jacobian(fn: Callable[..., Any], inputs: Sequence[Any],
                        indices: Sequence[int] | None = None) -> Jacobians:
    """Backprop Jacobians: row r of d fn(*inputs)[j] / d inputs[k] is the gradient for upstream one-hot e_r."""
    ks = _indices(inputs, indices)
    with _keep_grads(inputs):
        outs = _run(fn, inputs)  # one forward; its graph is kept across the backward passes
        jac: Jacobians = {k: [np.zeros((y.data.size, inputs[k].data.size)) for y in outs] for k in ks}
        for j, y in enumerate(outs):
            for r in range(y.data.size):
                g = np.zeros(y.data.shape, y.data.dtype)
                g.flat[r] = 1.0
                grads = _backward_grads(y, inputs, j, g)
                for k in ks:
                    jac[k][j][r] = grads[k].ravel()
    return jac


def _compare(num: np.ndarray, ana: np.ndarray, inputs: Sequence[Any], k: int, j: int,
             out_shape: tuple[int, ...], atol: float, rtol: float) -> None:
    """Raise GradcheckError naming the worst entry where |ana - num| > atol + rtol |num| (NaN never passes)."""
    err, tol = np.abs(ana - num), atol + rtol * np.abs(num)
    excess = np.where(np.isnan(err), np.inf, err - tol)
    bad = excess > 0
    if not bad.any():
        return
    r, c = np.unravel_index(int(np.argmax(excess)), excess.shape)
    element = tuple(int(i) for i in np.unravel_index(c, inputs[k].data.shape))
    out_element = tuple(int(i) for i in np.unravel_index(r, out_shape))
    n, a, e, t = float(num[r, c]), float(ana[r, c]), float(err[r, c]), float(tol[r, c])
    rel = e / abs(n) if n != 0 else float("inf")
    raise GradcheckError(
        f"gradcheck: gradient mismatch for {_describe(inputs, k)}, output {j}, at input element {element} "
        f"(output element {out_element}): numerical {n:.10g}, analytical {a:.10g}, abs err {e:.3g}, "
        f"rel err {rel:.3g} > tolerance {t:.3g} (atol {atol:g} + rtol {rtol:g} * |numerical|); "
        f"{int(bad.sum())} of {bad.size} Jacobian entries out of tolerance",
        input_index=k, output_index=j, element=element, output_element=out_element,
        numerical=n, analytical=a, abs_err=e, rel_err=rel, tol=t)


def _full_check(fn: Callable[..., Any], inputs: Sequence[Any], ks: list[int], eps: float, atol: float,
                rtol: float) -> None:
    out_shapes = [y.shape for y in _values(fn, inputs)]
    ana = analytical_jacobian(fn, inputs, ks)
    for k in ks:
        num = numerical_jacobian(fn, inputs, eps, [k])[k]
        for j, shape in enumerate(out_shapes):
            _compare(num[j], ana[k][j], inputs, k, j, shape, atol, rtol)


def _projection_failures(fn: Callable[..., Any], inputs: Sequence[Any], ks: list[int], eps: float, atol: float,
                         rtol: float, vs: list[np.ndarray], rng: np.random.Generator) -> list[int]:
    """Inputs k for which some v_j^T J_jk u_k differs numerically vs analytically (PyTorch's fast_mode)."""
    steps, num = {}, {}
    for k in ks:
        x = inputs[k].data
        u = rng.random(x.shape)
        u /= max(float(np.linalg.norm(u)), 1e-300)  # random unit vector, non-negative entries
        orig = x.copy()
        try:
            x[...] = orig + eps * u
            hi, plus = x.astype(np.float64), _values(fn, inputs)
            x[...] = orig - eps * u
            lo, minus = x.astype(np.float64), _values(fn, inputs)
        finally:
            np.copyto(x, orig)  # exact restore
        steps[k] = (hi - lo) / (2 * eps)  # = u up to rounding in x's dtype; both sides use the same step
        num[k] = [float(v.ravel() @ ((p - m).ravel() / (2 * eps))) for v, p, m in zip(vs, plus, minus)]
    failed: set[int] = set()
    with _keep_grads(inputs):
        outs = _run(fn, inputs)
        for j, v in enumerate(vs):
            grads = _backward_grads(outs[j], inputs, j, v)
            for k in ks:
                a, n = float(grads[k].ravel() @ steps[k].ravel()), num[k][j]
                # entrywise atol maps to atol * sum|u| * sum|v| for the projection (PyTorch's adjusted atol)
                tol = atol * float(np.abs(steps[k]).sum()) * float(np.abs(v).sum()) + rtol * abs(n)
                if not abs(a - n) <= tol:
                    failed.add(k)
    return [k for k in ks if k in failed]


def _upstream(grad_outputs: Any, outs: tuple[Tensor, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """One upstream gradient v per output, in the output's dtype: the given ones, or random unit vectors."""
    if grad_outputs is None:
        vs = [rng.random(y.data.shape) for y in outs]
        vs = [v / max(float(np.linalg.norm(v)), 1e-300) for v in vs]  # non-negative entries, like u
    else:
        given = grad_outputs if isinstance(grad_outputs, (tuple, list)) else (grad_outputs,)
        if len(given) != len(outs):
            raise ValueError(f"gradcheck: got {len(given)} grad_outputs for {len(outs)} outputs")
        vs = [np.asarray(g.data if isinstance(g, Tensor) else g) for g in given]
        for j, (v, y) in enumerate(zip(vs, outs)):
            if v.shape != y.data.shape:
                raise ValueError(f"gradcheck: grad_outputs[{j}] has shape {v.shape}; "
                                 f"output {j} has shape {y.data.shape}")
    return [v.astype(y.data.dtype) for v, y in zip(vs, outs)]


def gradcheck(fn: Callable[..., Any], inputs: Sequence[Any] | Tensor, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, projections: bool = False, grad_outputs: Any = None, seed: int = 0,
              raise_exception: bool = True, *, fast: bool | None = None) -> bool:
    """Check fn's backward against central differences; True, or GradcheckError (False if not raise_exception).

    fn(*inputs) -> Tensor or tuple of Tensors. Only floating-point Tensor inputs with requires_grad=True
    are checked; other inputs are passed through. Each input's `.data` and `.grad` are restored exactly.
    projections=True checks random projections v^T J u (v = `grad_outputs` if given: one array per output),
    falling back to the full check for any input whose projection disagrees; `seed` drives u and v.
    ``fast`` is the old name of ``projections``.
    """
    projections = _projections(projections, fast)
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    ks = _indices(inputs, None)
    if not ks:
        raise ValueError("gradcheck: no input is a floating-point Tensor with requires_grad=True; nothing to check")
    if grad_outputs is not None and not projections:
        raise ValueError("gradcheck: grad_outputs only applies to projections=True; the full check compares the whole "
                         "Jacobian, which covers every upstream gradient")
    for k in ks:
        if not getattr(inputs[k], "is_leaf", True):
            raise ValueError(f"gradcheck: {_describe(inputs, k)} is not a leaf tensor (it was computed by an op), "
                             f"so backward leaves its .grad empty; pass a leaf: Tensor(x.data, requires_grad=True)")
        if inputs[k].data.dtype != np.float64:
            warnings.warn(f"gradcheck: {_describe(inputs, k)} has dtype {inputs[k].data.dtype}; finite "
                          f"differences are only reliable in float64", UserWarning, stacklevel=2)
    try:
        with _keep_grads(inputs):
            if projections:
                rng = np.random.default_rng(seed)
                with no_grad():
                    vs = _upstream(grad_outputs, _run(fn, inputs), rng)
                ks = _projection_failures(fn, inputs, ks, eps, atol, rtol, vs, rng)
            if ks:  # with projections: only the inputs whose projection failed; the full check has the last word
                _full_check(fn, inputs, ks, eps, atol, rtol)
    except GradcheckError:
        if raise_exception:
            raise
        return False
    return True


def gradgradcheck(fn: Callable[..., Any], inputs: Sequence[Any] | Tensor, grad_outputs: Any = None, eps: float = 1e-6,
                  atol: float = 1e-5, rtol: float = 1e-3, projections: bool = False, seed: int = 0,
                  raise_exception: bool = True, *, fast: bool | None = None) -> bool:
    """Check second derivatives against central differences (torch.autograd.gradgradcheck's semantics).

    The vector-Jacobian product of fn, vjp(x, v) = v^T dfn/dx (a backward pass recorded with
    create_graph=True), is itself checked with `gradcheck`, with respect to both the inputs x and the
    upstream gradients v. `grad_outputs` gives v (one array or Tensor per output); by default v is random,
    from `seed`. Every derivative of the backward pass is thus compared with finite differences of it.
    ``projections`` (old name ``fast``): as gradcheck's.
    """
    from ..autograd import grad

    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    with no_grad():
        outs = _run(fn, inputs)
    rng = np.random.default_rng(seed)
    if grad_outputs is None:
        vs = [rng.standard_normal(y.shape) for y in outs]  # random, non-uniform upstream gradients
    else:
        vs = [np.asarray(v.data if isinstance(v, Tensor) else v, dtype=np.float64) for v in
              (grad_outputs if isinstance(grad_outputs, (tuple, list)) else (grad_outputs,))]
        if len(vs) != len(outs) or any(v.shape != y.shape for v, y in zip(vs, outs)):
            raise ValueError(f"gradgradcheck: grad_outputs must give one array per output, of shapes "
                             f"{[y.shape for y in outs]}; got {[v.shape for v in vs]}")
    v_leaves = [Tensor(v, requires_grad=True, dtype=y.dtype) for v, y in zip(vs, outs)]
    ks = _indices(inputs, None)
    n = len(inputs)

    def vjp(*args):  # v^T dfn/dx as Tensors that depend on x and v; gradcheck's finite differences call it
        xs, v = args[:n], args[n:]  # under no_grad, and it needs the graph of fn all the same
        with enable_grad():
            ys = _run(fn, xs)
            live = [(y, vj) for y, vj in zip(ys, v) if y.requires_grad]
            grads = grad([y for y, _ in live], [xs[k] for k in ks], [vj for _, vj in live], create_graph=True,
                         allow_unused=True) if live else [None] * len(ks)
        return tuple(g if g is not None else Tensor(np.zeros(xs[k].shape), dtype=xs[k].dtype)
                     for g, k in zip(grads, ks))

    return gradcheck(vjp, inputs + tuple(v_leaves), eps=eps, atol=atol, rtol=rtol,
                     projections=_projections(projections, fast), seed=seed, raise_exception=raise_exception)


def _projections(projections: bool, fast: bool | None) -> bool:
    """The check by random projections is asked for by `projections`, or by its old name `fast`."""
    return projections if fast is None else bool(projections or fast)
