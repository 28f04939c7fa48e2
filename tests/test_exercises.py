"""The exercises: the reference solutions pass, every stub is independent of the others, each classic
mistake planted into a solution is diagnosed with its sentence, a correct backward written differently
passes, and the command line keeps its promises (no traceback, nothing written outside the workbook)."""
from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tinygrad_lite import fast
from tinygrad_lite.exercises import FILE_TASKS, TASKS, check, find, grade, start
from tinygrad_lite.exercises.gpt_task import grade_gpt
from tinygrad_lite.backprop import toposort
from tinygrad_lite.exercises.grade import cases
from tinygrad_lite.exercises.plug import constants
from tinygrad_lite.exercises.workbook import PROGRESS, Source, load, render
from tinygrad_lite.tools.opcases import make_inputs, outputs

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "tinygrad_lite.exercises"]


def plant(path: Path, qualname: str, code: str) -> None:
    """Replace the function `qualname` ("Mul.backward", or "unbroadcast") of a task file with `code`."""
    first, last = Source.read(path).functions[qualname]
    lines = path.read_text(encoding="utf-8").splitlines()
    new = textwrap.indent(textwrap.dedent(code).strip("\n"), "    " if "." in qualname else "").splitlines()
    path.write_text("\n".join(lines[:first - 1] + new + lines[last:]) + "\n", encoding="utf-8")


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def solutions(tmp_path_factory):
    """A workbook of the engine's own backward passes, and its grades (the GPT task's included)."""
    folder = tmp_path_factory.mktemp("solutions") / "wb"
    start(folder, with_solutions=True)
    return folder, {g.task.name: g for g in check(folder)}


def copy_of(folder: Path, tmp_path: Path) -> Path:
    shutil.copytree(folder, tmp_path / "wb")
    return tmp_path / "wb"


def verdict(task_name: str, folder: Path, qualname: str, code: str):
    task = find(task_name)
    plant(folder / task.filename, qualname, code)
    return grade(task, folder)


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
        hints = [h.text.hint for h in task.helpers] + [t.hint for op in task.ops for t in (op.forward, op.backward) if t]
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


