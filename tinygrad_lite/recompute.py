"""Activation recomputation: trade compute for memory by running a piece of the forward twice.

    y = recompute(block, x)           # instead of y = block(x)

(PyTorch calls it activation checkpointing, `torch.utils.checkpoint.checkpoint`; `checkpoint` is kept as
an alias of `recompute`. This project says "recompute" so that "checkpoint" means a saved training run.)

The forward of `block` runs as usual, but its activations are dropped at once: the graph keeps one
node, `Recompute`, holding only `block`, its inputs and its output. When backward reaches that node it
runs `block` again, with the random generators it used (`rngs`) wound back to the same state so that
dropout draws the same masks, and backpropagates through the fresh graph. The gradients are those of
the plain run, bit for bit; the peak memory holds one block's activations instead of all of them.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from . import functional as F
from .autograd import grad
from .backprop import toposort
from .function import Function
from .state import enable_grad, is_grad_enabled
from .tensor import Tensor


class Recompute(Function):
    """One node standing for fn(*args): its backward runs fn again and backpropagates through it."""
    name = "recompute"

    @staticmethod
    def forward(ctx, out, call, *inputs):  # the output was computed by recompute(); keep only what reruns it
        ctx.call = call
        return out

    @staticmethod
    def backward(ctx, g):
        fn, args, params, states = ctx.call
        n = sum(isinstance(a, Tensor) for a in args)
        create_graph = is_grad_enabled()  # on inside a backward pass that records its own graph
        if create_graph:  # the rerun hangs off the inputs themselves, so a second derivative reaches them
            fresh = list(args)
            _check_no_shared_params(args, params)
        else:  # fresh leaves: the rerun's backward stops at them, wherever the inputs came from
            fresh = [Tensor(a.data, requires_grad=a.requires_grad, dtype=a.dtype) if isinstance(a, Tensor)
                     else a for a in args]
        with _wound_back(states), enable_grad():
            out = fn(*fresh)
        wrt = [a for a in fresh if isinstance(a, Tensor)] + list(params)
        need = [x.requires_grad for x in wrt]
        found = grad([out], [x for x, nd in zip(wrt, need) if nd], [g], create_graph=create_graph,
                     allow_unused=True)
        it = iter(found)
        grads = [next(it) if nd else None for nd in need]
        assert len(grads) == n + len(params)
        return (None, None, *grads)


def recompute(fn: Callable, *args, rngs: Sequence[np.random.Generator] = ()) -> Tensor:
    """fn(*args), recomputed during backward instead of keeping its activations (PyTorch's checkpoint).

    fn returns one Tensor. Its parameters (leaf Tensors it uses that require grad) are found from its
    graph. `rngs`: the numpy Generators fn draws from (dropout); their state is saved and restored for
    the rerun, as is that of tinygrad_lite.functional's default generator. Outside grad mode this is
    just fn(*args).
    """
    if not is_grad_enabled():
        return fn(*args)
    gens = list(rngs) + [F._default_rng]
    states = [(gen, gen.bit_generator.state) for gen in gens]
    probe = [Tensor(a.data, requires_grad=a.requires_grad, dtype=a.dtype) if isinstance(a, Tensor) else a
             for a in args]
    out = fn(*probe)
    if not isinstance(out, Tensor):
        raise TypeError(f"recompute: fn must return one Tensor, got {type(out).__name__}")
    mine = {id(p) for p in probe if isinstance(p, Tensor)}
    params = [t for t in toposort([out]) if t._ctx is None and t.requires_grad and id(t) not in mine]
    value = out.data
    del out, probe  # the activations go here: nothing refers to fn's graph any more
    tensors = [a for a in args if isinstance(a, Tensor)]
    return Recompute.apply(value, (fn, args, params, states), *tensors, *params)


checkpoint = recompute  # PyTorch's name (torch.utils.checkpoint), and DESIGN.md's


def _check_no_shared_params(args, params) -> None:
    """With create_graph the rerun's backward would also follow a parameter of fn that the inputs were
    computed from, counting that path twice; refuse it (plain backward passes have no such limit)."""
    below = {id(t) for t in toposort([a for a in args if isinstance(a, Tensor) and a.requires_grad])}
    shared = [p for p in params if id(p) in below]
    if shared:
        raise NotImplementedError(f"recompute with create_graph=True: fn uses a parameter (shape {shared[0].shape}) "
                                  f"that its inputs were also computed from; recompute a smaller piece")


class _wound_back:
    """Set each generator to its saved state for a `with` block, then back to where it was."""

    def __init__(self, states):
        self.states = states

    def __enter__(self):
        self.now = [(gen, gen.bit_generator.state) for gen, _ in self.states]
        for gen, state in self.states:
            gen.bit_generator.state = state

    def __exit__(self, *exc):
        for gen, state in self.now:
            gen.bit_generator.state = state
