"""Where does the time go? A per-op profile of forward, backward and optimizer steps.

    with tinygrad_lite.profile() as prof:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    # on exit a table is printed: one row per op and implementation, forward and backward counts and ms

It is an `Observer` (tinygrad_lite.observe): every op the engine runs is timed, forward and
backward, under its name in the op registry (`ctx.fn.name`), so a new op has its row with nothing
to add here. The `impl` column says what ran: `math`, the forward and backward written in the op's
class, or `fast`, the kernel `tinygrad_lite.fast.enable()` put in its place. The ops an op's backward runs (a math-first backward is written in Tensor ops) are
part of that backward's time, not more forward rows, so no time is counted twice. `step()` of
`optim.Optimizer` and of every subclass is timed as `optimizer.step`.
"""
from __future__ import annotations

import functools
import time
from collections import defaultdict

from .. import observe, optim, state


class profile(observe.Forwarding):
    """Context manager that times ops; `table()` formats the result, printed on exit unless quiet."""

    def __init__(self, quiet: bool = False, sort: str = "total"):
        self.quiet, self.sort = quiet, sort
        self.forward_times = defaultdict(lambda: [0, 0.0])  # (op, "math" | "fast") -> [calls, seconds]
        self.backward_times = defaultdict(lambda: [0, 0.0])
        self._patched: list[tuple[type, object]] = []
        self._busy = 0  # > 0 while an op's backward or an optimizer step runs: the ops inside are its time

    # ------------------------------------------------------------ recording
    def forward(self, ctx, impl, arrays):
        if self._busy:
            return self.inner.forward(ctx, impl, arrays)
        start = time.perf_counter()
        try:
            return self.inner.forward(ctx, impl, arrays)
        finally:
            _add(self.forward_times[ctx.fn.name, "math" if impl is ctx.fn else "fast"], start)

    def backward(self, ctx, run, g):
        if self._busy:  # a backward inside a backward (recompute() reruns and backpropagates)
            return self.inner.backward(ctx, run, g)
        start = time.perf_counter()
        self._busy += 1
        try:
            return self.inner.backward(ctx, run, g)
        finally:
            self._busy -= 1
            _add(self.backward_times[ctx.fn.name, "math" if run is ctx.fn.backward else "fast"], start)

    def _time_steps(self, cls: type) -> None:
        original = cls.__dict__["step"]

        @functools.wraps(original)
        def step(opt, *args, **kwargs):
            if self._busy:  # a subclass's step calling super().step(): one step, timed once
                return original(opt, *args, **kwargs)
            start = time.perf_counter()
            self._busy += 1
            try:
                return original(opt, *args, **kwargs)
            finally:
                self._busy -= 1
                fast = state.implementation(type(opt)) is not type(opt)
                _add(self.forward_times["optimizer.step", "fast" if fast else "math"], start)
        cls.step = step
        self._patched.append((cls, original))

    def __enter__(self) -> "profile":
        if any(isinstance(o, profile) for o in _chain()):
            raise RuntimeError("a tinygrad_lite.profile is already active")
        self._watch = observe.watch(self)
        self._watch.__enter__()
        try:
            for cls in _subclasses(optim.Optimizer):
                if "step" in cls.__dict__:
                    self._time_steps(cls)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._restore()
        if not self.quiet and exc[0] is None:
            print(self.table())

    def _restore(self) -> None:
        """Put back every patched step and the observer this one replaced, whatever happened in the block."""
        try:
            for cls, original in reversed(self._patched):
                cls.step = original
            self._patched.clear()
        finally:
            self._watch.__exit__(None, None, None)

    # ------------------------------------------------------------ report
    def rows(self) -> list[tuple[str, str, int, float, int, float]]:
        """(op, impl, forward calls, forward s, backward calls, backward s), biggest total first. impl is
        "math" or "fast"; an op whose forward and backward ran different ones has a row for each."""
        keys = set(self.forward_times) | set(self.backward_times)
        rows = [(*k, *self.forward_times.get(k, (0, 0.0)), *self.backward_times.get(k, (0, 0.0))) for k in keys]
        key = {"total": lambda r: r[3] + r[5], "forward": lambda r: r[3], "backward": lambda r: r[5]}[self.sort]
        return sorted(rows, key=key, reverse=True)

    def table(self) -> str:
        rows = self.rows()
        total = sum(r[3] + r[5] for r in rows) or 1e-12
        lines = [f"{'op':32s} {'impl':>4s} {'fwd calls':>9s} {'fwd ms':>9s} {'bwd calls':>9s} {'bwd ms':>9s} "
                 f"{'share':>6s}"]
        for op, impl, fc, ft, bc, bt in rows:
            lines.append(f"{op:32s} {impl:>4s} {fc:9d} {ft * 1e3:9.1f} {bc:9d} {bt * 1e3:9.1f} {(ft + bt) / total:6.1%}")
        fwd, bwd = sum(r[3] for r in rows), sum(r[5] for r in rows)
        lines.append(f"{'total':32s} {'':4s} {'':9s} {fwd * 1e3:9.1f} {'':9s} {bwd * 1e3:9.1f}")
        return "\n".join(lines)


def _add(row: list, start: float) -> None:
    row[0] += 1
    row[1] += time.perf_counter() - start


def _subclasses(cls: type) -> list[type]:
    """cls and all its subclasses, at any depth, each once."""
    found, todo = [], [cls]
    while todo:
        c = todo.pop()
        if c not in found:
            found.append(c)
            todo.extend(c.__subclasses__())
    return found


def _chain():
    o = observe.current
    while o is not None:
        yield o
        o = o.inner
