"""What is wrong, in sentences: a gradient (or an output) against the expected one, second derivatives
that are wrong, and an exception raised by the learner's code, shown at the line of their file.

A wrong gradient is described by its shape or its largest error and where it is, then recognised
when it can be: an op's own classic mistakes first (mistakes.py), then the ones any op can make:
a missing sum over broadcast axes, a transposed gradient, a constant factor, a flipped sign.
"""
from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np

from ..shapes import unbroadcast

RTOL, ATOL = 1e-6, 1e-9  # float64 on small inputs: a correct gradient written differently rounds far below this


def as_array(x):
    """A gradient as an array: a Tensor's data, a NumPy array, a number; None stays None."""
    if x is None:
        return None
    return np.asarray(x.data if hasattr(x, "_wrap") else x)


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=RTOL, atol=ATOL))


def at(name: str, index: tuple) -> str:
    """b[2, 0], or b for a 0-d array."""
    return f"{name}[{', '.join(str(int(i)) for i in index)}]" if index else name


def largest_error(what: str, name: str, yours: np.ndarray, expected: np.ndarray) -> str:
    """`your gradient for b is wrong: largest error 1.5 at b[2, 0] (yours 0.31, expected 1.83); 6 of 12 entries
    differ`"""
    err = np.abs(yours - expected)
    bad = ~np.isclose(yours, expected, rtol=RTOL, atol=ATOL)
    worst = np.unravel_index(int(np.argmax(np.where(np.isnan(err), np.inf, err))), err.shape)
    return (f"your {what} is wrong: largest error {err[worst]:.3g} at {at(name, worst)} (yours {yours[worst]:.6g}, "
            f"expected {expected[worst]:.6g}); {int(bad.sum())} of {bad.size} entries differ")


def _swapped(a: np.ndarray) -> list[np.ndarray]:
    """a with its last two axes swapped, and with all axes reversed (the two ways to transpose)."""
    return [np.swapaxes(a, -1, -2), a.T] if a.ndim >= 2 else []


def _general(what: str, name: str, yours: np.ndarray, expected: np.ndarray) -> str | None:
    """The mistakes any op can make, recognised by the shape or by a constant ratio; None if none fits."""
    if yours.shape != expected.shape:
        try:
            stretched = np.broadcast_shapes(yours.shape, expected.shape) == yours.shape
        except ValueError:
            stretched = False
        if stretched:
            extra = yours.ndim - expected.ndim
            axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(expected.shape)
                                               if n == 1 and yours.shape[i + extra] != 1)
            sentence = (f"a missing sum over broadcast axes: {name} {expected.shape} was broadcast to {yours.shape} "
                        f"in the forward, so its gradient is g summed over axes {axes} (unbroadcast)")
            summed = unbroadcast(yours, expected.shape)
            if close(summed, expected):
                return sentence
            return sentence + "; and even summed, " + largest_error(what, name, summed, expected)
    if any(close(t, expected) for t in _swapped(yours)):
        return (f"transposed: your {what} is the expected one with its axes swapped; check the order of the "
                f"factors and which of them is transposed")
    if yours.shape != expected.shape:
        return None
    if not yours.any():
        return f"your {what} is all zeros"
    ee = float(np.vdot(expected, expected))
    if ee == 0.0:
        return None
    c = float(np.vdot(yours, expected)) / ee  # the least-squares factor: yours ~ c * expected
    if np.linalg.norm(yours - c * expected) > 1e-6 * np.sqrt(ee):
        return None
    if abs(c + 1) < 1e-6:
        return f"a flipped sign: your {what} is -1.00x the expected"
    return f"a constant factor: your {what} is {c:.2f}x the expected"


def compare(what: str, name: str, yours, expected: np.ndarray, mistakes: list[tuple[str, np.ndarray]]) -> list[str]:
    """[] when yours equals expected; else the sentences that say what is wrong.

    what: "gradient for b" or "output"; name: how an element is written (b[2, 0]); mistakes: (sentence,
    what that mistake gives) for the op's classic mistakes."""
    if yours is None:
        return [f"your {what} is None, but {name} needs one of shape {expected.shape}"]
    if yours.dtype == object or yours.dtype.kind not in "fiub":
        return [f"your {what} is a {type(yours).__name__} of {yours.dtype}; expected a Tensor of shape "
                f"{expected.shape}"]
    if close(yours, expected):
        return []
    if yours.shape != expected.shape:
        first = f"your {what} has shape {yours.shape}, expected {expected.shape}, the shape of {name}"
    elif np.isnan(yours).any() or np.isinf(yours).any():
        n = int((~np.isfinite(yours)).sum())
        return [f"your {what} has {n} NaN or infinite entr{'y' if n == 1 else 'ies'} of {yours.size}, at "
                f"{at(name, np.unravel_index(int(np.argmax(~np.isfinite(yours))), yours.shape))} first"]
    else:
        first = largest_error(what, name, yours, expected)
    for sentence, theirs in mistakes:
        if theirs is not None and close(yours, theirs) and not close(theirs, expected):
            return [first, sentence]
    general = _general(what, name, yours, expected)
    return [first] if general is None else [first, general]


# ------------------------------------------------------------------ second derivatives
CUT_GRAPH = ("something your backward computes depends on the inputs without its Tensor ops saying so: going "
             "through .data or NumPy cuts the graph")


def saved_constants(names: list[str]) -> str:
    """The forward's saved values (xhat, rstd) used as they are in a backward recorded for second derivatives."""
    one = len(names) == 1
    them, they = ("it", "it is a constant") if one else ("them", "they are constants")
    return (f"the forward's {', '.join(names)} used in a recorded backward: saved, {they} (the forward computed "
            f"{them} from the inputs in NumPy), so a backward recorded for second derivatives (create_graph) loses "
            f"{'its' if one else 'their'} dependence on the inputs. Use {them} when is_grad_enabled() is False (a "
            f"plain backward); when it is True, recompute {them} from the inputs in Tensor ops, so that "
            f"{'it is' if one else 'they are'} differentiated too")


# ------------------------------------------------------------------ the learner's exceptions
def learner_frame(e: BaseException, paths) -> traceback.FrameSummary | None:
    """The innermost frame of e's traceback that is in the learner's file (a Path), or in one of them (a list)."""
    names = {str(p) for p in (paths if isinstance(paths, (list, tuple, set)) else [paths])}
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename in names]
    return frames[-1] if frames else None


def exception_lines(e: BaseException, paths, who: str | None) -> list[str]:
    """`MatMul.backward raised ValueError: ...` and `at DIR/02_matmul.py:31, in backward: <the line>`.

    paths: the learner's file, or files; who: their function the frame is in (None: not known). Never the
    grader's traceback."""
    message = f"{type(e).__name__}: {e}"
    if isinstance(e, SyntaxError):
        return [f"your file does not compile: {type(e).__name__}: {e.msg}",
                f"at {e.filename}:{e.lineno}: {(e.text or '').strip()}"]
    frame = learner_frame(e, paths)
    if frame is None:
        return [f"raised {message}"]
    return [f"{who or 'your code'} raised {message}",
            f"at {frame.filename}:{frame.lineno}, in {frame.name}: {frame.line}"]
