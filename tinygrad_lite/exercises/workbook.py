"""The learner's workbook on disk: writing it (`start`), reading a task file back, and the grade file.

A task file is made from the engine's own source: each op's class gets the engine's forward, and a
backward whose body is a stub under the derivative in words and a hint (tasks.py), or, with
solutions, the engine's backward itself. Harder ops have their forward stubbed too. The imports are
those the solutions need, so a stub file and a solution file differ only in the bodies.
"""
from __future__ import annotations

import ast
import builtins
import hashlib
import inspect
import json
import os
import textwrap
import time
import types
from dataclasses import dataclass
from pathlib import Path

import tinygrad_lite

from .tasks import GPT_TASK, TASKS, Op, Task, Text

PROGRESS = "progress.json"
README = "README.md"
WIDTH = 110  # comment lines wrap here
CLI = "python -m tinygrad_lite.exercises"


class UsageError(ValueError):
    """Bad input on the command line: a folder or a task that is not what was expected (exit status 2)."""


FILE_TASKS = [t for t in TASKS if t is not GPT_TASK]  # the tasks with a file


# ------------------------------------------------------------------ writing a task file
def _stub(fn, text: Text, qualname: str) -> str:
    """fn's decorators and signature (from its source), a docstring if it has one, then the words, the hint
    and `raise NotImplementedError`."""
    source = inspect.getsource(fn)
    indent = source[:len(source) - len(source.lstrip())]
    node = ast.parse(textwrap.dedent(source)).body[0]
    head = [indent + "@" + ast.unparse(d) for d in node.decorator_list]
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    head.append(f"{indent}def {node.name}({ast.unparse(node.args)}){returns}:")
    body = indent + "    "
    doc = ast.get_docstring(node, clean=False)
    if doc is not None:
        head.append(f'{body}"""{doc}"""')
    words = textwrap.wrap(text.words, WIDTH - len(body) - 2)
    hint = textwrap.wrap("Hint: " + text.hint, WIDTH - len(body) - 2)
    comments = [f"{body}# {line}" for line in words] + [f"{body}#"] + [f"{body}# {line}" for line in hint]
    return "\n".join(head + comments + [f'{body}raise NotImplementedError("{qualname}: not written yet")'])


def _method(op: Op, which: str, solutions: bool) -> str:
    fn = getattr(op.cls, which)
    text = op.forward if which == "forward" else op.backward
    if text is None or solutions:
        return inspect.getsource(fn).rstrip()
    return _stub(fn, text, f"{op.name}.{which}")


def _class(op: Op, solutions: bool) -> str:
    lines = [f"class {op.name}(Function):"]
    if op.cls.name != op.name.lower():  # the engine's name for the op, used in its error messages
        lines += [f'    name = "{op.cls.name}"', ""]
    return "\n".join(lines + [_method(op, "forward", solutions), "", _method(op, "backward", solutions)])


ALWAYS = ("np", "Tensor", "Function")  # imported in every task file: what a backward is written with


def _imports(code: str, modules: list[types.ModuleType]) -> str:
    """The import lines for ALWAYS and every name `code` uses but does not define, found in the engine's
    `modules`."""
    tree = ast.parse(code)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} | set(ALWAYS)
    defined = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    defined |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    defined |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments)
                for a in n.posonlyargs + n.args + n.kwonlyargs + [n.vararg, n.kwarg] if a is not None}
    plain, froms = set(), {}
    for name in sorted(used - defined - set(dir(builtins))):
        obj = next(m.__dict__[name] for m in modules if name in m.__dict__)
        if isinstance(obj, types.ModuleType):
            parent, _, leaf = obj.__name__.rpartition(".")
            if leaf != name:
                plain.add(f"import {obj.__name__} as {name}")
            elif parent:
                froms.setdefault(parent, []).append(name)
            else:
                plain.add(f"import {name}")
            continue
        public = getattr(tinygrad_lite, name, None) is obj
        home = "tinygrad_lite" if public else next(m.__name__ for m in modules if name in m.__dict__)
        froms.setdefault(home, []).append(name)
    stdlib = sorted(line for line in plain if "numpy" not in line)
    third = sorted(line for line in plain if "numpy" in line)
    ours = [f"from {module} import {', '.join(sorted(names))}" for module, names in sorted(froms.items())]
    return "\n\n".join("\n".join(group) for group in (stdlib, third, ours) if group)


def _code(task: Task, solutions: bool) -> str:
    blocks = [inspect.getsource(h.fn).rstrip() if solutions else _stub(h.fn, h.text, h.fn.__name__)
              for h in task.helpers]
    return "\n\n\n".join(blocks + [_class(op, solutions) for op in task.ops])


