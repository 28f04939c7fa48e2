"""Pictures of a model and of its training, drawn with matplotlib (the optional `plot` extra).

    from gpt import plots
    from gpt.runlog import read_log
    fig = plots.training_curves(read_log("out/shakespeare"))   # a matplotlib Figure
    plots.save(fig, "out/curves.png")                           # .png, .svg or .pdf, written whole or not at all

Each function returns a new `matplotlib.figure.Figure`, made without pyplot: no window opens, no
backend is switched (a notebook keeps its inline one and shows the figure), and nothing stays
registered once the figure is dropped. matplotlib is imported when a picture is drawn, never when
this module is: the package works without it, and drawing without it raises `MissingMatplotlib`,
a UsageError naming the extra to install.

    training_curves(log, losses)      losses, learning rate, gradient norm, tokens/s, per-layer gradient norms
    loss_curves(log, losses)          train and val loss per evaluation (and the loss of every step)
    layer_grad_norms(log)             gradient norm of each layer over training
    attention_maps(att, tokens)       the attention pattern of every head: a grid of heatmaps
    inspect_stats(report)             what `python -m gpt inspect` prints (gpt.report.Report)
    hessian_contours(f, points, Hs)   a 2-D function, its critical points and its Hessians' eigenvectors
    curvature_line(lrs, losses, ...)  the loss along the gradient against its quadratic model g^T H g
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import UsageError
from .files import atomic_write

__all__ = ["MissingMatplotlib", "PLOT_FORMATS", "check_path", "save", "training_curves", "loss_curves",
           "layer_grad_norms", "attention_maps", "inspect_stats", "hessian_contours", "curvature_line"]

PLOT_FORMATS = (".png", ".svg", ".pdf")
INSTALL = 'pip install -e ".[plot]"'


class MissingMatplotlib(UsageError):
    """A picture was asked for, and matplotlib is not installed."""


def _figure(width: float, height: float):
    """A new Figure of width x height inches, not registered with pyplot."""
    try:
        import matplotlib  # noqa: F401 (first: a missing matplotlib says so even where matplotlib.figure is cached)
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingMatplotlib(f"drawing a picture needs matplotlib, which is not installed ({INSTALL})") from None
    return Figure(figsize=(width, height), layout="constrained")


def check_path(path: str | Path, flag: str, command: str | None = None) -> Path:
    """A picture's path given with `flag`: a file name ending in .png/.svg/.pdf in an existing folder, and
    matplotlib installed; else a UsageError naming the flag, or the command (so it can refuse before its work)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; expected a file name ending in {', '.join(PLOT_FORMATS)} "
                         f"(e.g. {path / 'plot.png'})")
    if path.suffix.lower() not in PLOT_FORMATS:
        raise UsageError(f"{flag} {path}: expected a file name ending in {', '.join(PLOT_FORMATS)} "
                         f"(the format follows the suffix), got {path.suffix or 'no suffix'}")
    if not path.parent.is_dir():
        raise UsageError(f"{flag} {path}: the folder {path.parent} does not exist")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingMatplotlib(f"{command or flag} needs matplotlib, which is not installed ({INSTALL})") from None
    return path


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write `fig` to exactly `path`, whole or not at all; the format follows the suffix (.png, .svg, .pdf)."""
    path = Path(path)
    fmt = path.suffix.lower()
    if fmt not in PLOT_FORMATS:
        raise ValueError(f"save: {path} must end in {', '.join(PLOT_FORMATS)}")
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=fmt[1:]))
    return path


# ------------------------------------------------------------------ a training run (gpt.runlog lines)


def _series(log: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    """(iterations, values) of the log lines where `key` is not null."""
    points = [(line["iter"], line[key]) for line in log if line.get(key) is not None]
    return [i for i, _ in points], [v for _, v in points]


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} yet\n(recorded from the first step on)", ha="center", va="center",
            transform=ax.transAxes, color="gray")


def _draw_losses(ax, log: Sequence[dict], losses: Sequence[float] | None) -> None:
    if losses:  # losses[i] is the loss of the step that led to iteration i + 1
        ax.plot(np.arange(1, len(losses) + 1), losses, color="tab:blue", alpha=0.25, lw=0.8, label="train (each step)")
    for key, color in (("train_loss", "tab:blue"), ("val_loss", "tab:orange")):
        ax.plot(*_series(log, key), "o-", ms=3, color=color, label=key.replace("_loss", "") + " (evaluation)")
    ax.set(xlabel="iteration", ylabel="cross-entropy loss", title="loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _draw_series(ax, log: Sequence[dict], key: str, label: str, log_scale: bool = False) -> None:
    iters, values = _series(log, key)
    if not iters:
        _no_data(ax, label)
    ax.plot(iters, values, "o-", ms=3, color="tab:green")
    if log_scale and iters and max(values) > 10 * min(values) > 0:  # a log scale where the values span decades
        ax.set_yscale("log")
    ax.set(xlabel="iteration", title=label)
    ax.grid(alpha=0.3)


def _draw_layers(ax, log: Sequence[dict]) -> None:
    lines = [line for line in log if line.get("layer_grad_norms")]
    layers = list(lines[-1]["layer_grad_norms"]) if lines else []
    colors = _colors(len(layers))
    for layer, color in zip(layers, colors):
        iters = [line["iter"] for line in lines if layer in line["layer_grad_norms"]]
        ax.semilogy(iters, [line["layer_grad_norms"][layer] for line in lines if layer in line["layer_grad_norms"]],
                    "o-", ms=3, color=color, label=layer)
    if layers:
        ax.legend(fontsize=7, ncol=2 if len(layers) > 8 else 1)
    else:
        _no_data(ax, "gradient norms")
    ax.set(xlabel="iteration", title="gradient norm per layer (before clipping)")
    ax.grid(alpha=0.3)


def _colors(n: int) -> list:
    from matplotlib import colormaps
    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.9, n)] if n else []


def training_curves(log: Sequence[dict], losses: Sequence[float] | None = None, title: str = ""):
    """Five panels over iterations: train/val loss, learning rate, gradient norm before clipping,
    tokens/s, and the gradient norm of each layer. log: the run's evaluation lines (gpt.runlog.read_log);
    losses: the loss of every step (metrics.json's "losses"), drawn faintly behind the evaluations."""
    fig = _figure(13, 8)
    grid = fig.add_gridspec(2, 3)
    _draw_losses(fig.add_subplot(grid[0, 0]), log, losses)
    _draw_series(fig.add_subplot(grid[0, 1]), log, "lr", "learning rate")
    _draw_series(fig.add_subplot(grid[0, 2]), log, "grad_norm", "gradient norm (before clipping)", log_scale=True)
    _draw_series(fig.add_subplot(grid[1, 0]), log, "tokens_per_second", "tokens/s (training steps)")
    _draw_layers(fig.add_subplot(grid[1, 1:]), log)
    if title:
        fig.suptitle(title)
    return fig


def loss_curves(log: Sequence[dict], losses: Sequence[float] | None = None, title: str = ""):
    """Train and val loss per evaluation (and, faintly, the loss of every step), one panel."""
    fig = _figure(7, 4.5)
    _draw_losses(fig.add_subplot(), log, losses)
    if title:
        fig.suptitle(title)
    return fig


def layer_grad_norms(log: Sequence[dict], title: str = ""):
    """The gradient norm of each layer (embeddings, each block, ln_f) at every evaluation, log scale."""
    fig = _figure(8, 4.5)
    _draw_layers(fig.add_subplot(), log)
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------ inside a model


def attention_maps(att: np.ndarray, tokens: Sequence[str] | None = None, title: str = ""):
    """A grid of heatmaps, a row per layer and a column per head: att[layer, head, t, s] is how much
    position t attends to position s (rows sum to 1; the future is 0). att: (L, H, T, T) or (H, T, T);
    tokens: T labels for the axes (shown when T <= 32)."""
    att = np.asarray(att)
    if att.ndim == 3:
        att = att[None]
    if att.ndim != 4 or att.shape[-1] != att.shape[-2]:
        raise ValueError(f"attention_maps: expected att of shape (L, H, T, T) or (H, T, T), got {np.shape(att)}")
    L, H, T, _ = att.shape
    if tokens is not None and len(tokens) != T:
        raise ValueError(f"attention_maps: {len(tokens)} tokens for T = {T} positions")
    fig = _figure(1.0 + 2.2 * H, 0.6 + 2.2 * L)
    axes = fig.subplots(L, H, squeeze=False)
    for layer in range(L):
        for head in range(H):
            ax = axes[layer, head]
            image = ax.imshow(att[layer, head], cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_title(f"layer {layer}, head {head}", fontsize=8)
            labels = tokens is not None and T <= 32
            ticks = np.arange(T) if labels else []
            ax.set_xticks(ticks, [repr(t)[1:-1] for t in tokens] if labels else [], rotation=90, fontsize=6)
            ax.set_yticks(ticks, [repr(t)[1:-1] for t in tokens] if labels else [], fontsize=6)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    fig.suptitle(title or "attention: row = the position attending, column = the position attended to")
    return fig


def inspect_stats(report, title: str = ""):
    """`python -m gpt inspect`'s numbers: activation std and the std of its gradient per module output,
    and |grad| / |weight| per parameter (a gpt.report.Report)."""
    acts, params = report.activations, report.params
    fig = _figure(max(8.0, 0.16 * max(len(acts), len(params))), 11)
    axes = fig.subplots(3, 1)
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
    return fig


# ------------------------------------------------------------------ second derivatives


def hessian_contours(f: Callable[[np.ndarray, np.ndarray], np.ndarray], points: Sequence[Sequence[float]],
                     hessians: Sequence[np.ndarray], extent: tuple[float, float, float, float] = (-1.5, 3.0, -1.5, 2.0),
                     title: str = ""):
    """Contours of f(x, y) (NumPy grids in and out) over extent (x0, x1, y0, y1), each point of `points`
    marked, and through it the eigenvectors of its 2 x 2 Hessian: blue where f curves up along it
    (eigenvalue > 0), red where it curves down, each labelled with its eigenvalue."""
    if len(points) != len(hessians):
        raise ValueError(f"hessian_contours: {len(points)} points but {len(hessians)} Hessians")
    x0, x1, y0, y1 = extent
    X, Y = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
    fig = _figure(7, 5.5)
    ax = fig.add_subplot()
    Z = f(X, Y)
    levels = np.unique(np.quantile(Z, np.linspace(0.01, 0.99, 24)))  # as many lines in the valleys as on the walls
    ax.contourf(X, Y, Z, levels=levels, cmap="Greys", alpha=0.35, extend="both")
    lines = ax.contour(X, Y, Z, levels=levels, colors="gray", linewidths=0.6)
    ax.clabel(lines, fontsize=6, fmt="%.2g")
    arrow = 0.12 * max(x1 - x0, y1 - y0)  # drawn length of an eigenvector
    for (px, py), H in zip(points, hessians):
        H = np.asarray(H, dtype=np.float64)
        if H.shape != (2, 2):
            raise ValueError(f"hessian_contours: a Hessian must be 2 x 2, got {H.shape}")
        values, vectors = np.linalg.eigh(H)  # H v = lambda v; columns of `vectors`
        ax.plot(px, py, "ko", ms=5)
        for lam, v in zip(values, vectors.T):
            v = v if v[0] + v[1] >= 0 else -v  # its label on the upper right side
            color = "tab:blue" if lam > 0 else "tab:red"
            for sign in (1, -1):
                ax.annotate("", xy=(px + sign * arrow * v[0], py + sign * arrow * v[1]), xytext=(px, py),
                            arrowprops={"arrowstyle": "->", "color": color, "lw": 1.5})
            ax.annotate(f"{lam:+.3g}", xy=(px + arrow * v[0], py + arrow * v[1]), color=color, fontsize=9,
                        xytext=(4, 4), textcoords="offset points")
    ax.set(xlabel="x", ylabel="y", xlim=(x0, x1), ylim=(y0, y1), aspect="equal",
           title=title or "critical points, and their Hessian's eigenvectors\n(blue: f curves up along it, red: down)")
    return fig


def curvature_line(lrs: Sequence[float], losses: Sequence[float], loss0: float, gg: float, gHg: float,
                   title: str = ""):
    """The loss after a gradient step of each size lr, L(theta - lr g), against its quadratic model
    L0 - lr g^T g + lr^2 / 2 g^T H g. With curvature c = g^T H g / g^T g > 0 the model is lowest at
    lr = 1 / c and back at L0 at lr = 2 / c: larger steps make the loss rise."""
    lrs = np.asarray(lrs, dtype=np.float64)
    if len(lrs) != len(losses):
        raise ValueError(f"curvature_line: {len(lrs)} step sizes but {len(losses)} losses")
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    ax.plot(lrs, losses, "o", ms=4, color="tab:blue", label="loss after the step")
    dense = np.linspace(lrs.min(), lrs.max(), 200)
    ax.plot(dense, loss0 - dense * gg + 0.5 * dense ** 2 * gHg, "-", color="tab:orange",
            label="quadratic model: L0 - lr g.g + lr^2/2 g.Hg")
    ax.axhline(loss0, color="gray", lw=0.8, ls=":")
    if gHg > 0:
        c = gHg / gg
        for x, what in ((1 / c, "lr = 1/c"), (2 / c, "lr = 2/c")):
            if lrs.min() <= x <= lrs.max():
                ax.axvline(x, color="gray", lw=0.8, ls="--")
                ax.annotate(what, xy=(x, loss0), xytext=(3, 3), textcoords="offset points", fontsize=8)
    ax.set(xlabel="step size lr", ylabel="loss", title=title or "the loss along the gradient: L(theta - lr g)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
