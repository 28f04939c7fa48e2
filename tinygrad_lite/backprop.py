"""Graph order and the chain rule: the backward pass, and nothing else.

A Tensor made by an op keeps its `Context` in `_ctx`: the op (`ctx.fn`), its inputs and what its
forward saved. The backward pass visits those Tensors from the output back to the leaves, each after
every Tensor that used it (reverse topological order), and applies the chain rule at each one:

    dL/d(input) += op.backward(dL/d(output))     for every input of the op

How a gradient is represented, computed and added is the job of a `grads` strategy (function.py's
`MathGrads`: Tensors, each op's own backward; in fast mode, `tinygrad_lite.fast`'s `FastGrads` for
passes that build no graph). With `grads.create_graph` the backward pass runs with grad mode on, so
the Tensor ops of every backward are recorded and the gradients can be differentiated again.
"""
from __future__ import annotations

from . import observe
from .state import set_grad_enabled


def toposort(roots, only_grad: bool = True) -> list:
    """The Tensors of the roots' graph, each after all of its inputs (iterative DFS, no recursion limit).

    only_grad: just those that need a gradient (the backward pass); else every op, leaf and constant."""
    # A Tensor is marked seen when it is expanded, not when pushed: marking at push time let one
    # reached first as a direct input be emitted before another of its consumers (in a + 2*a, `a`
    # came out before `2*a`, and the 2*a contribution was dropped).
    order, seen, stack = [], set(), [(r, False) for r in reversed(roots)]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        ctx = t._ctx
        inputs = ctx.inputs if ctx is not None and ctx.inputs is not None else ()
        for p in reversed(inputs):  # reversed: the first input is expanded first
            if p is not None and (p.requires_grad or not only_grad) and id(p) not in seen:
                stack.append((p, False))
    return order


def inputs_of(t) -> tuple:
    """The Tensor inputs of the op that made t (none for a leaf, or once backward has freed the graph)."""
    ctx = t._ctx
    return () if ctx is None or ctx.inputs is None else tuple(x for x in ctx.inputs if x is not None)


def backward(roots, seeds, grads, retain_graph: bool = False, inputs=None) -> list:
    """Backpropagate `seeds` (dL/d(root), one per root) through the graph of `roots`, with the `grads` strategy.

    inputs None: add dL/d(leaf) into `.grad` of every leaf that requires grad (Tensor.backward).
    inputs given: return [dL/d(x) for x in inputs] as Tensors (None where x is not reached), touching
    no `.grad` (autograd.grad). Each op's saved arrays are released after use unless retain_graph.
    """
    wanted = None if inputs is None else {id(x): i for i, x in enumerate(inputs)}
    found = [None] * (0 if inputs is None else len(inputs))
    with set_grad_enabled(grads.create_graph):
        order = toposort(roots)
        needed = None if wanted is None else _leading_to(order, wanted)
        pending: dict[int, object] = {}
        for r, s in zip(roots, seeds):
            pending[id(r)] = grads.add(pending.get(id(r)), grads.start(s))
        for t in reversed(order):
            g = pending.pop(id(t), None)
            if g is None:
                continue
            if t._hooks:
                g = _run_hooks(t, g, grads)
            if wanted is not None and id(t) in wanted:
                found[wanted[id(t)]] = grads.tensor(g)
            ctx = t._ctx
            if ctx is None:  # a leaf
                if wanted is None:
                    grads.to_leaf(t, g)
                continue
            if t._retain and wanted is None:
                grads.to_leaf(t, g)
            if needed is not None and id(t) not in needed:
                continue  # autograd.grad: no wanted Tensor lies below this one
            if ctx.inputs is None:
                raise RuntimeError(
                    f"backward through the graph a second time: the saved arrays of op '{ctx.fn.name}' were "
                    f"freed by the first backward; pass retain_graph=True to the first backward() to keep them")
            in_grads = _as_tuple(ctx, grads.node(ctx, g))
            for x, gx in zip(ctx.inputs, in_grads):  # the chain rule: sum over every use
                if gx is not None and x is not None and x.requires_grad \
                        and (needed is None or id(x) in needed or id(x) in wanted):
                    pending[id(x)] = grads.add(pending.get(id(x)), gx)
            if not retain_graph:
                ctx.release()  # free the saved activations as soon as they are used
    return found


def _leading_to(order: list, wanted: dict) -> set:
    """ids of the Tensors in `order` with a wanted Tensor among their inputs, or below them."""
    needed = set()
    for t in order:  # inputs before the Tensors made from them
        if any(id(x) in wanted or id(x) in needed for x in inputs_of(t)):
            needed.add(id(t))
    return needed


def _as_tuple(ctx, in_grads) -> tuple:
    """One gradient per forward input, each of its input's shape (an op of one input may return it bare)."""
    if not isinstance(in_grads, (tuple, list)):
        in_grads = (in_grads,)
    if len(in_grads) != len(ctx.inputs):
        raise RuntimeError(f"the backward of op '{ctx.fn.name}' returned {len(in_grads)} gradient(s); its forward "
                           f"took {len(ctx.inputs)} input(s): return one gradient (or None) per forward input")
    for i, (x, gx) in enumerate(zip(ctx.inputs, in_grads)):
        if gx is not None and x is not None and getattr(gx, "shape", None) != x.data.shape:
            raise RuntimeError(f"the backward of op '{ctx.fn.name}' returned a gradient of shape "
                               f"{getattr(gx, 'shape', None)} for input {i}, whose shape is {x.shape}")
    return in_grads


def _run_hooks(t, g, grads):
    """Call t's gradient hooks in registration order; a hook may return a replacement gradient."""
    for hook in list(t._hooks):  # a copy: a hook may remove itself
        result = observe.current.hook(t, hook, grads.tensor(g))
        if result is not None:
            shape = getattr(result, "shape", None)
            if shape != tuple(t.shape):
                op = t._ctx.fn.name if t._ctx is not None else "leaf"
                raise ValueError(f"a gradient hook on the output of op '{op}' returned shape {shape}, "
                                 f"expected the gradient's shape {tuple(t.shape)}")
            g = grads.from_hook(result, t)
    return g
