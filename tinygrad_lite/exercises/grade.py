"""Grading one task: each of its ops on the op table's cases, in the engine, with the learner's class in
place of the engine's.

Per case (float64, the inputs of `opcases.make_inputs`): the engine's run and the learner's run,
each backpropagating the same random upstream gradient, are compared node by node (the op's output,
then each input's gradient, by name); then gradcheck (central differences over the whole Jacobian),
and gradgradcheck (projections=True: random projections) when the learner's backward returns Tensors. The
first case that fails is diagnosed (diagnose.py); when only the second derivatives are wrong, a Probe
run tells whether the backward used the forward's saved values as constants. Only this task's ops are
the learner's: a task never needs another's code.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import autograd, fast, observe
from ..tensor import Tensor
from ..tools.gradcheck import GradcheckError, gradcheck, gradgradcheck
from ..tools.opcases import TABLE, make_inputs, outputs, seed_for
from .diagnose import CUT_GRAPH, as_array, compare, exception_lines, learner_frame, saved_constants
from .plug import Call, Plug, Probe, arg_names, as_tuple
from .tasks import Op, Task
from .workbook import Source, load


@dataclass
class Grade:
    """A task's grade: TODO, PASS or FAIL; `summary` in a line, then the diagnosis; `ops` maps each engine op
    to the learner's class when the task passes (the GPT task trains on them)."""
    task: Task
    status: str
    summary: str
    details: list = field(default_factory=list)
    ops: dict = field(default_factory=dict)


class Failed(Exception):
    """One op's verdict when it does not pass: TODO (it waits for a stub) or FAIL, with its lines."""

    def __init__(self, status: str, summary: str, details: list):
        super().__init__(summary)
        self.status, self.summary, self.details = status, summary, details


def cases(op: Op) -> list:
    """(row, case) of the op table for this op: its own rows and its extra rows, filtered by `only`."""
    rows = [r for r in TABLE if (r.op if r.op else r.name) == op.cls.name or r.name in op.extra_rows]
    return [(row, c) for row in rows for c in row.cases if all(c.kw.get(k) == v for k, v in op.only.items())]


def _run(row, case, plug: Plug, create_graph: bool = False) -> list[Call]:
    """row's function on the case's inputs, then backward from a random upstream gradient per output (recorded
    with create_graph); the watched op's Calls, in backward order."""
    inputs = make_inputs(row, case, "contig")
    rng = np.random.default_rng(seed_for(row.name, case.id, "g"))
    with observe.watch(plug):
        outs = [o for o in outputs(row.fn(*inputs, **case.kw)) if o.requires_grad]
        seeds = [Tensor(rng.standard_normal(o.shape), dtype=o.dtype) for o in outs]
        autograd.backward(outs, seeds, create_graph=create_graph)
    return plug.calls


def _describe(op: Op, call: Call) -> str:
    """MatMul(a (2, 3, 4), b (4, 5)) with a random upstream gradient g (2, 3, 5)."""
    parts = []
    for name, v in call.args.items():
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            parts.append(f"{name} {v.shape}")
        else:
            text = np.array2string(v, separator=", ", threshold=12) if isinstance(v, np.ndarray) else repr(v)
            parts.append(f"{name}={' '.join(text.split())}")
    return f"{op.name}({', '.join(parts)}) with a random upstream gradient g {call.g.shape}"


def _mistakes(op: Op, call: Call, expected: dict, name: str) -> list:
    """(sentence, what the mistake gives for `name`) for each classic mistake of the op that applies here."""
    found = []
    for m in op.mistakes:
        try:
            theirs = m.grads(call, expected).get(name)
        except (ValueError, IndexError, TypeError):  # the mistake does not fit this case's shapes
            continue
        found.append((m.sentence, None if theirs is None else np.asarray(theirs)))
    return found


def _compare_call(op: Op, yours: Call, expected: Call, case_line: str) -> None:
    """Raise Failed at the first difference: the op's output (a forward to write), then each input's gradient."""
    problems = compare("output", "out", yours.out, expected.out, _mistakes(op, yours, {}, "out"))
    if problems:
        raise Failed("FAIL", f"{op.name}.forward: the output is wrong", [case_line] + problems)
    names = arg_names(op.cls)
    grads = as_tuple(yours.grads)
    if len(grads) != len(names):
        raise Failed("FAIL", f"{op.name}.backward returned {len(grads)} gradient(s) for {len(names)} arguments", [
            case_line, f"return one gradient per forward argument ({', '.join(names)}), None for those that need none"])
    wanted = {n: as_array(e) for n, e in zip(names, as_tuple(expected.grads)) if e is not None}
    for name, e in wanted.items():
        problems = compare(f"gradient for {name}", name, as_array(grads[names.index(name)]), e,
                           _mistakes(op, yours, wanted, name))
        if problems:
            raise Failed("FAIL", f"{op.name}.backward: the gradient for {name} is wrong", [case_line] + problems)


def _raised(e: Exception, op: Op, src: Source, case_line: str) -> Failed:
    """The verdict for an exception from the learner's code: TODO when it comes from one of their stubs."""
    frame = learner_frame(e, src.path)
    who = src.who(frame.lineno) if frame is not None else None
    if isinstance(e, NotImplementedError) and who in src.stubs:
        return Failed("TODO", f"{op.name} waits for {who}, still to write", [])
    lines = exception_lines(e, src.path, who)
    return Failed("FAIL", lines[0], [case_line] + lines[1:])


