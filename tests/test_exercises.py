"""The exercises: the reference solutions pass, every stub is independent of the others, the hints name what
the learner can run, and the command line keeps its promises (no traceback, nothing written outside the
workbook). The diagnoses of planted mistakes: test_exercises_diagnosis.py."""
from __future__ import annotations

import inspect
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from workbooks import copy_of, plant, verdict

from tinygrad_lite import fast
from tinygrad_lite.backprop import toposort
from tinygrad_lite.exercises import FILE_TASKS, TASKS, find, grade, start
from tinygrad_lite.exercises.gpt_task import grade_gpt
from tinygrad_lite.exercises.grade import cases
from tinygrad_lite.exercises.plug import constants
from tinygrad_lite.exercises.workbook import PROGRESS, Source, load, render
from tinygrad_lite.tools.opcases import make_inputs, outputs

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "tinygrad_lite.exercises"]


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


# ------------------------------------------------------------------ the reference, and independent stubs
def test_the_solutions_pass_every_task_and_the_gpt_trains_on_them_alone(solutions):
    _, grades = solutions
    assert {name: g.status for name, g in grades.items()} == {t.name: "PASS" for t in TASKS}
    assert all("gradgradcheck" in g.summary for name, g in grades.items() if name != "gpt")
    gpt = grades["gpt"]
    assert "50 iterations on your ops" in gpt.summary
    assert gpt.details[1].startswith("every backward in the training step was yours: ")
    for op in ("Attention", "CrossEntropy", "Embedding", "GELU", "LayerNorm", "Linear", "MatMul"):
        assert op in gpt.details[1]


@pytest.mark.parametrize("task", FILE_TASKS, ids=[t.name for t in FILE_TASKS])
def test_restoring_one_stub_turns_exactly_that_task_todo(solutions, task, tmp_path):
    folder = copy_of(solutions[0], tmp_path)
    (folder / task.filename).write_text(render(task, solutions=False), encoding="utf-8")
    for other in FILE_TASKS:
        g, before = grade(other, folder), solutions[1][other.name]
        if other is task:
            assert g.status == "TODO" and g.summary.startswith("to write: "), (g.summary, g.details)
        else:
            assert (g.status, g.summary, g.details) == (before.status, before.summary, before.details)


def test_the_gpt_task_trains_on_the_engine_op_of_a_task_that_does_not_pass(solutions, tmp_path):
    folder = copy_of(solutions[0], tmp_path)
    task = find("layer_norm")
    (folder / task.filename).write_text(render(task, solutions=False), encoding="utf-8")
    grades = [grade(t, folder) for t in FILE_TASKS]
    g = grade_gpt(find("gpt"), folder, grades)
    assert g.status == "PASS", (g.summary, g.details)
    assert g.details[1] == "the engine's backward ran for LayerNorm, whose tasks do not pass yet"
    assert grade_gpt(find("gpt"), folder, []).status == "TODO"


def test_a_stub_workbook_is_all_todo_and_each_class_is_the_engine_op(tmp_path):
    start(tmp_path / "wb")
    for task in FILE_TASKS:
        g = grade(task, tmp_path / "wb")
        assert g.status == "TODO", (task.name, g.summary)
        module = load(tmp_path / "wb" / task.filename)
        for op in task.ops:
            mine = getattr(module, op.name)
            assert mine.name == op.cls.name
            assert inspect.signature(mine.forward) == inspect.signature(op.cls.forward)
            with pytest.raises(NotImplementedError, match=f"{op.name}.backward: not written yet"):
                mine.backward(None, None)
    assert grade_gpt(find("gpt"), tmp_path / "wb", [grade(t, tmp_path / "wb") for t in FILE_TASKS]).status == "TODO"


