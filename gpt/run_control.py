"""What a training run needs beside its loop: Ctrl-C and SIGTERM deferred to the end of a step, NumPy's overflow
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
from .errors import Terminated, raise_terminated
from .model import GPT

__all__ = ["CtrlC", "no_overflow_warnings", "dropout_rngs", "rng_states", "set_rng_states"]


class CtrlC:
    """Within ``deferred()`` a Ctrl-C (SIGINT) or a SIGTERM takes effect at the block's end; elsewhere at once.
    Ctrl-C raises KeyboardInterrupt and SIGTERM Terminated (a KeyboardInterrupt too), so both stop a run alike.

    Installed only in the main thread, and for each signal only over the handler that raises its exception
    (Python's for SIGINT; for SIGTERM the default, or gpt.cli's); any other handler is left alone."""

    # signal: (the exception it raises, the handlers it may replace)
    STOPS = {signal.SIGINT: (KeyboardInterrupt, (signal.default_int_handler,)),
             signal.SIGTERM: (Terminated, (signal.SIG_DFL, raise_terminated))}

    def __init__(self, always: bool = False) -> None:
        """always: every stop waits for the end of a deferred() block (MPI ranks stop only where they agree)."""
        self.deferring, self.always, self.pending, self.previous = False, always, None, {}

    def __enter__(self) -> "CtrlC":
        if threading.current_thread() is threading.main_thread():
            for signum, (_, replaces) in self.STOPS.items():
                if signal.getsignal(signum) in replaces:
                    self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        stop = self.STOPS[signum][0]
        if not (self.deferring or self.always):
            raise stop
        self.pending = self.pending or stop  # the first one decides

    @contextmanager
    def deferred(self, world=None):
        """Hold a stop until the block ends. With a `world` of several MPI ranks they agree there (one small
        all-reduce): if any rank was stopped, all stop after the same block, none waits in a collective for
        one that left."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        kinds = (None, KeyboardInterrupt, Terminated)
        code, self.pending = kinds.index(self.pending), None
        if world is not None:
            code = world.max(code)  # a stop on any rank stops them all here
        if kinds[code] is not None:
            raise kinds[code]


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
