"""Command line: `python -m gpt <command> [options]` (`python -m gpt <command> --help` for each).

Every subcommand lives in its own module of this package, listed once in COMMANDS. A command module
defines two functions:

    register(subparsers) -> None   subparsers.add_parser("<name>", help=...), its arguments, and
                                   .set_defaults(func=run)
    run(args) -> int | None        does the work; returns the exit code (None means 0)

Exit codes, the same for every command (gpt/errors.py): 0 ok, 1 the run or check failed, 2 usage
error (a bad flag, a missing or damaged file), 130 after Ctrl-C. Errors are one `error: ...` line.
Command modules import heavy things (the model, the tokenizer) inside run(), so `--help` stays quick.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import EXIT_INTERRUPTED, EXIT_USAGE, RunFailed, UsageError
from . import engine

COMMANDS = [
    "gpt.cli.demo",  # demo: tokenize two sentences, GPT-2 124M forward, loss at init, backward
    "gpt.cli.train",  # train: train a model on a text file, write checkpoints
    "gpt.cli.sample",  # sample: generate text from a checkpoint or GPT-2 weights
    "gpt.cli.inspect",  # inspect: per-parameter gradient norms, per-layer activation statistics
    "gpt.cli.gradcheck",  # gradcheck: float64 finite-difference check of every parameter's gradient
    "gpt.cli.plot",  # plot: a training run's loss, learning rate and gradient norms, from its run folder
]

EPILOG = "exit status: 0 ok, 1 the run or check failed, 2 usage error (bad flag or file), 130 interrupted (Ctrl-C)"


class Parser(argparse.ArgumentParser):
    """argparse, with the exit-code convention in every --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("epilog", EPILOG)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m gpt", description="GPT-2 on tinygrad_lite (NumPy).")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True, parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(name).register(subparsers)
    for name, sub in subparsers.choices.items():  # every command: --engine, fast by default but for gradcheck
        engine.add_option(sub, "math" if name == "gradcheck" else "fast",
                          engine.GRADCHECK_HELP if name == "gradcheck" else None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # a bad flag: argparse's "error: ..." line and exit status 2
    ranks_here = int(os.environ.get("MPI_LOCALNRANKS") or os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE") or 1)
    # the engine (math or fast), with its process settings: a program's choice, not an import's
    engine.start(args.engine, ranks_here)  # each command's header line names it
    try:
        return int(args.func(args) or 0)
    except (UsageError, RunFailed) as e:
        if not getattr(e, "quiet", False):  # quiet: another rank of an MPI run prints it
            print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


__all__ = ["main", "build_parser", "COMMANDS", "EXIT_USAGE"]