def test_every_engine_function_a_hint_calls_is_imported_in_its_file(tmp_path):
    """A hint that says `normalized(x, ctx.eps)` or `attention_scores(q, k, causal)` is one the learner can run."""
    from tinygrad_lite import functional, shapes, tensor
    start(tmp_path / "wb")
    engine = {name for m in (functional, shapes, tensor) for name, v in vars(m).items() if callable(v)}
    for task in FILE_TASKS:
        names = load(tmp_path / "wb" / task.filename).__dict__
        texts = [h.text for h in task.helpers] + [t for op in task.ops for t in (op.forward, op.backward) if t]
        hints = [t.hint for t in texts]
        called = {name for hint in hints for name in re.findall(r"(?<![.\w])([A-Za-z_]\w*)\(", hint)}
        assert {name for name in called & engine if name not in names} == set(), task.name


def test_each_hint_unpacks_ctx_saved_tensors_and_says_which_of_it_is_constant(solutions):
    """What the engine's forward saves, found by running it: the hint names it, and for the values the forward
    computed (constants to a recorded backward: layer norm's xhat, rstd, ...) teaches when to recompute them."""
    for task in FILE_TASKS:
        src = Source.read(solutions[0] / task.filename)
        for op in task.ops:
            row, case = cases(op)[0]
            out = outputs(row.fn(*make_inputs(row, case, "contig"), **case.kw))[0]
            ctx = next(t._ctx for t in toposort([out]) if t._ctx is not None and t._ctx.fn is op.cls)
            saved, hint = ctx.saved_tensors, op.backward.hint
            if not saved:
                continue
            names = src.saved_names(op.name, len(saved))
            assert f"{f'({names[0]},)' if len(names) == 1 else ', '.join(names)} = ctx.saved_tensors" in hint, op.name
            computed = [names[i] for i in constants(ctx, saved)]
            lesson = ["when is_grad_enabled() is True", "recorded for second derivatives", "gradgradcheck checks this"]
            assert all(words in hint for words in lesson + computed) if computed else "is_grad_enabled" not in hint, \
                (op.name, computed)


WRONG_LAYER_NORM = """
def backward(ctx, g):
    return 2 * g, None, None, None
"""


def test_grading_leaves_the_engine_as_it_was_and_runs_the_math_even_in_fast_mode(solutions, tmp_path):
    from tinygrad_lite import tensor
    folder = copy_of(solutions[0], tmp_path)
    before = (fast.is_enabled(), tensor.Mul.forward, tensor.Mul.backward)
    verdict("add_mul", folder, "Mul.backward", "def backward(ctx, g):\n    raise KeyError(7)")
    assert (fast.is_enabled(), tensor.Mul.forward, tensor.Mul.backward) == before
    with fast.enabled():  # a teacher's process that turned the kernels on still grades the learner's math
        assert grade(find("layer_norm"), folder).status == "PASS"
        assert verdict("layer_norm", folder, "LayerNorm.backward", WRONG_LAYER_NORM).status == "FAIL"
        assert fast.is_enabled()


def test_a_forward_that_keeps_other_things_on_ctx_passes_also_in_fast_mode(solutions, tmp_path):
    """Attention (a harder task) with a forward of the learner's own, keeping ctx.scale, which the engine's
    forward does not: graded with the fast kernels on, gradgradcheck must still run the learner's forward."""
    folder = copy_of(solutions[0], tmp_path)
    path = folder / find("attention").filename
    plant(path, "Attention.forward", """
        @staticmethod
        def forward(ctx, q, k, v, causal, keep):
            ctx.scale, ctx.causal, ctx.keep = 1.0 / math.sqrt(q.shape[-1]), causal, keep
            e, _, z = shifted_exp(attention_scores(q, k, causal), -1)
            ctx.save_for_backward(q, k, v, e / z)
            return np.matmul(e / z if keep is None else e / z * keep, v)
        """)
    source = path.read_text(encoding="utf-8")
    path.write_text(source.replace("scale = 1.0 / math.sqrt(q.shape[-1])", "scale = ctx.scale"), encoding="utf-8")
    assert "scale = ctx.scale" in path.read_text(encoding="utf-8")
    with fast.enabled():
        g = grade(find("attention"), folder)
    assert g.status == "PASS", (g.summary, g.details)


