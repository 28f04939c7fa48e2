"""The last task: a small GPT trained on the learner's ops, its losses against the engine's.

Every task that passes gives its ops: the GPT's training step runs the learner's forward and backward
in place of the engine's for those (plug.py), the engine's for the others. 50 iterations in float64
from the same initial weights and batches must give the engine's losses to 1e-8 (in float32 a correct
backward may round differently). `gpt` is imported here only: tinygrad_lite itself never needs it.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .. import fast, observe, optim
from .diagnose import exception_lines, learner_frame
from .grade import Grade
from .plug import Plug
from .tasks import Task
from .workbook import Source

ITERS, BATCH, BLOCK, LR, TOL = 50, 4, 32, 3e-3, 1e-8  # batches of 8 rows took 2-10x as long on 2 busy cores
MODEL = dict(n_layer=2, n_head=2, n_embd=32, dropout=0.0)


def train(ops: dict, data) -> tuple[list[float], set]:
    """The losses of ITERS AdamW steps of a small GPT on `data` (a gpt.data.TextData), with `ops` (engine op ->
    learner class) plugged in; and the engine ops whose backward ran."""
    from gpt import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=data.vocab_size, block_size=BLOCK, **MODEL), seed=0, dtype=np.float64)
    opt = optim.AdamW(model.parameters(), lr=LR)
    rng = np.random.default_rng(0)  # the same batches for every run
    plug, losses = Plug(ops), []
    with fast.disabled(), observe.watch(plug):
        for _ in range(ITERS):
            x, y = data.get_batch("train", BATCH, BLOCK, rng)
            loss = model.loss(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses, plug.backwards_run


@functools.cache
def _data():
    from gpt.data import TextData

    return TextData.from_file("shakespeare", tokenizer="char")


@functools.cache
def engine_losses() -> tuple:
    """The engine's own losses (computed once per process: the engine's classes are never changed)."""
    return tuple(train({}, _data())[0])


def grade_gpt(task: Task, folder: Path, grades: list[Grade]) -> Grade:
    """Train on the ops of every passing task in `grades` and on the engine's; PASS when the losses agree."""
    ops = {engine: mine for g in grades if g.status == "PASS" for engine, mine in g.ops.items()}
    if not ops:
        return Grade(task, "TODO", "no task passes yet: there is nothing of yours to train on")
    expected = engine_losses()
    try:
        losses, ran = train(ops, _data())
    except Exception as e:
        paths = [folder / g.task.filename for g in grades]
        frame = learner_frame(e, paths)
        who = Source.read(Path(frame.filename)).who(frame.lineno) if frame is not None else None
        lines = exception_lines(e, paths, who)
        return Grade(task, "FAIL", f"training on your ops: {lines[0]}", lines[1:])
    about = (f"a GPT of {MODEL['n_layer']} layers (n_embd {MODEL['n_embd']}, {MODEL['n_head']} heads) on Tiny "
             f"Shakespeare's characters, batches of {BATCH} x {BLOCK}, AdamW, float64")
    engines = sorted(op.__name__ for op in ran - set(ops))
    whose = (f"the engine's backward ran for {', '.join(engines)}, whose tasks do not pass yet" if engines else
             "every backward in the training step was yours: " + ", ".join(sorted(op.__name__ for op in ran)))
    diff = np.abs(np.array(losses) - np.array(expected))
    if not diff.max() <= TOL:
        i = int(np.argmax(~(diff <= TOL)))
        return Grade(task, "FAIL", f"your ops train differently: at iteration {i} your loss is {losses[i]:.10g}, the "
                                   f"engine's {expected[i]:.10g}", [about, whose])
    summary = (f"{ITERS} iterations on your ops: loss {losses[0]:.4f} -> {losses[-1]:.4f}, the engine's losses to "
               f"{diff.max():.1g}")
    return Grade(task, "PASS", summary, [about, whose])
