"""What a training run needs beside its loop: Ctrl-C deferred to the end of a step, NumPy's overflow
warnings off (a non-finite loss ends the run with an error instead), and the states of the random
generators (the training batches', and dropout's if the model keeps any) that a checkpoint saves."""
from __future__ import annotations

import signal
import threading
import warnings
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import checkpoint
from .model import GPT

__all__ = ["CtrlC", "no_overflow_warnings", "dropout_rngs", "rng_states", "set_rng_states"]


class CtrlC:
    """Within ``deferred()`` a Ctrl-C (SIGINT) takes effect at the block's end; elsewhere at once.

    Installed only in the main thread and over Python's default handler; otherwise Ctrl-C is untouched."""

    def __init__(self) -> None:
        self.deferring, self.pending, self.previous = False, False, None

    def __enter__(self) -> "CtrlC":
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum, frame) -> None:
        if not self.deferring:
            raise KeyboardInterrupt
        self.pending = True

    @contextmanager
    def deferred(self):
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


@contextmanager
def no_overflow_warnings():
    """Overflow and nan end the run with an error (checked each step): no NumPy warnings on the way, in any thread."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"(overflow|invalid value|divide by zero) encountered", RuntimeWarning)
        yield


def dropout_rngs(model: GPT) -> dict[str, np.random.Generator]:
    """name -> each distinct np.random.Generator a module of the model holds as ``rng``."""
    found, seen = {}, set()
    for name, module in model.named_modules():
        rng = getattr(module, "rng", None)
        rng = getattr(rng, "generator", rng)  # the generator a ShardedRandom draws from
        if isinstance(rng, np.random.Generator) and id(rng) not in seen:
            seen.add(id(rng))
            found[name] = rng
    return found


def rng_states(model: GPT, rng: np.random.Generator) -> dict[str, Any]:
    return {"batches": rng.bit_generator.state,
            "dropout": {name: g.bit_generator.state for name, g in dropout_rngs(model).items()}}


def set_rng_states(model: GPT, rng: np.random.Generator, states: dict[str, Any]) -> None:
    rng.bit_generator.state = states["batches"]
    own = dropout_rngs(model)
    if set(own) != set(states["dropout"]):
        raise checkpoint.CheckpointError(f"the checkpoint has dropout generators {sorted(states['dropout'])}, the "
                                         f"model {sorted(own)}")
    for name, g in own.items():
        g.bit_generator.state = states["dropout"][name]