def render(task: Task, solutions: bool) -> str:
    """The text of a task's file: with stubs to write, or with the engine's own code (solutions). Both
    import what the solutions use."""
    code = _code(task, solutions)
    modules = [inspect.getmodule(h.fn) for h in task.helpers] + [inspect.getmodule(op.cls) for op in task.ops]
    writes = [h.fn.__name__ for h in task.helpers] + [f"{op.name}.{m}" for op in task.ops
                                                      for m in ("forward", "backward") if m == "backward" or op.forward]
    header = "\n".join([
        f'"""Task {task.number} of {len(TASKS)}: {task.title}.', "",
        *textwrap.wrap(f"What it teaches: {task.teaches}.", WIDTH), "",
        f"To write: {', '.join(writes)}. To grade it:",
        f"    {CLI} check <this folder> {task.name}",
        '"""'])
    imports = _imports(_code(task, True), [tinygrad_lite.function, tinygrad_lite.tensor, *modules])
    return f"{header}\n{imports}\n\n\n{code}\n"


def render_readme() -> str:
    rows = [f"| {t.number} | `{t.filename}` | {', '.join(t.parts)} | {t.teaches} |" for t in FILE_TASKS]
    return "\n".join([
        "# Your autograd workbook", "",
        "Each file is one task: `Function` subclasses named as the engine's ops (`MatMul`, `Softmax`, ...), each with",
        "its forward given and a backward to write, the derivative in words and a hint above it. Replace each",
        "`raise NotImplementedError(...)` with your code, then grade it:", "",
        "```",
        f"{CLI} check <this folder>            # every task, in order",
        f"{CLI} check <this folder> matmul     # one task (its name or number)",
        f"{CLI} list <this folder>             # the tasks and your last grades",
        "```", "",
        "| # | file | write | it teaches |", "|---|---|---|---|", *rows,
        f"| {GPT_TASK.number} | (no file) | nothing new | {GPT_TASK.teaches} |", "",
        "## How a task is graded", "",
        "Each op runs the cases of the engine's op table (broadcast shapes, vectors, repeated indices, ...),",
        "in float64, in the engine with your class in place of the engine's. Your gradients are compared with",
        "the engine's for a random upstream gradient g, then with central differences (gradcheck), and, when",
        "your backward returns Tensors, its own derivative too (gradgradcheck). A task is TODO while a stub",
        "is left, PASS, or FAIL with a diagnosis: the input whose gradient is wrong, its shape against the",
        "expected one, the largest error and where it is, and the classic mistake when it recognises it (a",
        "constant factor, a flipped sign, a missing sum over broadcast axes, a transposed gradient, the output",
        "used where the input was meant, a missing term, the forward's saved values used as constants in a",
        "backward recorded for second derivatives). An exception in your code is shown at your line.", "",
        "Each task is graded on its own: the other ops are the engine's, so a task never needs another's code.",
        f"The last task, `{GPT_TASK.name}`, trains a small GPT with your ops in place of the engine's (each task that",
        "passes gives its ops) for 50 iterations, and compares the losses with the engine's.", "",
        "## Rules", "",
        "- Keep the class names and the forward signatures: the grader finds your ops by them.",
        "- Return one gradient per forward argument, None for those that need none (an axis, a shape).",
        "- Write backward in Tensor ops (`g * b`, `g @ w.T`, `x.sum(...)`): it then works with",
        "  `create_graph=True`. A backward in NumPy passes too, but without the second-derivative check.",
        "- `ctx.saved_tensors` gives back what the forward saved: an input as that input Tensor, the output as the",
        "  output Tensor, and anything else the forward computed (layer norm's xhat and rstd, attention's p) as a",
        "  constant. A constant is right for a plain backward; when `is_grad_enabled()` is True your backward is",
        "  being recorded (`create_graph=True`), and such a value must be recomputed from the inputs in Tensor",
        "  ops, so that it is differentiated too: gradgradcheck checks this.",
        f"- Your grades are kept in `{PROGRESS}` here; `{CLI} start <folder> --force`",
        "  writes the stubs again over every task file.", ""])


