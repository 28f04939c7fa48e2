"""gpt.plots: every picture draws (Agg) and is not empty, and shows the numbers it was given (without
matplotlib the package still works: tests/test_cli_plot.py)."""
import math
import sys

import numpy as np
import pytest

from gpt import GPT, GPTConfig, plots
from gpt.report import collect

pytestmark = pytest.mark.plot
pytest.importorskip("matplotlib")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

LOG = [  # three evaluations of a 2-block run, as gpt.runlog writes them; iteration 0 has no step before it
    {"iter": 0, "train_loss": 4.19, "val_loss": 4.20, "lr": None, "grad_norm": None, "tokens_per_second": None,
     "layer_grad_norms": None},
    {"iter": 10, "train_loss": 3.10, "val_loss": 3.30, "lr": 1e-3, "grad_norm": 2.5, "tokens_per_second": 9000.0,
     "layer_grad_norms": {"wte": 1.5, "wpe": 0.3, "h.0": 1.2, "h.1": 1.0, "ln_f": 0.1}},
    {"iter": 20, "train_loss": 2.60, "val_loss": 2.90, "lr": 5e-4, "grad_norm": 1.1, "tokens_per_second": 9500.0,
     "layer_grad_norms": {"wte": 0.7, "wpe": 0.2, "h.0": 0.5, "h.1": 0.6, "ln_f": 0.05}},
]
LOSSES = list(np.linspace(4.2, 2.6, 20))


