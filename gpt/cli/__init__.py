"""Command line: `python -m gpt <command> [options]` (`python -m gpt <command> --help` for each).

Every subcommand lives in its own module of this package, listed once in COMMANDS. A command module
defines two functions:

    register(subparsers) -> None   subparsers.add_parser("<name>", help=...), its arguments, and
                                   .set_defaults(func=run)
    run(args) -> int | None        does the work; returns the exit code (None means 0)

Exit codes, the same for every command (gpt/errors.py): 0 ok, 1 the run or check failed, 2 usage
error (a bad flag, a missing or damaged file), 130 after Ctrl-C, 143 after SIGTERM (handled as
Ctrl-C is). Errors are one `error: ...` line. When the reader of the output goes away (`| head`), the
command stops quietly with status 1, as a Unix tool stops. Command modules import heavy things (the
model, the tokenizer) inside run(), so `--help` stays quick.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from ..errors import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, RunFailed, Terminated, UsageError,
                      raise_terminated)
from . import engine

COMMANDS = [
    "gpt.cli.demo",  # demo: tokenize two sentences, GPT-2 124M forward, loss at init, backward
    "gpt.cli.train",  # train: train a model on a text file, write checkpoints
    "gpt.cli.sample",  # sample: generate text from a checkpoint or GPT-2 weights
    "gpt.cli.inspect",  # inspect: per-parameter gradient norms, per-layer activation statistics
    "gpt.cli.gradcheck",  # gradcheck: float64 finite-difference check of every parameter's gradient
    "gpt.cli.plot",  # plot: a training run's loss, learning rate and gradient norms, from its run folder
]

EPILOG = ("exit status: 0 ok, 1 the run or check failed, 2 usage error (bad flag or file), 130 interrupted (Ctrl-C), "
          "143 terminated (SIGTERM, handled as Ctrl-C)")


class Parser(argparse.ArgumentParser):
    """argparse, with the exit-code convention in every --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("epilog", EPILOG)
        super().__init__(*args, **kwargs)


def integer(text: str) -> int:
    """The type of every integer flag: 12, or a whole number written as a float (1e6, 2.0)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
    if not value.is_integer():  # also inf and nan
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r} (expected a whole number)")
    return int(value)


def read_model_config(file: str):
    """--config FILE.json: (the GPTConfig its JSON object describes, in our spelling or a tutorial's, and the
    object as written), or a UsageError naming the file (gpt.config.GPTConfig.from_dict)."""
    import json
    from pathlib import Path

    from ..config import GPTConfig
    expected = "a JSON object of GPTConfig fields (e.g. {\"n_layer\": 2, \"emb_dim\": 64})"
    try:
        d = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # missing, unreadable, not UTF-8, not JSON
        raise UsageError(f"--config {file}: cannot read it as JSON ({e}); expected {expected}") from None
    if not isinstance(d, dict):
        raise UsageError(f"--config {file}: holds a JSON {type(d).__name__}, expected {expected}")
    try:
        return GPTConfig.from_dict(d), d
    except (ValueError, TypeError) as e:  # an unknown key, two spellings of one field, a bad value
        raise UsageError(f"--config {file}: {e}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m gpt", description="GPT-2 on tinygrad_lite (NumPy).")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True, parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(name).register(subparsers)
    for name, sub in subparsers.choices.items():  # every command: --engine, fast by default but for gradcheck
        engine.add_option(sub, "math" if name == "gradcheck" else "fast",
                          engine.GRADCHECK_HELP if name == "gradcheck" else None)
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments; a bad flag is argparse's `error: ...` line under the usage of the command it was given to,
    and exit status 2."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # options the command does not have: its own usage, not the list of commands
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        code = _run(parse(argv))
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except BrokenPipeError:  # the reader went away (`| head`): stop without a word, as Unix tools do
        _discard_output()
        return EXIT_FAILED


def _run(args: argparse.Namespace) -> int:
    ranks_here = int(os.environ.get("MPI_LOCALNRANKS") or os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE") or 1)
    # the engine (math or fast), with its process settings: a program's choice, not an import's
    engine.start(args.engine, ranks_here)  # each command's header line names it
    previous = _catch_sigterm()
    try:
        return int(args.func(args) or 0)
    except (UsageError, RunFailed, MemoryError) as e:
        code = e.exit_code if isinstance(e, (UsageError, RunFailed)) else EXIT_FAILED
        text = str(e) if not isinstance(e, MemoryError) else f"out of memory: {e or 'an allocation failed'}"
        _fail(text, code, quiet=getattr(e, "quiet", False), collective=getattr(e, "collective", False))
        return code
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (Terminated): every rank of an MPI run stops alike
        from ..distributed import mpi_rank
        if (mpi_rank() or (0,))[0] == 0:
            print("terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _fail(text: str, code: int, quiet: bool, collective: bool) -> None:
    """Print the error line. Under mpiexec an error that only this rank met names the rank and ends the whole
    run (MPI_Abort): the other ranks would otherwise wait for it forever in their next collective."""
    from ..distributed import abort_world, mpi_rank

    where = mpi_rank()
    if not quiet:  # quiet: another rank of an MPI run prints it
        prefix = f"rank {where[0]} of {where[1]}: " if where is not None and not collective else ""
        print(f"error: {prefix}{text}", file=sys.stderr, flush=True)
    if where is not None and not collective:
        abort_world(code)


def _catch_sigterm():
    """SIGTERM raises Terminated (as Ctrl-C raises KeyboardInterrupt); returns the handler it replaced, or None
    when it left a handler someone else installed (or runs outside the main thread) alone."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, raise_terminated)


def _discard_output() -> None:
    """Point stdout and stderr at /dev/null, so that flushing them at exit raises nothing more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, AttributeError):  # not a real file (a test's capture): nothing to flush
            pass
    os.close(devnull)


__all__ = ["main", "parse", "build_parser", "integer", "read_model_config", "COMMANDS", "EXIT_USAGE"]