def _write_atomic(path: Path, text: str) -> None:
    """Write text to path through a temporary file beside it, switched in whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def start(folder: Path, force: bool = False, with_solutions: bool = False) -> list[Path]:
    """Write a workbook into folder (created if missing; its parent must exist); return the files written.

    A folder that is not empty is refused unless force; nothing is written outside it."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file; start needs a folder for the workbook")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise UsageError(f"{folder} is not empty; choose a new folder, or pass --force to write the workbook's "
                         f"files over the ones there")
    if not folder.exists():
        if not folder.parent.is_dir():
            raise UsageError(f"the folder {folder.parent} does not exist; create it first (start makes only the "
                             f"workbook's own folder)")
        folder.mkdir()
    written = []
    for task in FILE_TASKS:
        _write_atomic(folder / task.filename, render(task, with_solutions))
        written.append(folder / task.filename)
    _write_atomic(folder / README, render_readme())
    (folder / PROGRESS).unlink(missing_ok=True)  # grades of the files just replaced
    return written + [folder / README]


# ------------------------------------------------------------------ reading a task file back
@dataclass
class Source:
    """A task file: its path, and the lines of each of its functions (decorators included), by qualified name
    ("MatMul.backward")."""
    path: Path
    functions: dict  # qualified name -> (first line, last line)
    stubs: set  # the qualified names whose body is still `raise NotImplementedError(...)`
    saves: dict  # qualified name -> the arguments of each of its ctx.save_for_backward(...) calls, as written

    @classmethod
    def read(cls, path: Path) -> "Source":
        """Parse the file; a SyntaxError is raised as is (the grader shows its line)."""
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        functions, stubs, saves = {}, set(), {}
        for node in tree.body:
            members = [(f"{node.name}.", n) for n in node.body] if isinstance(node, ast.ClassDef) else [("", node)]
            for prefix, fn in members:
                if isinstance(fn, ast.FunctionDef):
                    first = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
                    functions[prefix + fn.name] = (first, fn.end_lineno)
                    if _is_stub(fn):
                        stubs.add(prefix + fn.name)
                    saves[prefix + fn.name] = _saves(fn)
        return cls(path, functions, stubs, saves)

    def who(self, lineno: int) -> str | None:
        """The qualified name of the innermost function holding that line."""
        holding = [(b - a, name) for name, (a, b) in self.functions.items() if a <= lineno <= b]
        return min(holding)[1] if holding else None

    def saved_names(self, op_name: str, n: int) -> list[str]:
        """What op_name.forward saves, as written in its one save_for_backward call of n values (["x", "t"]); else
        ctx.saved_tensors[i] for each."""
        fits = {tuple(args) for args in self.saves.get(f"{op_name}.forward", []) if len(args) == n}
        return list(fits.pop()) if len(fits) == 1 else [f"ctx.saved_tensors[{i}]" for i in range(n)]


def _saves(fn: ast.FunctionDef) -> list[list[str]]:
    """The arguments of each `ctx.save_for_backward(...)` call in fn, as written (none starred)."""
    calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "save_for_backward" and not any(isinstance(a, ast.Starred) for a in n.args)]
    return [[ast.unparse(a) for a in call.args] for call in calls]


def _is_stub(fn: ast.FunctionDef) -> bool:
    """Is the body (after a docstring) only `raise NotImplementedError(...)`?"""
    body = fn.body[1:] if ast.get_docstring(fn, clean=False) is not None else fn.body
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def load(path: Path) -> types.ModuleType:
    """Run a task file as a module of its own (fresh each time; no bytecode is written into the workbook)."""
    module = types.ModuleType(f"workbook_{path.stem}")
    module.__file__ = str(path)
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), module.__dict__)
    return module


def check_folder(folder: Path) -> None:
    """A UsageError unless folder holds a workbook (at least its first task's file)."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; start a workbook with: {CLI} start {folder}")
    if not any((folder / t.filename).is_file() for t in FILE_TASKS):
        raise UsageError(f"{folder} holds no task file ({FILE_TASKS[0].filename}, ...); start a workbook with: "
                         f"{CLI} start {folder}")


# ------------------------------------------------------------------ the grade file
def file_hash(folder: Path, task: Task) -> str | None:
    path = folder / task.filename
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def read_progress(folder: Path) -> dict:
    """{task name: {"grade", "summary", "checked", "sha256"}} from the last checks; {} if none (or unreadable)."""
    try:
        data = json.loads((folder / PROGRESS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("tasks", {}) if isinstance(data, dict) else {}


def save_grade(folder: Path, task: Task, grade: str, summary: str) -> None:
    """Record one task's grade in the grade file (written whole through a temporary file)."""
    tasks = read_progress(folder)
    tasks[task.name] = {"grade": grade, "summary": summary, "checked": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "sha256": file_hash(folder, task)}
    ordered = {t.name: tasks[t.name] for t in TASKS if t.name in tasks}
    _write_atomic(folder / PROGRESS, json.dumps({"tasks": ordered}, indent=1) + "\n")
