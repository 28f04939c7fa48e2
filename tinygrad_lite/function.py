"""Function: how an op is written, the op registry, and the math-first way to run backward.

An op is a `Function`: a `forward` on NumPy arrays and, right below it, a `backward` that maps the
gradient of the output, g = dL/d(out), to one gradient per input. `Function.apply` runs the forward
and, when some input requires a gradient, records a graph node: the output Tensor keeps the op's
`Context` (its inputs and what the forward saved) in `_ctx`, for backprop.py to walk.

Every built-in op is declared once, with `@register`, in the op registry `OPS`; the profiler and the
test tables are built from it.

What runs is what is written here: `apply` runs the op's own forward, and backprop.py its own
backward, unless fast mode is on (`tinygrad_lite.fast.enable()`), in which case `apply` runs the fast
kernel registered for the op, if there is one (`state.implementation`, read in `apply` and in
`run_backward` here, and by the optimizers' `step`).
"""
from __future__ import annotations

import weakref

import numpy as np

from . import backprop, observe, state

OPS: dict[str, type["Function"]] = {}  # the op registry: name -> Function, every differentiable built-in op


def register(fn: type["Function"]) -> type["Function"]:
    """Class decorator: declare a built-in op in the registry under `fn.name`."""
    if fn.name in OPS:
        raise ValueError(f"op {fn.name!r} is registered twice")
    OPS[fn.name] = fn
    return fn


class Context:
    """What an op's forward leaves for its backward (PyTorch's `ctx`).

    `save_for_backward(*arrays)` in the forward; `saved_tensors` in the backward gives them back as
    Tensors: an input as that very input Tensor, the output as the output Tensor (so a recorded
    backward stays connected to the graph), anything else as a constant. `needs_input_grad[i]`: does
    forward argument i require a gradient. Any other attribute may be set for the backward's use.
    """

    def __init__(self, fn: type["Function"], inputs: tuple, needs_input_grad: tuple, impl: type | None = None):
        self.fn, self.inputs, self.needs_input_grad = fn, inputs, needs_input_grad
        self.impl = impl or fn  # what ran the forward: the op itself, or (in fast mode) its fast kernel
        self.saved = ()
        self._out = None  # a weak reference to the output Tensor, once there is one

    def save_for_backward(self, *arrays) -> None:
        self.saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        out = self._out() if self._out is not None else None
        return tuple(self._as_tensor(a, out) for a in self.saved)

    def _as_tensor(self, a, out):
        if a is None:
            return None
        if out is not None and a is out.data:
            return out
        for x in self.inputs:
            if x is not None and a is x.data:
                return x
        return _any_tensor(self.inputs)._wrap(np.asarray(a), None)  # a constant

    def release(self) -> None:
        """Drop the saved arrays and the inputs (after backward, unless retain_graph)."""
        fn = self.fn
        self.__dict__.clear()
        self.fn, self.inputs = fn, None


def _any_tensor(args):
    """A Tensor among args: new Tensors are made by its `_wrap` (this module never names the Tensor class,
    which tensor.py builds on top of Function)."""
    for a in args:
        if hasattr(a, "_wrap"):
            return a
    raise TypeError("an op needs at least one Tensor argument; wrap arrays in Tensor(...)")