def test_a_stub_that_another_function_needs_leaves_it_waiting(solutions, tmp_path):
    folder = copy_of(solutions[0], tmp_path)
    g = verdict("add_mul", folder, "unbroadcast", 'def unbroadcast(g, shape):\n    raise NotImplementedError("later")')
    assert (g.status, g.summary) == ("TODO", "to write: unbroadcast")
    assert g.details == ["Add waits for unbroadcast, still to write", "Mul waits for unbroadcast, still to write"]


# ------------------------------------------------------------------ the command line
def test_a_learners_exception_is_shown_at_their_line_without_a_traceback(solutions, tmp_path):
    folder = copy_of(solutions[0], tmp_path)
    plant(folder / "01_add_mul.py", "Mul.backward", """
        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g.data[99], None
        """)
    line = Source.read(folder / "01_add_mul.py").functions["Mul.backward"][1]
    res = run_cli("check", folder, "add_mul")
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stdout + res.stderr and "exercises/grade.py" not in res.stdout
    assert " 1 add_mul            FAIL  Mul.backward raised IndexError: index 99 is out of bounds" in res.stdout
    assert f"at {folder / '01_add_mul.py'}:{line}, in backward: return g.data[99], None" in res.stdout
    saved = json.loads((folder / PROGRESS).read_text())["tasks"]
    assert list(saved) == ["add_mul"] and saved["add_mul"]["grade"] == "FAIL"


def test_a_syntax_error_is_shown_at_its_line(solutions, tmp_path):
    folder = copy_of(solutions[0], tmp_path)
    first = Source.read(folder / "02_matmul.py").functions["MatMul.backward"][0]
    plant(folder / "02_matmul.py", "MatMul.backward", "def backward(ctx, g)\n    return g")
    g = grade(find("matmul"), folder)
    assert (g.status, g.summary) == ("FAIL", "your file does not compile: SyntaxError: expected ':'")
    assert g.details == [f"at {folder / '02_matmul.py'}:{first}: def backward(ctx, g)"]


def test_start_refuses_a_folder_that_is_not_empty_without_force_and_writes_nothing_outside(tmp_path):
    (tmp_path / "work").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    res = run_cli("start", "my-autograd", cwd=tmp_path / "work")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["my-autograd"]
    names = sorted(p.name for p in (tmp_path / "work" / "my-autograd").iterdir())
    assert names == sorted([t.filename for t in FILE_TASKS] + ["README.md"])
    mine = tmp_path / "work" / "my-autograd" / "02_matmul.py"
    mine.write_text("my work\n")
    res = run_cli("start", "my-autograd", cwd=tmp_path / "work")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == ("error: my-autograd is not empty; choose a new folder, or pass --force to write the "
                          "workbook's files over the ones there\n")
    assert mine.read_text() == "my work\n"
    assert run_cli("start", "my-autograd", "--force", cwd=tmp_path / "work").returncode == 0
    assert mine.read_text() == render(find("matmul"), solutions=False)
    res = run_cli("start", "missing/my-autograd", cwd=tmp_path / "work")
    assert res.returncode == 2 and res.stderr.startswith("error: the folder missing does not exist")


def test_check_and_list_exit_codes_and_grades(tmp_path):
    assert run_cli("start", tmp_path / "wb").returncode == 0
    res = run_cli("check", tmp_path / "wb", "2", "softmax")
    assert res.returncode == 0, res.stderr  # nothing attempted: nothing fails
    assert res.stdout.splitlines() == [
        " 2 matmul             TODO  to write: MatMul.backward",
        " 8 softmax            TODO  to write: Softmax.backward",
        f"0 pass, 0 fail, 2 to do, of 2 task(s) checked; grades kept in {tmp_path / 'wb' / PROGRESS}"]
    listing = run_cli("list", tmp_path / "wb").stdout
    assert " 2 matmul             TODO                MatMul" in listing
    assert " 3 linear             -                   Linear" in listing
    (tmp_path / "wb" / "02_matmul.py").write_text(render(find("matmul"), solutions=True))
    assert " 2 matmul             TODO (edited since) MatMul" in run_cli("list", tmp_path / "wb").stdout
    res = run_cli("check", tmp_path / "wb", "nope")
    assert res.returncode == 2 and res.stderr.startswith("error: no task 'nope'; the tasks are: add_mul, matmul")
    res = run_cli("check", tmp_path / "elsewhere")
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "start" in res.stderr
    assert "1 add_mul" in run_cli("list").stdout