# ------------------------------------------------------------------ classic mistakes, planted
MUL_2X = """
@staticmethod
def backward(ctx, g):
    (a, b), (na, nb) = ctx.saved_tensors, ctx.needs_input_grad
    return unbroadcast(2 * g * b, a.shape) if na else None, unbroadcast(g * a, b.shape) if nb else None
"""
ADD_SIGN = """
@staticmethod
def backward(ctx, g):
    (sa, sb), (na, nb) = ctx.shapes, ctx.needs_input_grad
    return unbroadcast(g, sa) if na else None, -unbroadcast(g, sb) if nb else None
"""
ADD_NO_SUM = """
@staticmethod
def backward(ctx, g):
    return g, g
"""
MATMUL_T = """
@staticmethod
def backward(ctx, g):
    a, b = ctx.saved_tensors
    return (g @ b.swapaxes(-1, -2)).swapaxes(-1, -2), a.swapaxes(-1, -2) @ g
"""
LOG_OUT = """
@staticmethod
def backward(ctx, g):
    (x,) = ctx.saved_tensors
    return g / x.log()
"""
LAYER_NORM_NO_MEAN = """
@staticmethod
def backward(ctx, g):
    x, weight, bias, xhat, rstd = ctx.saved_tensors
    if is_grad_enabled():
        xhat, rstd = normalized(x, ctx.eps)
    gx = g if weight is None else g * weight
    C = x.shape[-1]
    dw = (g * xhat).reshape(-1, C).sum(0) if weight is not None else None
    db = g.reshape(-1, C).sum(0) if bias is not None else None
    return rstd * (gx - xhat * (gx * xhat).mean(-1, keepdims=True)), dw, db, None
"""
SOFTMAX_DIAGONAL = """
@staticmethod
def backward(ctx, g):
    (y,) = ctx.saved_tensors
    return g * y * (1 - y), None
"""
TANH_NO_SQUARE = """
@staticmethod
def backward(ctx, g):
    (out,) = ctx.saved_tensors
    return g * (1 - out)
"""
EMBEDDING_BUFFERED = """
@staticmethod
def backward(ctx, g):
    out = np.zeros(ctx.shape)
    out[ctx.ids] += g.data.reshape(-1, ctx.shape[1])
    return out, None
"""
INDEX_ADD_BUFFERED = """
@staticmethod
def forward(ctx, g, index, shape: tuple):
    ctx.index = index
    out = np.zeros(shape, g.dtype)
    out[index] += g
    return out
"""
CROSS_ENTROPY_IGNORED = """
@staticmethod
def backward(ctx, g):
    logits, e, s = ctx.saved_tensors
    N, V = logits.shape
    p = softmax(logits, -1) if is_grad_enabled() else e / s
    w = g if ctx.reduction == "none" else g.reshape(1).broadcast_to((N,))
    if ctx.reduction == "mean":
        w = w * (1.0 / max(ctx.n_valid, 1))
    return p * w.reshape(N, 1) - IndexAdd.apply(w, (np.arange(N), ctx.t), (N, V)), None, None, None
"""
GELU_ONE_TERM = """
@staticmethod
def backward(ctx, g):
    x, t = ctx.saved_tensors
    if is_grad_enabled():
        xc = _clip(x, _GELU_CLIP)
        t = (_GELU_C * (xc + _GELU_A * xc * xc * xc)).tanh()
    return g * (0.5 * (1 + t)), None
"""
ATTENTION_NO_SCALE = """
@staticmethod
def backward(ctx, g):
    q, k, v, p = ctx.saved_tensors
    if is_grad_enabled():
        p = softmax(attention_scores(q, k, ctx.causal), -1)
    dp = g @ v.swapaxes(-1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    return (unbroadcast(ds @ k, q.shape), unbroadcast(ds.swapaxes(-1, -2) @ q, k.shape),
            unbroadcast(p.swapaxes(-1, -2) @ g, v.shape), None, None)
"""

MISTAKES = [  # (task, the function planted, its code, the summary, sentences the diagnosis must hold)
    ("add_mul", "Mul.backward", MUL_2X, "Mul.backward: the gradient for a is wrong",
     ["largest error", "at a[", "a constant factor: your gradient for a is 2.00x the expected"]),
    ("add_mul", "Add.backward", ADD_SIGN, "Add.backward: the gradient for b is wrong",
     ["a flipped sign: your gradient for b is -1.00x the expected"]),
    ("add_mul", "Add.backward", ADD_NO_SUM, "Add.backward: the gradient for b is wrong",
     ["your gradient for b has shape (3, 4), expected (4,), the shape of b",
      "a missing sum over broadcast axes: b (4,) was broadcast to (3, 4) in the forward, so its gradient is g "
      "summed over axes (0,)"]),
    ("matmul", "MatMul.backward", MATMUL_T, "MatMul.backward: the gradient for a is wrong",
     ["your gradient for a has shape (4, 3), expected (3, 4), the shape of a",
      "transposed: your gradient for a is the expected one with its axes swapped"]),
    ("exp_log_tanh", "Log.backward", LOG_OUT, "Log.backward: the gradient for x is wrong",
     ["the output log x used where the input x was meant"]),
    ("exp_log_tanh", "Tanh.backward", TANH_NO_SQUARE, "Tanh.backward: the gradient for x is wrong",
     ["a missing square"]),
    ("layer_norm", "LayerNorm.backward", LAYER_NORM_NO_MEAN, "LayerNorm.backward: the gradient for x is wrong",
     ["a missing term: - mean(g * w), from the mean's dependence on every x of the row"]),
    ("softmax", "Softmax.backward", SOFTMAX_DIAGONAL, "Softmax.backward: the gradient for x is wrong",
     ["only the diagonal of the Jacobian"]),
    ("embedding", "Embedding.backward", EMBEDDING_BUFFERED, "Embedding.backward: the gradient for weight is wrong",
     ["repeated ids counted once"]),
    ("getitem", "IndexAdd.forward", INDEX_ADD_BUFFERED, "IndexAdd.forward: the output is wrong",
     ["repeated indices counted once: out[index] += g adds once per distinct position"]),
    ("cross_entropy", "CrossEntropy.backward", CROSS_ENTROPY_IGNORED,
     "CrossEntropy.backward: the gradient for logits is wrong",
     ["the ignored rows (target == ignore_index) get a gradient"]),
    ("gelu", "GELU.backward", GELU_ONE_TERM, "GELU.backward: the gradient for x is wrong",
     ["a missing term of the product rule"]),
    ("attention", "Attention.backward", ATTENTION_NO_SCALE, "Attention.backward: the gradient for q is wrong",
     ["the 1/sqrt(D) scale of the scores missing from dq and dk"]),
]


