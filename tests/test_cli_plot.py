"""`python -m gpt plot`: a run folder's curves to a picture; every bad input is one error line, exit 2."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpt import GPT, GPTConfig
from gpt.cli import main
from gpt.runlog import LOG_FILE, RunLog

ROOT = Path(__file__).resolve().parents[1]


def make_run(folder, metrics=True):
    """A run folder holding a log of three evaluations (and metrics.json with the loss of each step)."""
    folder.mkdir()
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8), seed=0)
    for p in model.parameters():
        p.grad = np.ones(p.shape, np.float32)
    log = RunLog(folder, resume_iter=None)
    for it in (0, 5, 10):
        log.step(1e-3, 3.0, 0.01, 64)
        log.evaluation({"iter": it, "train_loss": 3.0 - it / 10, "val_loss": 3.1 - it / 10}, model)
    log.flush()
    if metrics:
        (folder / "metrics.json").write_text(json.dumps({"losses": list(np.linspace(3, 2, 10))}))
    return folder


@pytest.mark.plot
def test_plot_writes_the_curves_into_the_run_folder(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run = make_run(tmp_path / "run")
    assert main(["plot", "--out", str(run)]) == 0
    assert capsys.readouterr().out == f"wrote {run / 'curves.png'}\n"
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", "--out", str(run), "--file", str(tmp_path / "c.svg")]) == 0
    assert (tmp_path / "c.svg").read_bytes()[:5] == b"<?xml"
    (run / "metrics.json").unlink()  # a run still in progress: no metrics.json yet
    assert main(["plot", "--out", str(run), "--file", str(tmp_path / "c.pdf")]) == 0
    assert (tmp_path / "c.pdf").read_bytes()[:4] == b"%PDF"


@pytest.mark.parametrize("setup, argv, message", [
    (None, ["--out", "{tmp}/missing"], "--out {tmp}/missing: no such folder; expected a training run folder"),
    ("empty", ["--out", "{tmp}/run"], f"--out {{tmp}}/run holds no {LOG_FILE}: a training run writes it at its first"),
    ("run", ["--out", "{tmp}/run", "--file", "{tmp}/c.jpg"], "--file {tmp}/c.jpg: expected a file name ending in .png"),
    ("run", ["--out", "{tmp}/run", "--file", "{tmp}/no/c.png"], "--file {tmp}/no/c.png: the folder {tmp}/no does not"),
    ("run", ["--out", "{tmp}/run", "--file", "{tmp}"], "--file {tmp} is a folder; expected a file name ending in"),
    ("bad log", ["--out", "{tmp}/run"], f"{{tmp}}/run/{LOG_FILE}, line 2: expected a JSON object with the keys"),
    ("bad metrics", ["--out", "{tmp}/run"], "{tmp}/run/metrics.json is not a run's metrics"),
])
@pytest.mark.plot
def test_plot_usage_errors_are_one_line_with_exit_2(tmp_path, capsys, setup, argv, message):
    pytest.importorskip("matplotlib")
    if setup == "empty":
        (tmp_path / "run").mkdir()
    elif setup is not None:
        run = make_run(tmp_path / "run")
        if setup == "bad log":
            (run / LOG_FILE).write_text((run / LOG_FILE).read_text().replace('{"iter": 5', '{"it": 5'))
        if setup == "bad metrics":
            (run / "metrics.json").write_text("[1, 2")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["plot", *[a.format(tmp=tmp_path) for a in argv]]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: " + message.format(tmp=tmp_path)), captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err and captured.out == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err == 'error: python -m gpt plot needs matplotlib, which is not installed (pip install -e ".[plot]")\n'
    assert not (run / "curves.png").exists()


def test_plot_needs_out(capsys):
    with pytest.raises(SystemExit) as e:
        main(["plot"])
    assert e.value.code == 2 and "the following arguments are required: --out" in capsys.readouterr().err


def test_without_matplotlib_the_package_imports_and_drawing_names_the_extra():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import gpt.plots, gpt.report, gpt.cli, gpt.runlog\n"
            "try:\n    gpt.plots.loss_curves([])\n"
            "except gpt.plots.MissingMatplotlib as e:\n    print(e)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == 'drawing a picture needs matplotlib, which is not installed (pip install -e ".[plot]")\n'
