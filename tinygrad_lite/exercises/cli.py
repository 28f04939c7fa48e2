"""`python -m tinygrad_lite.exercises list | start | check`: exit status 0 ok, 1 a task fails, 2 usage error,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM). Errors are one `error: ...` line."""
from __future__ import annotations

import argparse
import signal
import sys
import textwrap
from pathlib import Path

from . import check, find, start
from .tasks import GPT_TASK, TASKS
from .workbook import CLI, PROGRESS, UsageError, check_folder, file_hash, read_progress, save_grade

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
WIDTH, INDENT = 110, " " * 6


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, as KeyboardInterrupt is: the grader's handlers of the learner's errors
    (`except Exception`) let it through."""


def _terminate(signum, frame):
    raise Terminated


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=CLI, description="Learn autograd by writing the backward passes of the engine's ops, graded with a "
                              "diagnosis.",
        epilog="exit status: 0 ok, 1 a task fails, 2 usage error, 130 interrupted (Ctrl-C), 143 terminated")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    p = sub.add_parser("list", help="the tasks in order; with DIR, its last grades")
    p.add_argument("dir", nargs="?", type=Path, help="a workbook folder")
    p = sub.add_parser("start", help="write a workbook into DIR: one file per task, backward stubs to write")
    p.add_argument("dir", type=Path)
    p.add_argument("--force", action="store_true", help="write over the workbook files in a folder that is not empty")
    p.add_argument("--with-solutions", action="store_true", help="write the engine's own backward passes (teachers)")
    p = sub.add_parser("check", help="grade the workbook in DIR: TODO, PASS, or FAIL with a diagnosis")
    p.add_argument("dir", type=Path)
    p.add_argument("task", nargs="*", help="task names or numbers (default: all)")
    return parser


def _show(grade) -> None:
    task = grade.task
    print(f"{task.number:2d} {task.name:18} {grade.status:4}  {grade.summary}")
    for line in grade.details:  # sentences wrap; a line of the learner's file (`at path:line, ...`) does not
        print(INDENT + line if line.startswith("at ") else
              textwrap.fill(line, WIDTH, initial_indent=INDENT, subsequent_indent=INDENT + "  ",
                            break_long_words=False, break_on_hyphens=False))


def run_list(folder: Path | None) -> int:
    grades = {}
    if folder is not None:
        check_folder(folder)
        grades = read_progress(folder)
    for task in TASKS:
        writes = task.parts or ["(no file: trains on your ops)"]
        kept = grades.get(task.name)
        grade = "" if folder is None else "-" if kept is None else kept["grade"]
        if kept and task is not GPT_TASK and kept.get("sha256") != file_hash(folder, task):
            grade += " (edited since)"
        print(f"{task.number:2d} {task.name:18} {grade:20}{', '.join(writes)}" if folder else
              f"{task.number:2d} {task.name:18} {', '.join(writes)}")
        print(textwrap.fill(task.teaches, WIDTH, initial_indent=INDENT, subsequent_indent=INDENT))
    if folder is not None:
        print(f"grades of the last checks, from {folder / PROGRESS} (-: not checked yet)")
    return EXIT_OK


def run_start(folder: Path, force: bool, with_solutions: bool) -> int:
    written = start(folder, force=force, with_solutions=with_solutions)
    what = "the engine's own backward passes (solutions)" if with_solutions else "a backward to write in each"
    print(f"wrote {len(written) - 1} task files and a README into {folder}, {what}")
    print(f"next: read {folder / 'README.md'}, open {folder / TASKS[0].filename}, then: {CLI} check {folder}")
    return EXIT_OK


def run_check(folder: Path, names: list[str]) -> int:
    try:
        tasks = [find(n) for n in names] or None
    except KeyError as e:
        raise UsageError(e.args[0]) from None
    counts = {"PASS": 0, "FAIL": 0, "TODO": 0}
    for grade in check(folder, tasks):
        save_grade(folder, grade.task, grade.status, grade.summary)  # kept before it is shown
        _show(grade)
        counts[grade.status] += 1
    print(f"{counts['PASS']} pass, {counts['FAIL']} fail, {counts['TODO']} to do, of {sum(counts.values())} "
          f"task(s) checked; grades kept in {folder / PROGRESS}")
    return EXIT_FAILED if counts["FAIL"] else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # a bad flag: argparse's "error: ..." line and exit status 2
    signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.command == "list":
            return run_list(args.dir)
        if args.command == "start":
            return run_start(args.dir, args.force, args.with_solutions)
        return run_check(args.dir, args.task)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
