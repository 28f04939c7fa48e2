"""Exercises: learn autograd by writing the backward passes, graded with a diagnosis.

    python -m tinygrad_lite.exercises list [DIR]          the tasks in order (and DIR's grades)
    python -m tinygrad_lite.exercises start DIR           a workbook: a file per task, backward stubs to write
    python -m tinygrad_lite.exercises check DIR [TASK]    TODO / PASS / FAIL with a diagnosis, per task

From Python: `start(folder)`, then `for grade in check(folder): ...`.

Layout: tasks.py (the curriculum, in words), workbook.py (the files on disk), plug.py (the learner's
ops in the engine), grade.py (the cases, the comparisons, gradcheck), diagnose.py and mistakes.py (what
is wrong, in sentences), gpt_task.py (the last task: a GPT trained on the learner's ops), cli.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from .grade import Grade, grade
from .gpt_task import grade_gpt
from .tasks import GPT_TASK, TASKS, Task, find
from .workbook import FILE_TASKS, UsageError, check_folder, start

__all__ = ["TASKS", "Task", "Grade", "UsageError", "start", "check", "grade", "find"]


def check(folder: Path, tasks: list[Task] | None = None) -> Iterator[Grade]:
    """Grade the given tasks (default: all) of the workbook in folder, in order, one Grade at a time.

    The GPT task trains on the ops of every task that passes, so it grades them all first."""
    folder = Path(folder)
    check_folder(folder)
    tasks = TASKS if tasks is None else sorted(tasks, key=lambda t: t.number)
    grades = {}
    for task in tasks:
        if task is not GPT_TASK:
            grades[task.name] = grade(task, folder)
            yield grades[task.name]
    if GPT_TASK in tasks:
        others = [grades.get(t.name) or grade(t, folder) for t in FILE_TASKS]
        yield grade_gpt(GPT_TASK, folder, others)
