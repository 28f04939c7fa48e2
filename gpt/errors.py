"""The ways a command ends, and their exit codes.

Every subcommand of `python -m gpt` exits 0 when it succeeds, 1 when the run or check it performs
fails (`RunFailed`: a diverged training run, a gradient check that does not pass), 2 for a usage
error (`UsageError`: a bad flag value, a missing or damaged file, an output folder that cannot be
written), 130 after Ctrl-C and 143 after SIGTERM (`Terminated`: what `kill`, systemd, Slurm and
container runtimes send), which a command handles as it handles Ctrl-C. A failure is printed as one
`error: ...` line naming the flag or file and what was expected, never as a traceback.
"""
from __future__ import annotations

__all__ = ["UsageError", "RunFailed", "Terminated", "raise_terminated", "flag", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE",
           "EXIT_INTERRUPTED", "EXIT_TERMINATED"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143  # 128 + SIGINT, SIGTERM


class UsageError(ValueError):
    """Bad input: a flag, a file or a folder that is not what was expected (exit status 2)."""
    exit_code = EXIT_USAGE


class RunFailed(RuntimeError):
    """The run or the check itself failed: training diverged, a gradient did not match (exit status 1)."""
    exit_code = EXIT_FAILED


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt, so that whatever handles Ctrl-C handles it too (143)."""


def raise_terminated(signum, frame) -> None:
    """A SIGTERM handler: raise Terminated in the main thread."""
    raise Terminated


def flag(name: str) -> str:
    """The command-line flag of a setting, as error messages name it: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")
