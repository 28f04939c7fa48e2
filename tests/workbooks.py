"""Helpers of the exercises' tests: plant code into a workbook's task file, and grade it (the graded workbook
of the engine's own solutions is conftest.py's `solutions` fixture)."""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from tinygrad_lite.exercises import find, grade
from tinygrad_lite.exercises.grade import Grade
from tinygrad_lite.exercises.workbook import Source


def plant(path: Path, qualname: str, code: str) -> None:
    """Replace the function `qualname` ("Mul.backward", or "unbroadcast") of a task file with `code`."""
    first, last = Source.read(path).functions[qualname]
    lines = path.read_text(encoding="utf-8").splitlines()
    new = textwrap.indent(textwrap.dedent(code).strip("\n"), "    " if "." in qualname else "").splitlines()
    path.write_text("\n".join(lines[:first - 1] + new + lines[last:]) + "\n", encoding="utf-8")


def copy_of(folder: Path, tmp_path: Path) -> Path:
    shutil.copytree(folder, tmp_path / "wb")
    return tmp_path / "wb"


def verdict(task_name: str, folder: Path, qualname: str, code: str) -> Grade:
    """Plant code as qualname into the task's file in folder, and grade the task."""
    task = find(task_name)
    plant(folder / task.filename, qualname, code)
    return grade(task, folder)
