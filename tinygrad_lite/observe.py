"""The one hook interface through which tools watch the engine (and the handle of a user's hook).

The engine runs every op's forward, every op's backward and every gradient hook through `current`,
an `Observer`. This base class just runs them. A tool (anomaly mode, the profiler) subclasses it,
wraps the call, and installs itself with `watch(observer)` for the length of a `with` block;
observers stack, each calling the one it replaced (`self.inner`). The engine never asks which tools
are on: it has no branch for any of them.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator


class Observer:
    """Runs the engine's calls unchanged. Subclass it to watch them; `inner` is the observer replaced."""

    inner: "Observer | None" = None

    def forward(self, ctx, impl, arrays: list):
        """Compute one op's output: `impl.forward(ctx, *arrays)` (impl: the op, or its fast kernel)."""
        return impl.forward(ctx, *arrays)

    def backward(self, ctx, run: Callable, g):
        """Compute one op's input gradients: `run(ctx, g)`, g the gradient of its output. `run` is the op's
        math-first backward (g and the results are Tensors) or its fast kernel's (NumPy arrays, or a sparse
        gradient with the nonzero part in `.values`); a result may be None."""
        return run(ctx, g)

    def hook(self, tensor, hook: Callable, g):
        """Call one gradient hook registered on `tensor` with its gradient g (a Tensor)."""
        return hook(g)


class Forwarding(Observer):
    """An observer that passes every call on to the one it replaced."""

    def forward(self, ctx, impl, arrays):
        return self.inner.forward(ctx, impl, arrays)

    def backward(self, ctx, run, g):
        return self.inner.backward(ctx, run, g)

    def hook(self, tensor, hook, g):
        return self.inner.hook(tensor, hook, g)


current: Observer = Observer()


@contextlib.contextmanager
def watch(observer: Observer) -> Iterator[Observer]:
    """Install `observer` (a subclass of `Forwarding`) in front of the current one, for a `with` block."""
    global current
    observer.inner, current = current, observer
    try:
        yield observer
    finally:
        current = observer.inner


class RemovableHandle:
    """Returned by `register_hook` / `register_forward_hook`: `handle.remove()` unregisters the hook.

    Also a context manager: `with t.register_hook(fn): ...` removes the hook on leaving the block."""

    def __init__(self, hooks: list, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self) -> None:
        for i, h in enumerate(self._hooks):
            if h is self._fn:
                del self._hooks[i]
                return

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
