"""Ctrl-C and SIGTERM during a training run: held until the step in progress ends, so that the checkpoint
saved on the way out is of a whole step.

    with CtrlC(always=ranks > 1) as stops:
        while ...:
            with stops.deferred(world):   # a Ctrl-C or SIGTERM arriving in here is raised when the block ends
                ...one step...

Ctrl-C raises KeyboardInterrupt and SIGTERM `Terminated` (a KeyboardInterrupt too), so the training
loop's one ``except KeyboardInterrupt`` answers both. Under mpiexec the ranks agree at the end of
each deferred block (one small all-reduce), so all stop after the same step.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from .errors import Terminated, raise_terminated

__all__ = ["CtrlC"]


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
