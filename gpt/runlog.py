"""The run's log: one JSON line per evaluation in RUN/log.jsonl, beside metrics.json; what the plots read.

    {"iter": 250, "train_loss": 2.4454, "val_loss": 2.4744, "lr": 0.000987, "grad_norm": 0.412,
     "tokens_per_second": 25023.1, "layer_grad_norms": {"wte": 0.21, "wpe": 0.05, "h.0": 0.13, ..., "ln_f": 0.01}}

lr, grad_norm (the norm of the whole gradient before clipping) and layer_grad_norms (the same, per
layer: the embeddings, each block, ln_f) are those of the last step before the evaluation;
tokens_per_second is over the training steps since the previous evaluation. They are null at an
evaluation with no step before it in this process: iteration 0, or the one a run resumed after Ctrl-C
runs first when Ctrl-C landed just before it.

The training loop calls, in order:
    log = RunLog(out, resume_iter)          # a new run: no log yet; a resumed one: cut to iter <= resume_iter
    log.step(lr, grad_norm, seconds, tokens)  # after each step's gradient clipping
    log.evaluation(result, model)           # after each evaluation: the line waits ...
    log.flush()                             # ... until just before the checkpoint that covers it is saved

Crash safety. A line is written and fsynced before the checkpoint of its iteration, never after, and
resuming from the checkpoint of iteration N first cuts the log to its lines with iter <= N (rewritten
whole, atomically). A crash at any moment therefore costs no line and leaves none twice: the lines of
evaluations after the checkpoint are dropped, and the resumed run evaluates there again and writes
them anew. A torn last line (a crash inside a write) is dropped the same way; readers skip it.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .files import atomic_write

__all__ = ["LOG_FILE", "RunLog", "read_log", "layer_of", "layer_grad_norms"]

LOG_FILE = "log.jsonl"
_KEYS = ("iter", "train_loss", "val_loss", "lr", "grad_norm", "tokens_per_second", "layer_grad_norms")


def layer_of(name: str) -> str:
    """The layer a parameter belongs to: transformer.h.3.attn.c_attn.weight -> h.3, transformer.wte.weight -> wte."""
    parts = name.removeprefix("transformer.").split(".")
    return ".".join(parts[:2]) if parts[0] == "h" and len(parts) > 2 else parts[0]


def layer_grad_norms(model) -> dict[str, float]:
    """{layer: |gradient of its parameters|}, layers in model order; parameters without .grad count 0.
    A parameter shared by two modules (a tied head) counts once, in the layer of its first name."""
    squares: dict[str, float] = {}
    for name, p in model.named_parameters():
        g = 0.0 if p.grad is None else float(np.square(p.grad, dtype=np.float64).sum())
        squares[layer_of(name)] = squares.get(layer_of(name), 0.0) + g
    return {layer: math.sqrt(s) for layer, s in squares.items()}


class RunLog:
    """Appends the run's evaluation lines to out/log.jsonl (see the module docstring); out None: does nothing
    (the ranks of an MPI run other than rank 0)."""

    def __init__(self, out: str | os.PathLike | None, resume_iter: int | None) -> None:
        self.path = None if out is None else Path(out) / LOG_FILE
        self.pending: list[str] = []  # lines not yet written: their checkpoint is not saved yet
        self.last_step: tuple[float, float] | None = None  # (lr, grad norm) of the last step
        self.seconds, self.tokens = 0.0, 0  # training steps since the last evaluation
        if self.path is None:
            return
        if resume_iter is None:  # a new run (maybe replacing one with --overwrite): no lines yet
            self.path.unlink(missing_ok=True)
        elif self.path.exists():
            kept = [line for line in _lines(self.path) if line["iter"] <= resume_iter]
            text = "".join(json.dumps(line) + "\n" for line in kept)
            atomic_write(self.path, lambda tmp: _write_synced(tmp, text, "w"))

    def step(self, lr: float, grad_norm: float, seconds: float, tokens: int) -> None:
        """One optimizer step: its learning rate, its gradient norm before clipping, its time and tokens."""
        self.last_step = (float(lr), float(grad_norm))
        self.seconds += seconds
        self.tokens += tokens

    def evaluation(self, result: dict[str, Any], model) -> dict[str, Any]:
        """Queue the line of an evaluation (result: {"iter", "train_loss", "val_loss"}); model: the model whose
        .grad still holds the last step's gradient (clipped in place: scaled back here to before clipping)."""
        line = {"iter": int(result["iter"]), "train_loss": float(result["train_loss"]),
                "val_loss": float(result["val_loss"]), "lr": None, "grad_norm": None, "tokens_per_second": None,
                "layer_grad_norms": None}
        if self.last_step is not None:
            line["lr"], line["grad_norm"] = self.last_step
            clipped = layer_grad_norms(model)
            total = math.sqrt(sum(v * v for v in clipped.values()))
            scale = line["grad_norm"] / total if total > 0 else 1.0  # clipping scaled each gradient by total/grad_norm
            line["layer_grad_norms"] = {layer: v * scale for layer, v in clipped.items()}
        if self.seconds > 0:
            line["tokens_per_second"] = self.tokens / self.seconds
        self.last_step, self.seconds, self.tokens = None, 0.0, 0
        self.pending.append(json.dumps(line) + "\n")
        return line

    def flush(self) -> None:
        """Append the queued lines and fsync them: call it just before saving the checkpoint they belong to."""
        if self.path is not None and self.pending:
            _write_synced(self.path, "".join(self.pending), "a")
        self.pending = []


def _write_synced(path: str | os.PathLike, text: str, mode: str) -> None:
    with open(path, mode, encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_log(run: str | os.PathLike) -> list[dict[str, Any]]:
    """The evaluation lines of the run in folder `run` (or of the log file `run`), oldest first. A torn last
    line (a run writing it now, or killed while writing it) is skipped; anything else unreadable is a
    UsageError naming the file and the line."""
    path = Path(run)
    if path.is_dir():
        path = path / LOG_FILE
    if not path.is_file():
        raise UsageError(f"{path} does not exist; expected a training run folder holding {LOG_FILE} (written at the "
                         f"run's first checkpoint), or that file")
    return _lines(path)


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path} cannot be read: {e}") from None
    rows = text.split("\n")[:-1]  # the piece after the last newline: "" or a line cut short, skipped
    lines = []
    for number, row in enumerate(rows, 1):
        try:
            line = json.loads(row)
        except json.JSONDecodeError:
            line = None
        if not (isinstance(line, dict) and set(line) == set(_KEYS) and isinstance(line["iter"], int)):
            raise UsageError(f"{path}, line {number}: expected a JSON object with the keys {', '.join(_KEYS)}, "
                             f"got {row[:120]!r}")
        lines.append(line)
    return lines