@pytest.mark.parametrize("task, qualname, code, summary, sentences", MISTAKES,
                         ids=[f"{m[1]}-{m[4][-1][:24]}" for m in MISTAKES])
def test_a_planted_classic_mistake_is_diagnosed_with_its_sentence(solutions, tmp_path, task, qualname, code,
                                                                  summary, sentences):
    g = verdict(task, copy_of(solutions[0], tmp_path), qualname, code)
    assert (g.status, g.summary) == ("FAIL", summary), (g.summary, g.details)
    assert g.details[0].startswith("case: ")
    text = "\n".join(g.details)
    for sentence in sentences:
        assert sentence in text, text
    assert "largest error" in text or "has shape" in text


def test_a_wrong_number_of_gradients_is_named(solutions, tmp_path):
    g = verdict("add_mul", copy_of(solutions[0], tmp_path), "Mul.backward", """
        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b
        """)
    assert g.summary == "Mul.backward returned 1 gradient(s) for 2 arguments"
    assert "return one gradient per forward argument (a, b)" in g.details[1]


def test_a_backward_that_cuts_the_graph_fails_gradgradcheck(solutions, tmp_path):
    g = verdict("add_mul", copy_of(solutions[0], tmp_path), "Mul.backward", """
        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return Tensor(unbroadcast(g * b, a.shape).data), Tensor(unbroadcast(g * a, b.shape).data)
        """)
    assert g.status == "FAIL" and "their own derivatives are wrong (gradgradcheck" in g.summary, g.summary
    assert g.details[1].endswith("going through .data or NumPy cuts the graph"), g.details


SAVED_CONSTANTS = [  # the engine's backward without its `if is_grad_enabled():` recomputation
    ("layer_norm", "LayerNorm.backward", "xhat, rstd", """
        @staticmethod
        def backward(ctx, g):
            x, weight, bias, xhat, rstd = ctx.saved_tensors
            gx = g if weight is None else g * weight
            C = x.shape[-1]
            dx = rstd * (gx - gx.mean(-1, keepdims=True) - xhat * (gx * xhat).mean(-1, keepdims=True))
            return (dx, None if weight is None else (g * xhat).reshape(-1, C).sum(0),
                    None if bias is None else g.reshape(-1, C).sum(0), None)
        """),
    ("cross_entropy", "CrossEntropy.backward", "e, s", """
        @staticmethod
        def backward(ctx, g):
            logits, e, s = ctx.saved_tensors
            N, V = logits.shape
            w = g if ctx.reduction == "none" else g.reshape(1).broadcast_to((N,))
            if ctx.reduction == "mean":
                w = w * (1.0 / max(ctx.n_valid, 1))
            w = w * ctx.valid
            return e / s * w.reshape(N, 1) - IndexAdd.apply(w, (np.arange(N), ctx.t), (N, V)), None, None, None
        """),
    ("gelu", "GELU.backward", "t", """
        @staticmethod
        def backward(ctx, g):
            x, t = ctx.saved_tensors
            xc = _clip(x, _GELU_CLIP)
            return g * (0.5 * (1 + t)) * (1 + xc * (1 - t) * (_GELU_C + 3 * _GELU_C * _GELU_A * xc * xc)), None
        """),
    ("attention", "Attention.backward", "p", """
        @staticmethod
        def backward(ctx, g):
            q, k, v, p = ctx.saved_tensors
            scale = 1.0 / math.sqrt(q.shape[-1])
            pd = p if ctx.keep is None else p * ctx.keep
            dp = g @ v.swapaxes(-1, -2)
            dp = dp if ctx.keep is None else dp * ctx.keep
            ds = p * (dp - (dp * p).sum(-1, keepdims=True))
            return (unbroadcast(ds @ k, q.shape) * scale, unbroadcast(ds.swapaxes(-1, -2) @ q, k.shape) * scale,
                    unbroadcast(pd.swapaxes(-1, -2) @ g, v.shape), None, None)
        """),
]