def _grade_case(op: Op, cls: type, row, case, src: Source) -> bool:
    """Grade one case; True when the learner's backward returned Tensors (and gradgradcheck passed)."""
    expected = _run(row, case, Plug({}, watch=op.cls))
    case_line = f"case: {_describe(op, expected[0])}"
    plug = Plug({op.cls: cls}, watch=op.cls)
    try:
        yours = _run(row, case, plug)
    except Exception as e:
        if learner_frame(e, src.path) is None and plug.calls:  # the engine refused what the learner's backward gave
            _compare_call(op, plug.calls[-1], expected[len(plug.calls) - 1], case_line)
        raise _raised(e, op, src, case_line) from None
    for y, x in zip(yours, expected):
        _compare_call(op, y, x, case_line)
    fn = functools.partial(row.fn, **case.kw)
    returned = [g for c in yours for g in as_tuple(c.grads) if g is not None]
    in_tensor_ops = all(hasattr(g, "_wrap") for g in returned)
    # gradcheck compares the whole Jacobian; gradgradcheck random projections of it (the whole one on a mismatch)
    checks = (gradcheck, functools.partial(gradgradcheck, projections=True))
    for check in checks if in_tensor_ops else checks[:1]:
        try:
            with observe.watch(Plug({op.cls: cls})):
                check(fn, make_inputs(row, case, "contig"))
        except GradcheckError as e:
            if check is gradcheck:
                first, why = "gradcheck (central differences) disagrees with your backward", []
            else:
                first = ("your backward gives the right gradients, but their own derivatives are wrong "
                         "(gradgradcheck differentiates your backward's Tensor ops)")
                why = [_second_derivatives(op, cls, row, case, src)]
            raise Failed("FAIL", f"{op.name}.backward: {first}",
                         [case_line, *why, str(e).removeprefix("gradcheck: ")])
        except Exception as e:
            raise _raised(e, op, src, case_line) from None
    return in_tensor_ops


def _second_derivatives(op: Op, cls: type, row, case, src: Source) -> str:
    """Why a backward's own derivatives are wrong: the forward's saved constants used when the backward is
    recorded (a Probe run of the case, with create_graph, finds them in the graph), or a graph cut otherwise."""
    probe = Probe({op.cls: cls}, op.cls)
    try:
        _run(row, case, probe, create_graph=True)
    except Exception:  # it ran in gradgradcheck: should it fail here, the general reason is said
        probe.used.clear()
    if not probe.used:
        return CUT_GRAPH
    names = src.saved_names(op.name, probe.n_saved)
    return saved_constants([names[i] for i in sorted(probe.used)])


def _grade_op(op: Op, module, src: Source) -> tuple[int, bool]:
    """(cases, all in Tensor ops) when the op passes; else raises Failed."""
    cls = getattr(module, op.name, None)
    if not (isinstance(cls, type) and hasattr(cls, "apply") and hasattr(cls, "backward")):
        raise Failed("FAIL", f"your file has no class {op.name}", [
            f"the grader finds your op by the engine's class name: keep `class {op.name}(Function):`"])
    todo = [f"{op.name}.{m}" for m in ("forward", "backward") if f"{op.name}.{m}" in src.stubs]
    if todo:
        raise Failed("TODO", f"to write: {', '.join(todo)}", [])
    in_tensor_ops = True
    for row, case in cases(op):
        in_tensor_ops &= _grade_case(op, cls, row, case, src)
    return len(cases(op)), in_tensor_ops


def grade(task: Task, folder: Path) -> Grade:
    """Grade one task of the workbook in folder. The fast kernels are off meanwhile: with them on, a
    create_graph backward would rebuild a kernel node's context with the engine's forward (plug.py)."""
    path = folder / task.filename
    if not path.is_file():
        return Grade(task, "FAIL", f"{path} is missing",
                     ["`start <folder> --force` writes every task file anew (over your work)"])
    try:
        src = Source.read(path)
        module = load(path)
    except Exception as e:
        frame = learner_frame(e, path)
        lines = exception_lines(e, path, None if frame is None else Source.read(path).who(frame.lineno))
        return Grade(task, "FAIL", lines[0], lines[1:])
    verdicts, passed, counts, numpy_ops = [], [], 0, []
    with fast.disabled():
        for op in task.ops:
            try:
                n, in_tensor_ops = _grade_op(op, module, src)
            except Failed as f:
                verdicts.append(f)
                continue
            passed.append(op.name)
            counts += n
            numpy_ops += [] if in_tensor_ops else [op.name]
    if verdicts:
        return _not_passed(task, src, verdicts, passed)
    checks = "gradcheck and gradgradcheck" if not numpy_ops else "gradcheck"
    summary = f"{', '.join(op.name for op in task.ops)}: {counts} cases, each with {checks}"
    details = [f"gradgradcheck skipped for {', '.join(numpy_ops)}: a backward in NumPy cannot be differentiated; "
               f"in Tensor ops it can"] if numpy_ops else []
    return Grade(task, "PASS", summary, details, {op.cls: getattr(module, op.name) for op in task.ops})


def _not_passed(task: Task, src: Source, verdicts: list, passed: list) -> Grade:
    """FAIL with the first failing op's diagnosis, or TODO listing the stubs left; the ops that pass said too."""
    also = [f"{', '.join(passed)} pass{'es' if len(passed) == 1 else ''}"] if passed else []
    stubs = ", ".join(n for n in src.functions if n in src.stubs)
    failed = [f for f in verdicts if f.status == "FAIL"]
    if failed:
        also += [f"also: {f.summary}" for f in failed[1:]] + ([f"still to write: {stubs}"] if stubs else [])
        return Grade(task, "FAIL", failed[0].summary, failed[0].details + also)
    waits = [f.summary for f in verdicts if "waits for" in f.summary]
    return Grade(task, "TODO", f"to write: {stubs}", waits + also)
