"""Reverse-mode differentiation, PyTorch's `torch.autograd` API: `grad` and `backward`.

`tinygrad_lite.autograd.functional` has the products built on them (vjp, jvp, hvp, hessian, jacobian).
"""
from __future__ import annotations

from typing import Sequence

from ..function import run_backward, seed
from ..tensor import Tensor

__all__ = ["grad", "backward"]


def _tensors(x, what: str) -> list[Tensor]:
    xs = [x] if isinstance(x, Tensor) else list(x)
    for i, t in enumerate(xs):
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}[{i}] must be a Tensor, got {type(t).__name__}")
    return xs


def _seeds(outputs: list[Tensor], grad_outputs, where: str) -> list[Tensor]:
    if grad_outputs is None:
        given = [None] * len(outputs)
    else:
        given = [grad_outputs] if isinstance(grad_outputs, Tensor) or not isinstance(grad_outputs, (list, tuple)) \
            else list(grad_outputs)
        if len(given) != len(outputs):
            raise ValueError(f"{where}: got {len(given)} grad_outputs for {len(outputs)} outputs")
    for i, out in enumerate(outputs):
        if not out.requires_grad:
            raise RuntimeError(f"{where}: output {i} does not require grad (no input of it requires grad, "
                               f"or it was computed under no_grad)")
    return [seed(out, g, where) for out, g in zip(outputs, given)]


def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor], grad_outputs=None,
         retain_graph: bool | None = None, create_graph: bool = False, allow_unused: bool = False) -> tuple:
    """The gradients of `outputs` with respect to `inputs`, as a tuple of Tensors (PyTorch's semantics).

    grad_outputs: one gradient per output (dL/d(output)), or None for ones (one-element outputs only).
    Nothing accumulates into `.grad`. With create_graph the results carry a graph, so they can be
    differentiated again; retain_graph defaults to create_graph. An input the outputs do not depend
    on is an error unless allow_unused (its gradient is then None).
    """
    outputs, inputs = _tensors(outputs, "outputs"), _tensors(inputs, "inputs")
    for i, x in enumerate(inputs):
        if not x.requires_grad:
            raise RuntimeError(f"grad: inputs[{i}] (shape {x.shape}) does not require grad")
    seeds = _seeds(outputs, grad_outputs, "grad")
    found = run_backward(outputs, seeds, create_graph if retain_graph is None else retain_graph, create_graph,
                         inputs=inputs)
    for i, g in enumerate(found):
        if g is None and not allow_unused:
            raise RuntimeError(f"grad: inputs[{i}] (shape {inputs[i].shape}) was not used to compute the outputs; "
                               f"pass allow_unused=True to get None for it")
    return tuple(found)


def backward(tensors: Tensor | Sequence[Tensor], grad_tensors=None, retain_graph: bool | None = None,
             create_graph: bool = False) -> None:
    """Add the gradients of `tensors` (seeded with `grad_tensors`) into `.grad` of every leaf (PyTorch's)."""
    tensors = _tensors(tensors, "tensors")
    seeds = _seeds(tensors, grad_tensors, "backward")
    run_backward(tensors, seeds, create_graph if retain_graph is None else retain_graph, create_graph)