class Function:
    """An op: `forward(ctx, *args)` on NumPy arrays returns the output array; `backward(ctx, g)`
    returns one gradient per forward argument (None for an argument that needs none).

        class Cube(Function):
            @staticmethod
            def forward(ctx, x):          # NumPy arrays in, a NumPy array out
                ctx.save_for_backward(x)
                return x ** 3
            @staticmethod
            def backward(ctx, g):         # Tensors in: written in Tensor ops, it can be
                (x,) = ctx.saved_tensors  # differentiated again (create_graph=True)
                return 3 * x ** 2 * g
        y = Cube.apply(t)

    `apply(*args)` takes Tensors and any other values (axes, shapes, ...), which reach forward as
    they are. A backward that returns NumPy arrays works, but cannot be differentiated twice.
    """

    name: str = ""  # the op's name in the registry, the profiler and error messages

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.name = cls.__dict__.get("name") or cls.__name__.lower()

    @staticmethod
    def forward(ctx: Context, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        tensors, needs, arrays = [], [], []  # per argument: the Tensor or None, needs a gradient, the array
        for a in args:
            is_tensor = hasattr(a, "_wrap")
            tensors.append(a if is_tensor else None)
            needs.append(is_tensor and a.requires_grad)
            arrays.append(a.data if is_tensor else a)
        like = _any_tensor(args)
        record = state.local.grad_enabled and any(needs)
        impl = state.implementation(cls)  # this op's own forward, or in fast mode its kernel's
        ctx = Context(cls, tuple(tensors), tuple(needs), impl)
        if impl is not cls and record:
            ctx.args = arrays  # for math_context: the op's own backward needs its own forward's context
        try:
            out = observe.current.forward(ctx, ctx.impl, arrays)
        except ValueError as e:
            shapes = ", ".join(str(t.shape) for t in tensors if t is not None)
            raise ValueError(f"{cls.name}: {e} (input shapes {shapes})") from None
        if not isinstance(out, np.ndarray):
            if isinstance(out, (tuple, list)):
                raise TypeError(f"{cls.name}.forward returned a {type(out).__name__}; an op has one output array")
            scalar, out = out, np.asarray(out)  # a NumPy scalar (np.exp of a 0-d array): if the forward saved it,
            ctx.saved = tuple(out if a is scalar else a for a in ctx.saved)  # save the array the output wraps
        result = like._wrap(out, ctx if record else None)
        if record:
            ctx._out = weakref.ref(result)
        return result


# ------------------------------------------------------------------ the math-first gradient strategy
class MathGrads:
    """Gradients as Tensors; each op's backward is its math-first code, written in Tensor ops (backprop.py
    calls these methods). With create_graph those ops are recorded, and a leaf's `.grad` is a Tensor that
    carries the graph; without it they run under no_grad and `.grad` is a NumPy array, as usual."""

    def __init__(self, create_graph: bool = False):
        self.create_graph = create_graph
        self.held: set[int] = set()  # ids of arrays others hold: seeds, what hooks returned, each .grad set

    def start(self, g):  # the gradient a root starts with
        self.held.add(id(g.data))
        return g

    def node(self, ctx: Context, g):  # dL/d(inputs) of one op, from dL/d(output), watched by the tools
        ctx = math_context(ctx)
        grads = observe.current.backward(ctx, ctx.fn.backward, g)
        grads = grads if isinstance(grads, (tuple, list)) else (grads,)
        if self.create_graph:
            return tuple(_once_differentiable(ctx, x) for x in grads)
        return tuple(x if x is None or hasattr(x, "_wrap") else g._wrap(np.asarray(x), None) for x in grads)

    def add(self, total, g):  # gradients meeting at one Tensor are summed
        return g if total is None else total + g

    def tensor(self, g):  # as a Tensor (hooks and autograd.grad see Tensors)
        if self.create_graph:
            return g
        view = g.data.view()  # read-only: a backward may hand one array to several inputs, so a hook that
        view.flags.writeable = False  # wrote into it would change the others' gradients too
        return g._wrap(view, None)

    def from_hook(self, result, t):  # what a gradient hook on t returned, as a gradient
        if hasattr(result, "_wrap"):
            self.held.add(id(result.data))
            return result
        return t._wrap(np.array(result, dtype=t.dtype), None)

    def to_leaf(self, leaf, g) -> None:  # leaf.grad += g
        if self.create_graph:
            leaf.grad = g if leaf.grad is None else leaf.grad + g
            return
        g = g.data.astype(leaf.dtype, copy=False)
        if leaf.grad is not None:
            leaf.grad = leaf.grad + g
        else:  # an array of the leaf's own, as optimizers and all-reduces write .grad in place: g itself when it is
            #    a whole, writeable array no one else was given (a backward may hand one array to several inputs)
            mine = g.base is None and g.flags.writeable and g.flags.c_contiguous and id(g) not in self.held
            leaf.grad = g if mine else np.array(g, order="C")
        self.held.add(id(leaf.grad))


def math_context(ctx: Context) -> Context:
    """The context the op's own forward leaves, for its own backward: `ctx` itself, or, when a fast kernel
    ran the forward (the kernel keeps what its own backward needs), a new one from running the op's forward
    again on the same arguments. The recomputed output is replaced by the real one, so that a backward
    that reads it stays connected to the graph."""
    if ctx.impl is ctx.fn:
        return ctx
    new = Context(ctx.fn, ctx.inputs, ctx.needs_input_grad)
    out = ctx.fn.forward(new, *ctx.args)
    real = ctx._out() if ctx._out is not None else None
    if real is not None:
        new.saved = tuple(real.data if a is out else a for a in new.saved)
        new._out = ctx._out
    return new


def _once_differentiable(ctx: Context, g):
    """A gradient that a backward returned as a NumPy array while a graph is being built: a Tensor whose
    own backward explains that it cannot be differentiated again."""
    if g is None or hasattr(g, "_wrap"):
        return g
    return NotDifferentiable.apply(np.asarray(g), ctx.fn.name, *(x for x in ctx.inputs if x is not None))


class NotDifferentiable(Function):
    """The gradient of an op whose backward returned NumPy arrays: usable, not differentiable again."""
    name = "not_differentiable"

    @staticmethod
    def forward(ctx, g, op, *inputs):
        ctx.op = op
        return g

    @staticmethod
    def backward(ctx, gg):
        raise RuntimeError(f"the backward of op '{ctx.op}' returned NumPy arrays, so its gradient cannot be "
                           f"differentiated again; write that backward in Tensor ops to allow create_graph=True")


def run_backward(roots, seeds, retain_graph: bool, create_graph: bool, inputs=None) -> list:
    """backprop.backward with the math-first strategy, MathGrads; in fast mode, a pass that builds no graph
    runs its fast kernel instead (tinygrad_lite.fast's FastGrads: in-place sums, the kernels' backwards)."""
    grads = MathGrads(create_graph=True) if create_graph else state.implementation(MathGrads)()
    return backprop.backward(roots, seeds, grads, retain_graph, inputs)


def seed(t, gradient, where: str):
    """The gradient to start backpropagation from t with: ones for a one-element t, else the one given."""
    if gradient is None:
        if t.data.size != 1:
            raise RuntimeError(f"{where}() without a gradient needs a one-element tensor, but this one has shape "
                               f"{t.shape}; pass a gradient of shape {t.shape}")
        return t._wrap(np.ones_like(t.data), None)
    g = gradient if hasattr(gradient, "_wrap") else t._wrap(np.array(gradient, dtype=t.dtype), None)
    if g.dtype != t.dtype:
        g = g.astype(t.dtype)  # a differentiable cast, should g carry a graph
    if g.shape != t.shape:
        raise ValueError(f"{where}(gradient): the gradient has shape {g.shape}, expected {t.shape}")
    return g
