"""Gradient and activation report of a model: which parameters learn, which layers saturate.

    report = collect(model, idx, targets)   # one forward (with forward hooks) and one backward
    print(format_report(report))
    plot_report(report, "out/inspect.png")   # .png, .svg or .pdf; needs matplotlib: pip install -e ".[plot]"

Per named parameter: the norms of the weight and of its gradient, and their ratio |grad| / |weight|
(an SGD step of learning rate lr changes the weight by about lr times this ratio). Per module call,
from a forward hook on every sub-module: the output's shape, mean and standard deviation, and the
standard deviation of the loss gradient with respect to that output (kept with `retain_grad`).
Dropout modules are left out (their output is their input in eval mode).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import tinygrad_lite.functional as F
import tinygrad_lite.nn as nn
from tinygrad_lite import Tensor, no_grad

from . import plots
from .plots import PLOT_FORMATS

__all__ = ["ParamStats", "ActivationStats", "Report", "collect", "format_report", "plot_report", "aliases",
           "attention", "PLOT_FORMATS"]


@dataclass
class ParamStats:
    name: str  # dotted path; a tied parameter's other names follow in `aliases`
    shape: tuple
    weight_norm: float
    grad_norm: float  # nan when the parameter got no gradient
    aliases: tuple = ()

    @property
    def ratio(self) -> float:
        """|grad| / |weight| (nan for an all-zero weight, such as a bias at init)."""
        return self.grad_norm / self.weight_norm if self.weight_norm > 0 else math.nan


@dataclass
class ActivationStats:
    name: str  # module path (with " #2", " #3" for later calls of the same module)
    module: str  # class name
    shape: tuple
    mean: float
    std: float
    grad_std: float  # std of dLoss/d(output); nan when no gradient reached it


@dataclass
class Report:
    loss: float
    params: list[ParamStats] = field(default_factory=list)
    activations: list[ActivationStats] = field(default_factory=list)


def aliases(model: nn.Module, name: str) -> tuple[str, ...]:
    """The other names of the Parameter called `name` (("lm_head.weight",) for a tied transformer.wte.weight)."""
    target = dict(model.named_parameters())[name]
    return tuple(f"{path}.{attr}" if path else attr for path, module in model.named_modules()
                 for attr, value in vars(module).items() if value is target and f"{path}.{attr}" != name)


def _norm(a: np.ndarray | None) -> float:
    return math.nan if a is None else math.sqrt(float(np.square(a, dtype=np.float64).sum()))


def _std(a: np.ndarray | None) -> float:
    return math.nan if a is None else float(a.std(dtype=np.float64))


def collect(model: nn.Module, idx, targets, skip: tuple[type, ...] = (nn.Dropout,)) -> Report:
    """Run model(idx) with a forward hook on every sub-module, cross-entropy against targets, backward.

    idx, targets: integer (B, T) arrays. The model's existing gradients are cleared first and hold this
    batch's gradients afterwards; the hooks are removed again, even on error.
    """
    outputs: list[tuple[str, str, Tensor]] = []
    calls: dict[str, int] = {}

    def recorder(path: str):
        def hook(module: nn.Module, inputs: tuple, out):
            if isinstance(out, Tensor):
                calls[path] = calls.get(path, 0) + 1
                outputs.append((path if calls[path] == 1 else f"{path} #{calls[path]}", type(module).__name__, out))
                if out.requires_grad:
                    out.retain_grad()
        return hook

    handles = [m.register_forward_hook(recorder(path)) for path, m in model.named_modules()
               if path and not isinstance(m, skip)]
    try:
        model.zero_grad()
        loss = F.cross_entropy(model(idx), targets)
        loss.backward()
    finally:
        for h in handles:
            h.remove()

    report = Report(loss=loss.item())
    for name, p in model.named_parameters():
        report.params.append(ParamStats(name, p.shape, _norm(p.data), _norm(p.grad), aliases(model, name)))
    for name, kind, out in outputs:
        report.activations.append(ActivationStats(name, kind, out.shape, float(out.data.mean(dtype=np.float64)),
                                                  _std(out.data), _std(out.grad)))
    return report


def attention(model: nn.Module, idx) -> np.ndarray:
    """The attention weights of every head of every block for the integer batch idx (B, T):
    (L, B, H, T, T), where [l, b, h, t, s] is how much position t attends to position s in head h of
    block l. Each row sums to 1 and the future (s > t) is 0.

    Recomputed from the q and k that each block's attn.c_attn outputs (caught by a forward hook) as
    softmax(q k^T / sqrt(D)) with the future masked: no dropout (eval mode while it runs), no graph.
    """
    qkv: list[np.ndarray] = []
    handles = [block.attn.c_attn.register_forward_hook(lambda module, inputs, out: qkv.append(out.data))
               for block in model.transformer.h]
    was_training = model.training
    try:
        with no_grad():
            model.eval()(idx)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    H = model.config.n_head
    maps = []
    for out in qkv:  # (B, T, 3C) = [q | k | v]
        B, T, C = out.shape[0], out.shape[1], out.shape[2] // 3
        q, k = (Tensor(out[..., i * C:(i + 1) * C].reshape(B, T, H, C // H).transpose(0, 2, 1, 3), dtype=out.dtype)
                for i in (0, 1))  # (B, H, T, D)
        scores = (q @ k.swapaxes(-1, -2)) / math.sqrt(C // H)  # (B, H, T, T)
        future = np.triu(np.ones((T, T), dtype=bool), k=1)  # s > t
        maps.append(F.softmax(scores.masked_fill(future, -np.inf), axis=-1).numpy())
    return np.stack(maps)


def _e(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3e}"


def format_report(report: Report) -> str:
    """The two tables (parameters, then activations) as text."""
    rows = [(p.name + "".join(f" (= {a})" for a in p.aliases), str(p.shape), _e(p.weight_norm), _e(p.grad_norm),
             _e(p.ratio)) for p in report.params]
    w = max(len(r[0]) for r in rows) + 2
    lines = [f"{'parameter':{w}}{'shape':>14}{'|weight|':>12}{'|grad|':>12}{'|grad|/|weight|':>17}"]
    lines += [f"{n:{w}}{s:>14}{a:>12}{b:>12}{c:>17}" for n, s, a, b, c in rows]
    lines.append("")
    w = max([len(a.name) for a in report.activations] + [len("activation")]) + 2
    k = max([len(a.module) for a in report.activations] + [len("module")]) + 2
    lines.append(f"{'activation':{w}}{'module':{k}}{'shape':>16}{'mean':>12}{'std':>12}{'grad std':>12}")
    for a in report.activations:
        lines.append(f"{a.name:{w}}{a.module:{k}}{str(a.shape):>16}{a.mean:>12.4f}{a.std:>12.4f}{_e(a.grad_std):>12}")
    return "\n".join(lines)


def plot_report(report: Report, path, title: str = "") -> Path | None:
    """Plot activation std, activation-gradient std and |grad|/|weight| (gpt.plots.inspect_stats) to exactly
    `path`, whole or not at all; the format follows the suffix (.png, .svg or .pdf; anything else is a
    ValueError). Returns Path(path), or None when matplotlib is not installed (pip install -e ".[plot]")."""
    if Path(path).suffix.lower() not in PLOT_FORMATS:
        raise ValueError(f"plot_report: {path} must end in {', '.join(PLOT_FORMATS)}")
    try:
        fig = plots.inspect_stats(report, title)
    except plots.MissingMatplotlib:
        return None
    return plots.save(fig, path)