@pytest.mark.parametrize("task, qualname, names, code", SAVED_CONSTANTS, ids=[m[0] for m in SAVED_CONSTANTS])
def test_the_forwards_saved_values_used_in_a_recorded_backward_are_diagnosed(solutions, tmp_path, task, qualname,
                                                                             names, code):
    """Right gradients, wrong second derivatives: the saved values are constants when the backward is recorded."""
    g = verdict(task, copy_of(solutions[0], tmp_path), qualname, code)
    assert (g.status, g.summary) == ("FAIL", f"{qualname}: your backward gives the right gradients, but their own "
                                             f"derivatives are wrong (gradgradcheck differentiates your backward's "
                                             f"Tensor ops)"), (g.summary, g.details)
    assert g.details[0].startswith("case: ")
    assert g.details[1].startswith(f"the forward's {names} used in a recorded backward: saved, "), g.details
    assert "when is_grad_enabled() is False (a plain backward); when it is True, recompute" in g.details[1]
    assert g.details[2].startswith("gradient mismatch for input ")


def test_a_backward_in_numpy_passes_without_gradgradcheck(solutions, tmp_path):
    g = verdict("add_mul", copy_of(solutions[0], tmp_path), "Mul.backward", """
        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return unbroadcast(g.data * b.data, a.shape), unbroadcast(g.data * a.data, b.shape)
        """)
    assert g.status == "PASS" and g.summary.endswith("each with gradcheck")
    assert g.details == [
        "gradgradcheck skipped for Mul: a backward in NumPy cannot be differentiated; in Tensor ops it can"]


DIFFERENT = [  # correct backward passes written otherwise than the engine's
    ("add_mul", "Mul.backward", """
        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return unbroadcast(b * g, a.shape), unbroadcast(a * g, b.shape)
        """),
    ("softmax", "Softmax.backward", """
        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return y * g - y * (y * g).sum(ctx.axis, keepdims=True), None
        """),
    ("layer_norm", "LayerNorm.backward", """
        @staticmethod
        def backward(ctx, g):
            x, w, b = ctx.saved_tensors[:3]  # recomputed from x whether or not the backward is recorded
            C = x.shape[-1]
            mu = x.sum(-1, keepdims=True) / C
            var = ((x - mu) ** 2).sum(-1, keepdims=True) / C
            rstd = 1 / (var + ctx.eps).sqrt()
            xhat = (x - mu) * rstd
            gx = g if w is None else w * g
            dx = (C * gx - gx.sum(-1, keepdims=True) - xhat * (xhat * gx).sum(-1, keepdims=True)) * rstd / C
            rows = g.reshape(-1, C)
            return (dx, None if w is None else (xhat.reshape(-1, C) * rows).sum(0),
                    None if b is None else rows.sum(0), None)
        """),
    ("cross_entropy", "CrossEntropy.backward", """
        @staticmethod
        def backward(ctx, g):
            logits = ctx.saved_tensors[0]  # the softmax recomputed from the logits, recorded or not
            N, V = logits.shape
            w = (g if ctx.reduction == "none" else g * np.ones(N)) * ctx.valid
            if ctx.reduction == "mean":
                w = w / max(ctx.n_valid, 1)
            onehot = Tensor(np.eye(V)[ctx.t], dtype=logits.dtype)
            return (softmax(logits, -1) - onehot) * w.reshape(N, 1), None, None, None
        """),
    ("gelu", "GELU.backward", """
        @staticmethod
        def backward(ctx, g):
            x, t = ctx.saved_tensors
            x = _clip(x, _GELU_CLIP)
            if is_grad_enabled():
                t = (_GELU_C * (x + _GELU_A * x ** 3)).tanh()
            dt = (1 - t * t) * _GELU_C * (1 + 3 * _GELU_A * x * x)  # the chain rule, then the product rule
            return g * (0.5 * (1 + t) + 0.5 * x * dt), None
        """),
    ("attention", "Attention.backward", """
        @staticmethod
        def backward(ctx, g):
            q, k, v = ctx.saved_tensors[:3]  # p recomputed from q and k, recorded or not
            (tq, D), tk = q.shape[-2:], k.shape[-2]
            s = q @ k.swapaxes(-1, -2) / math.sqrt(D)
            if ctx.causal:  # query i sits at position i + tk - tq and sees the keys up to there
                s = s + Tensor(np.triu(np.full((tq, tk), -np.inf), tk - tq + 1), dtype=s.dtype)
            p = softmax(s, -1)
            pd = p if ctx.keep is None else p * ctx.keep
            dp = g @ v.swapaxes(-1, -2)
            dp = dp if ctx.keep is None else dp * ctx.keep
            ds = (dp - (dp * p).sum(-1, keepdims=True)) * p / math.sqrt(D)
            return (unbroadcast(ds @ k, q.shape), unbroadcast(ds.swapaxes(-1, -2) @ q, k.shape),
                    unbroadcast(pd.swapaxes(-1, -2) @ g, v.shape), None, None)
        """),
    ("sum_mean", "Sum.backward", """
        @staticmethod
        def backward(ctx, g):
            return Tensor.zeros(*ctx.shape, dtype=g.dtype) + g.reshape(ctx.kept), None, None
        """),
]