@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_check_stopped_by_a_signal_exits_with_its_code_and_keeps_whole_grades(solutions, tmp_path, sig, code, said):
    folder = copy_of(solutions[0], tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(CLI + ["check", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    first = proc.stdout.readline()  # task 1 graded; the GPT task alone takes longer than what follows
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert first.startswith(" 1 add_mul            PASS")
    assert (proc.returncode, err) == (code, said + "\n"), (out, err)
    grades = json.loads((folder / PROGRESS).read_text())["tasks"]
    assert grades["add_mul"]["grade"] == "PASS" and "gpt" not in grades


def test_the_gpt_task_fails_when_an_op_passes_its_cases_but_trains_differently(solutions, tmp_path):
    folder = copy_of(solutions[0], tmp_path)
    plant(folder / "10_layer_norm.py", "LayerNorm.backward", """
        @staticmethod
        def backward(ctx, g):
            x, weight, bias, _, _ = ctx.saved_tensors
            C = x.shape[-1]
            xhat = (x - x.mean(-1, keepdims=True)) * ((x.var(-1, keepdims=True) + ctx.eps) ** -0.5)
            gx = g if weight is None else g * weight
            rstd = (x.var(-1, keepdims=True) + ctx.eps) ** -0.5
            dx = (gx - gx.mean(-1, keepdims=True) - xhat * (gx * xhat).mean(-1, keepdims=True)) * rstd
            dx = dx * 1.01 if C > 8 else dx  # wrong only for more features than the op table's cases have
            return (dx, None if weight is None else (g * xhat).reshape(-1, C).sum(0),
                    None if bias is None else g.reshape(-1, C).sum(0), None)
        """)
    grades = [grade(t, folder) for t in FILE_TASKS]
    assert all(g.status == "PASS" for g in grades)
    g = grade_gpt(find("gpt"), folder, grades)
    assert g.status == "FAIL" and g.summary.startswith("your ops train differently: at iteration 1 your loss is "), \
        g.summary


def test_the_exercises_do_not_import_gpt_until_its_task():
    code = "import sys, tinygrad_lite.exercises; assert 'gpt' not in sys.modules, 'gpt imported'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert res.returncode == 0, res.stderr


README_SECTION = "## Exercises: write the backward passes yourself"


def test_the_readme_section_runs_and_shows_a_real_diagnosis(tmp_path):
    section = (ROOT / "README.md").read_text(encoding="utf-8").split(README_SECTION, 1)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", section, flags=re.M | re.S)  # (language, text), in order
    (commands,), (code,), (output,) = ([text for lang, text in blocks if lang == want]
                                       for want in ("", "python", "text"))
    for line in commands.splitlines():  # start, list, check: each works on the new workbook
        cmd = line.split("#")[0].split()
        assert cmd[:3] == ["python", "-m", "tinygrad_lite.exercises"], line
        res = run_cli(*cmd[3:], cwd=tmp_path)
        assert res.returncode == 0, (line, res.stdout, res.stderr)
    plant(tmp_path / "my-autograd" / "02_matmul.py", "MatMul.backward", code)
    command, *shown = output.splitlines()
    cmd = command.removeprefix("$ ").split()
    assert cmd[:3] == ["python", "-m", "tinygrad_lite.exercises"], command
    res = run_cli(*cmd[3:], cwd=tmp_path)
    assert res.returncode == 1 and res.stderr == ""
    assert res.stdout.splitlines() == shown
