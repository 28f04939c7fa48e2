"""Command line: `python -m gpt <command> [options]` (`python -m gpt <command> --help` for each).

Layout: every subcommand lives in its own module, listed once in COMMANDS below. A command module
defines two functions:

    register(subparsers) -> None   subparsers.add_parser("<name>", help=...), its arguments, and
                                   .set_defaults(func=run)
    run(args) -> int | None        does the work; returns the exit code (None means 0)

Command modules import heavy things (the model, the tokenizer) inside run(), so `--help` stays quick.
To add a command: write gpt/cli_<name>.py with register/run and add its module name to COMMANDS.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = [
    "gpt.cli_demo",  # demo: tokenize two sentences, GPT-2 124M forward, loss at init, backward
    "gpt.cli_train",  # train: train a model on a text file, write checkpoints
    "gpt.cli_sample",  # sample: generate text from a checkpoint or GPT-2 weights
    # ---- to be added by their owners (one line each, same register/run interface) ----
    "gpt.cli_inspect",  # inspect: per-parameter gradient norms, per-layer activation statistics
    "gpt.cli_gradcheck",  # gradcheck: float64 finite-difference check of every parameter's gradient
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gpt", description="GPT-2 on tinygrad_lite (NumPy).")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import tinygrad_lite.fast
    tinygrad_lite.fast.tune_process()  # malloc reuse and the optimizer's threads: a program's choice, not an import's
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
