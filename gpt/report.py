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
from tinygrad_lite import Tensor

from .files import atomic_write

__all__ = ["ParamStats", "ActivationStats", "Report", "collect", "format_report", "plot_report", "aliases",
           "PLOT_FORMATS"]

PLOT_FORMATS = (".png", ".svg", ".pdf")


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
    """Plot activation std, activation-gradient std and |grad|/|weight| to exactly `path`.

    The format follows the suffix (.png, .svg or .pdf; anything else is a ValueError); the file is
    written whole or not at all. Returns Path(path), or None when matplotlib is not installed
    (pip install -e ".[plot]").
    """
    path = Path(path)
    if path.suffix.lower() not in PLOT_FORMATS:
        raise ValueError(f"plot_report: {path} must end in {', '.join(PLOT_FORMATS)}")
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no window
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    acts, params = report.activations, report.params
    fig, axes = plt.subplots(3, 1, figsize=(max(8.0, 0.16 * max(len(acts), len(params))), 11))
    x = np.arange(len(acts))
    axes[0].semilogy(x, [a.std for a in acts], "o-", ms=3)
    axes[0].set_ylabel("activation std")
    axes[1].semilogy(x, [a.grad_std for a in acts], "o-", ms=3, color="tab:red")
    axes[1].set_ylabel("std of dloss/d(activation)")
    for ax in axes[:2]:
        ax.set_xticks(x, [a.name for a in acts], rotation=90, fontsize=6)
        ax.grid(alpha=0.3)
    xp = np.arange(len(params))
    colors = ["tab:blue" if len(p.shape) > 1 else "tab:orange" for p in params]
    axes[2].bar(xp, [p.ratio if not math.isnan(p.ratio) else 0.0 for p in params], color=colors)
    axes[2].set_yscale("log")
    axes[2].set_ylabel("|grad| / |weight|  (blue: matrices)")
    axes[2].set_xticks(xp, [p.name for p in params], rotation=90, fontsize=6)
    axes[2].grid(alpha=0.3, axis="y")
    fig.suptitle(title or f"loss {report.loss:.4f}")
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=path.suffix.lower()[1:]))
    finally:
        plt.close(fig)
    return path