def colored_pixels(fig, ax) -> int:
    """Pixels inside ax's box that are clearly colored (not white, gray or black): what was drawn in it."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
    box = ax.get_window_extent()
    height = rgb.shape[0]
    inside = rgb[int(height - box.y1):int(height - box.y0), int(box.x0):int(box.x1)]
    return int(((inside.max(axis=-1) - inside.min(axis=-1)) > 60).sum())


def data_axes(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def assert_drawn(fig, n_axes):
    axes = data_axes(fig)
    assert len(axes) == n_axes
    for ax in axes:
        assert colored_pixels(fig, ax) > 50, ax.get_title()


def test_training_curves_draws_five_panels_with_the_logged_numbers():
    fig = plots.training_curves(LOG, LOSSES, title="run")
    assert_drawn(fig, 5)
    loss, lr, norm, speed, layers = data_axes(fig)
    step, train, val = loss.lines
    assert np.array_equal(step.get_xdata(), np.arange(1, 21)) and np.allclose(step.get_ydata(), LOSSES)
    assert list(train.get_xdata()) == [0, 10, 20] and list(train.get_ydata()) == [4.19, 3.10, 2.60]
    assert list(val.get_ydata()) == [4.20, 3.30, 2.90]
    for ax, values in ((lr, [1e-3, 5e-4]), (norm, [2.5, 1.1]), (speed, [9000.0, 9500.0])):  # nulls left out
        assert list(ax.lines[0].get_xdata()) == [10, 20] and list(ax.lines[0].get_ydata()) == values
    assert norm.get_yscale() == "linear"  # 2.5 and 1.1: a log scale only for values spanning decades
    wide = [dict(line, grad_norm=line["grad_norm"] and line["grad_norm"] ** 4) for line in LOG]  # 39 and 1.5
    assert data_axes(plots.training_curves(wide))[2].get_yscale() == "log"
    assert [line.get_label() for line in layers.lines] == ["wte", "wpe", "h.0", "h.1", "ln_f"]
    assert list(layers.lines[2].get_ydata()) == [1.2, 0.5]


def test_loss_curves_and_layer_grad_norms_alone():
    fig = plots.loss_curves(LOG)
    assert_drawn(fig, 1)
    assert [line.get_label() for line in fig.axes[0].lines] == ["train (evaluation)", "val (evaluation)"]
    fig = plots.layer_grad_norms(LOG)
    assert_drawn(fig, 1)
    assert len(fig.axes[0].lines) == 5 and fig.axes[0].get_yscale() == "log"


def test_a_log_with_only_the_first_evaluation_says_there_is_no_data_yet():
    fig = plots.training_curves(LOG[:1])
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert sum(t.startswith("no ") for t in texts) == 4  # lr, gradient norm, tokens/s, per layer
    assert colored_pixels(fig, fig.axes[0]) > 50  # the two loss points


def test_attention_maps_grid_shows_each_head():
    rng = np.random.default_rng(0)
    att = np.tril(rng.random((2, 3, 5, 5)))
    att /= att.sum(-1, keepdims=True)
    fig = plots.attention_maps(att, tokens=list("hello"))
    assert_drawn(fig, 6)
    for i, ax in enumerate(data_axes(fig)):
        (image,) = ax.images
        assert np.array_equal(image.get_array(), att[i // 3, i % 3]), ax.get_title()
        assert [t.get_text() for t in ax.get_xticklabels()] == list("hello")
    assert data_axes(plots.attention_maps(att[0]))[0].get_title() == "layer 0, head 0"  # (H, T, T): one row
    with pytest.raises(ValueError, match=r"\(L, H, T, T\) or \(H, T, T\), got \(5, 5\)"):
        plots.attention_maps(att[0, 0])
    with pytest.raises(ValueError, match="4 tokens for T = 5"):
        plots.attention_maps(att, tokens=list("hell"))


def test_inspect_stats_draws_the_report():
    model = GPT(GPTConfig.from_preset("tiny", n_layer=1), seed=0)
    report = collect(model, np.zeros((1, 4), np.int64), np.ones((1, 4), np.int64))
    fig = plots.inspect_stats(report)
    assert_drawn(fig, 3)
    assert np.allclose(fig.axes[0].lines[0].get_ydata(), [a.std for a in report.activations])
    assert len(fig.axes[2].patches) == len(report.params)


def test_hessian_contours_marks_each_point_and_its_eigenvectors():
    f = lambda x, y: x * x * y + y ** 3 - 3 * x * y  # noqa: E731 (step 7's function)
    points = [(0.0, 0.0), (1.5, math.sqrt(0.75))]
    hessians = [np.array([[2 * y, 2 * x - 3], [2 * x - 3, 6 * y]]) for x, y in points]
    fig = plots.hessian_contours(f, points, hessians)
    assert_drawn(fig, 1)
    from matplotlib.text import Annotation
    labels = sorted(t.get_text() for t in fig.axes[0].texts if isinstance(t, Annotation) and t.get_text())
    assert labels == ["+1.73", "+3", "+5.2", "-3"]  # the saddle's -3, +3 and the minimum's sqrt(3), 3 sqrt(3)
    with pytest.raises(ValueError, match="2 points but 1 Hessians"):
        plots.hessian_contours(f, points, hessians[:1])


def test_curvature_line_draws_the_quadratic_model():
    lrs = np.linspace(0, 3, 13)
    gg, gHg, loss0 = 2.0, 4.0, 1.0  # curvature c = 2: the model is lowest at lr = 0.5, back at L0 at lr = 1
    losses = loss0 - lrs * gg + 0.5 * lrs ** 2 * gHg + 0.01 * lrs ** 3
    fig = plots.curvature_line(lrs, losses, loss0, gg, gHg)
    assert_drawn(fig, 1)
    ax = fig.axes[0]
    x = ax.lines[1].get_xdata()
    assert x[0] == 0 and x[-1] == 3 and np.allclose(ax.lines[1].get_ydata(), 1 - 2 * x + 2 * x ** 2)
    assert sorted(t.get_text() for t in ax.texts) == ["lr = 1/c", "lr = 2/c"]
    assert sorted(line.get_xdata()[0] for line in ax.lines[3:]) == [0.5, 1.0]


def test_save_writes_exactly_the_path_in_the_format_of_its_suffix(tmp_path):
    fig = plots.loss_curves(LOG)
    for name, magic in (("a.png", b"\x89PNG"), ("b.pdf", b"%PDF"), ("c.svg", b"<?xml")):
        assert plots.save(fig, tmp_path / name) == tmp_path / name
        assert (tmp_path / name).read_bytes()[:len(magic)] == magic
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.pdf", "c.svg"]  # no temp files left
    with pytest.raises(ValueError, match=r"must end in \.png, \.svg, \.pdf"):
        plots.save(fig, tmp_path / "d.jpg")


def test_figures_leave_pyplot_and_its_backend_alone():
    import matplotlib
    backend = matplotlib.get_backend()
    plots.training_curves(LOG, LOSSES)
    assert matplotlib.get_backend() == backend
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []
