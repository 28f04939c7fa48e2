"""`--engine math|fast`: which implementation of the engine's ops a command runs, switched on in one place.

`math` runs every op's forward and backward as written in tinygrad_lite (tensor.py, functional.py) and
the optimizers' `update` (optim.py); `fast` runs the kernels of `tinygrad_lite.fast`, each tested equal
to the op it replaces. train, sample, demo and inspect run fast by default; gradcheck checks the math.
"""
from __future__ import annotations

import argparse
import os

ENGINES = {"fast": "the fast kernels of tinygrad_lite.fast", "math": "the ops as written in tinygrad_lite"}


GRADCHECK_HELP = ("what to check: math (default) checks the ops as written in tinygrad_lite, the source of truth; "
                  "fast checks the fast kernels of tinygrad_lite.fast, which the other commands run by default")


def add_option(parser: argparse.ArgumentParser, default: str, help: str | None = None) -> None:
    parser.add_argument("--engine", choices=list(ENGINES), default=default,
                        help=help or f"math: {ENGINES['math']}; fast: {ENGINES['fast']} (default {default})")


def start(engine: str, ranks_here: int = 1) -> None:
    """Switch this process to `engine`. Both engines let malloc keep freed blocks (a process setting: no op
    changes); fast also runs the optimizers on this process's share of the cores (under mpiexec, the cores
    divided by the ranks on this machine)."""
    import tinygrad_lite.fast as fast
    fast.reuse_freed_memory()
    if engine == "fast":
        fast.set_num_threads(max(1, (os.cpu_count() or 1) // ranks_here))
        fast.enable()
    else:
        fast.disable()


def running() -> str:
    """The engine this process runs, for a command's header line: "engine fast" or "engine math"."""
    import tinygrad_lite.fast as fast
    return f"engine {'fast' if fast.is_enabled() else 'math'}"