@pytest.mark.parametrize("task, qualname, code", DIFFERENT, ids=[d[1] for d in DIFFERENT])
def test_a_correct_backward_written_differently_passes(solutions, tmp_path, task, qualname, code):
    g = verdict(task, copy_of(solutions[0], tmp_path), qualname, code)
    assert g.status == "PASS", (g.summary, g.details)
    assert "gradgradcheck" in g.summary


def test_grading_leaves_the_engine_as_it_was_and_runs_the_math_even_in_fast_mode(solutions, tmp_path):
    from tinygrad_lite import tensor
    folder = copy_of(solutions[0], tmp_path)
    before = (fast.is_enabled(), tensor.Mul.forward, tensor.Mul.backward)
    verdict("add_mul", folder, "Mul.backward", "def backward(ctx, g):\n    raise KeyError(7)")
    assert (fast.is_enabled(), tensor.Mul.forward, tensor.Mul.backward) == before
    with fast.enabled():  # a teacher's process that turned the kernels on still grades the learner's math
        assert grade(find("layer_norm"), folder).status == "PASS"
        assert verdict("layer_norm", folder, "LayerNorm.backward", LAYER_NORM_NO_MEAN).status == "FAIL"
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


def test_the_saved_values_are_named_as_the_learners_forward_saves_them(solutions, tmp_path):
    folder = copy_of(solutions[0], tmp_path)
    path = folder / find("attention").filename
    plant(path, "Attention.forward", """
        @staticmethod
        def forward(ctx, q, k, v, causal, keep):
            e, _, z = shifted_exp(attention_scores(q, k, causal), -1)
            probs = e / z
            ctx.causal, ctx.keep = causal, keep
            ctx.save_for_backward(q, k, v, probs)
            return np.matmul(probs if keep is None else probs * keep, v)
        """)
    g = verdict("attention", folder, "Attention.backward", SAVED_CONSTANTS[-1][-1])
    assert g.details[1].startswith("the forward's probs used in a recorded backward: saved, it is a constant"), \
        g.details
    source = Source.read(path)
    assert source.saved_names("Attention", 4) == ["q", "k", "v", "probs"]
    assert source.saved_names("Attention", 3) == [f"ctx.saved_tensors[{i}]" for i in range(3)]  # no call saves 3


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
