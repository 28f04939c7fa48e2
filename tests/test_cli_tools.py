"""`python -m gpt inspect` / `gradcheck` and the report behind inspect (gpt.report)."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinygrad_lite.functional as F
from gpt import GPT, GPTConfig
from gpt.cli import main
from gpt.cli.gradcheck import check_model
from gpt.report import collect, format_report, plot_report
from tinygrad_lite import Tensor

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^(transformer\.\S+|lm_head\S*)(?: \(= \S+\))?\s+\(.*?\)\s+.*?(ok|FAIL)\b", re.M)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # one BLAS thread: the model's matrices are tiny, and threads only contend on a busy 2-core machine
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "gpt", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


# ------------------------------------------------------------------ gradcheck
def test_gradcheck_command_passes_for_the_tiny_preset(tmp_path):
    res = run_cli("gradcheck", "--preset", "tiny", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = dict(ROW.findall(res.stdout))
    names = [n for n, _ in GPT(GPTConfig.from_preset("tiny")).named_parameters()]
    assert list(rows) == names and len(names) == 52  # one row per parameter, in model order
    assert set(rows.values()) == {"ok"}
    assert re.search(r"^parameter\s+shape\s+checked\s+max abs err\s+max rel err\s+result$", res.stdout, re.M)
    assert "transformer.wte.weight (= lm_head.weight)" in res.stdout
    assert re.search(r"^all 52 parameters passed", res.stdout, re.M)


def test_gradcheck_by_projection_is_the_default_and_fast_its_old_name(monkeypatch, capsys):
    """--by-projection (the default) checks random projections; --fast, its name before --engine fast existed,
    still means it (hidden from --help); --full checks every entry."""
    from gpt.config import PRESETS
    monkeypatch.setitem(PRESETS, "micro", dict(vocab_size=7, block_size=4, n_layer=1, n_head=2, n_embd=4))
    tables = {}
    for mode in ([], ["--by-projection"], ["--fast"], ["--full"]):
        argv = ["gradcheck", "--preset", "micro", "--seq-len", "4", "--full-max", "0", "--no-progress", *mode]
        assert main(argv) == 0
        out = capsys.readouterr().out
        tables[" ".join(mode)] = [re.sub(r"\d\.\d\de[-+]\d\d", "X", line) for line in out.splitlines()[1:-1]]
        assert ("by projection," in out.splitlines()[0]) == (mode != ["--full"])
    assert tables[""] == tables["--by-projection"] == tables["--fast"]
    assert any("2 projections" in line for line in tables[""])
    assert not any("projections" in line for line in tables["--full"])
    with pytest.raises(SystemExit):
        main(["gradcheck", "--help"])
    assert "--fast" not in capsys.readouterr().out.split("options:")[1].split("--engine")[0]


class BrokenLayerNorm(F.LayerNorm):
    """F.layer_norm's op with its weight gradient 1 % too large; its x and bias gradients stay right."""
    name = "broken_layer_norm"

    @staticmethod
    def backward(ctx, g):
        dx, dw, db, deps = F.LayerNorm.backward(ctx, g)
        return dx, dw * 1.01, db, deps


def broken_layer_norm(monkeypatch) -> None:
    def layer_norm(x, weight, bias, eps=1e-5):
        return BrokenLayerNorm.apply(x, weight, bias, eps)
    monkeypatch.setattr(F, "layer_norm", layer_norm)  # nn.LayerNorm calls F.layer_norm at call time


def test_gradcheck_command_fails_and_names_the_parameters_of_a_broken_backward(monkeypatch, capsys):
    broken_layer_norm(monkeypatch)
    status = main(["gradcheck", "--preset", "tiny", "--n-layer", "1"])
    out, err = capsys.readouterr()
    assert status == 1  # a failed check: 1, apart from a usage error's 2 (finding 10)
    assert err.startswith("error: gradient check failed for 3 of 16 parameters") and "Traceback" not in err
    rows = dict(ROW.findall(out))
    failed = {n for n, r in rows.items() if r == "FAIL"}
    assert failed == {"transformer.h.0.ln_1.weight", "transformer.h.0.ln_2.weight", "transformer.ln_f.weight"}
    assert len(rows) == 16
    summary = re.search(r"^FAILED: 3 of 16 parameters: (.*) \(", out, re.M)
    assert summary and set(summary.group(1).split(", ")) == failed
    # the failing rows name their worst entry, whose numbers differ by the 1 % that was injected
    m = re.search(r"transformer\.ln_f\.weight .*FAIL\s+entry \((\d+),\): numerical (\S+), analytical (\S+)", out)
    assert m and float(m.group(3)) == pytest.approx(1.01 * float(m.group(2)), rel=1e-6)


def test_check_model_full_mode_on_a_small_model_and_a_broken_entry():
    config = GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=2, n_embd=4)
    model = GPT(config, seed=1, dtype=np.float64)
    rng = np.random.default_rng(1)
    for p in model.parameters():
        p.data += rng.normal(0.0, 0.3, p.shape)
    idx, targets = rng.integers(0, 7, (2, 4)), rng.integers(0, 7, (2, 4))
    rows = check_model(model, idx, targets, full=True)
    assert [r.mode for r in rows] == [f"all {p.size} entries" for p in model.parameters()]
    assert all(r.passed for r in rows) and max(r.max_abs for r in rows) < 1e-7
    # a loss whose backward misses one entry: + wpe[2, 3]^2 as a constant (no graph, so no gradient);
    # the numerical side sees it (2 wpe[2, 3]), and full mode names exactly that entry
    wpe = model.transformer.wpe.weight
    model_loss = model.loss
    model.loss = lambda i, t: model_loss(i, t) + Tensor(float(wpe.data[2, 3]) ** 2, dtype=np.float64)
    rows = {r.name: r for r in check_model(model, idx, targets, full=True)}
    bad = rows["transformer.wpe.weight"]
    assert not bad.passed and bad.worst.startswith("entry (2, 3):")
    assert [n for n, r in rows.items() if not r.passed] == ["transformer.wpe.weight"]


# ------------------------------------------------------------------ inspect / report
def test_report_numbers_match_an_independent_forward_and_backward():
    model = GPT(GPTConfig.from_preset("tiny", n_layer=2), seed=3).eval()
    ids = np.random.default_rng(3).integers(0, 256, (2, 9))
    report = collect(model, ids[:, :-1], ids[:, 1:])
    assert all(not m.__dict__.get("_forward_hooks") for _, m in model.named_modules())  # hooks removed
    grads = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    loss = F.cross_entropy(model(ids[:, :-1]), ids[:, 1:])
    loss.backward()
    assert report.loss == pytest.approx(loss.item(), rel=1e-6)
    for row in report.params:
        p = dict(model.named_parameters())[row.name]
        np.testing.assert_allclose(grads[row.name], p.grad, rtol=1e-5, atol=1e-9)
        assert row.grad_norm == pytest.approx(float(np.linalg.norm(p.grad.astype(np.float64))), rel=1e-5)
        assert row.weight_norm == pytest.approx(float(np.linalg.norm(p.data.astype(np.float64))), rel=1e-6)
    wte = report.params[0]
    assert wte.name == "transformer.wte.weight" and wte.aliases == ("lm_head.weight",)
    acts = {a.name: a for a in report.activations}
    assert "transformer.drop" not in acts  # Dropout left out
    assert list(acts)[:3] == ["transformer.wte", "transformer.wpe", "transformer.h.0.ln_1"]
    ln = acts["transformer.h.1.ln_2"]  # LayerNorm at init (weight 1, bias 0): mean 0, std sqrt(var / (var + eps)) < 1
    assert ln.shape == (2, 8, 128) and abs(ln.mean) < 1e-6 and 0.99 < ln.std <= 1.0
    logits = acts["lm_head"]  # dloss/dlogits of the mean cross-entropy: (softmax - onehot) / (B T)
    assert logits.shape == (2, 8, 256) and logits.grad_std > 0
    text = format_report(report)
    assert "transformer.wte.weight (= lm_head.weight)" in text and "grad std" in text


def test_inspect_command_prints_both_tables(tmp_path):
    res = run_cli("inspect", "--preset", "tiny", "--seq-len", "16", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    loss = float(re.search(r"loss (\d+\.\d+) \(ln 256 = 5\.5452\)", out).group(1))
    assert abs(loss - math.log(256)) < 0.1  # GPT-2 init: about a uniform guess
    for name in ("transformer.wte.weight (= lm_head.weight)", "transformer.h.3.mlp.c_proj.bias",
                 "transformer.ln_f.weight"):
        assert re.search(rf"^{re.escape(name)}\s+\(", out, re.M), name
    assert re.search(r"^transformer\.h\.0\.ln_1\.bias\s+\(128,\)\s+0\.000e\+00\s+\d\.\d+e-\d+\s+-$", out, re.M)
    for name in ("transformer.h.0.attn", "transformer.h.3", "transformer.ln_f", "lm_head"):
        assert re.search(rf"^{re.escape(name)}\s+\w+\s+\(4, 16, \d+\)", out, re.M), name
    assert "plot" not in out
    assert list(tmp_path.iterdir()) == []  # finding 10: no --plot, no file


def test_plot_report_without_matplotlib_returns_none(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    model = GPT(GPTConfig.from_preset("tiny", n_layer=1), seed=0)
    report = collect(model, np.zeros((1, 4), np.int64), np.ones((1, 4), np.int64))
    assert plot_report(report, tmp_path / "r.png") is None and not (tmp_path / "r.png").exists()
    # asked for a plot that cannot be made: a usage error, before any work
    assert main(["inspect", "--preset", "tiny", "--seq-len", "4", "--plot", str(tmp_path / "r.png")]) == 2
    captured = capsys.readouterr()
    assert captured.err == 'error: --plot needs matplotlib, which is not installed (pip install -e ".[plot]")\n'
    assert captured.out == "" and list(tmp_path.iterdir()) == []


def tiny_run(path, block_size=32):
    """A training run folder (gpt.checkpoint) holding a small model with the given block size."""
    from gpt import checkpoint
    model = GPT(GPTConfig(vocab_size=20, block_size=block_size, n_layer=1, n_head=2, n_embd=16), seed=0)
    checkpoint.save(path, model, None, {"iter": 1})
    return path


def test_finding_3_inspect_accepts_seq_len_equal_to_block_size(tmp_path, capsys):
    run = tiny_run(tmp_path / "run", block_size=32)
    assert main(["inspect", "--ckpt", str(run), "--seq-len", "32"]) == 0  # T = block_size is valid
    out = capsys.readouterr().out
    assert "(B=4, T=32)" in out and f"checkpoint {next(run.glob('ckpt-*'))}" in out
    assert main(["inspect", "--ckpt", str(run)]) == 0  # the default: 64, cut to the block size
    assert "(B=4, T=32)" in capsys.readouterr().out
    assert main(["inspect", "--ckpt", str(run), "--seq-len", "33"]) == 2
    assert capsys.readouterr().err == "error: --seq-len must be in [1, 32] (the model's block_size), got 33\n"
    assert main(["inspect", "--preset", "tiny", "--seq-len", "256", "--batch-size", "1"]) == 0
    assert "(B=1, T=256)" in capsys.readouterr().out


def test_finding_7_inspect_ckpt_nonexistent_is_an_error_line(capsys):
    assert main(["inspect", "--ckpt", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --ckpt /nonexistent: no such folder") and "Traceback" not in err


def test_finding_4_inspect_shows_a_diverged_checkpoint_and_warns(tmp_path, capsys):
    from gpt import checkpoint
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16), seed=0)
    model.transformer.ln_f.weight.data[3] = np.nan
    checkpoint.save(tmp_path / "run", model, None, {"iter": 1})
    assert main(["inspect", "--ckpt", str(tmp_path / "run")]) == 0  # a diagnostic: the NaN is what to look at
    out, err = capsys.readouterr()
    assert err == "warning: NaN or infinity in transformer.ln_f.weight: the run that saved these weights diverged\n"
    assert "loss nan" in out


def test_inspect_reads_a_hugging_face_folder(tmp_path, capsys):
    GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=8), seed=0).save_pretrained(tmp_path)
    assert main(["inspect", "--ckpt", str(tmp_path), "--seq-len", "8"]) == 0
    assert capsys.readouterr().out.startswith(f"GPT, Hugging Face folder {tmp_path}: 1 layers")


def test_finding_10_inspect_writes_no_file_unless_plot_is_given(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", "--preset", "tiny", "--seq-len", "4"]) == 0
    assert list(tmp_path.iterdir()) == []


def fake_matplotlib(monkeypatch) -> list:
    """Stand in for matplotlib (not a required dependency): plot_report writes a marker file; returns its calls."""
    import types

    import gpt.report
    from gpt.files import atomic_write
    calls = []

    def plot(report, path, title=""):
        calls.append(Path(path))
        atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(b"plot"))
        return Path(path)

    monkeypatch.setitem(sys.modules, "matplotlib", types.ModuleType("matplotlib"))
    monkeypatch.setattr(gpt.report, "plot_report", plot)
    return calls


def test_finding_10_inspect_plot_goes_to_exactly_path_and_reports_it(tmp_path, monkeypatch, capsys):
    calls = fake_matplotlib(monkeypatch)
    for name in ("stats.svg", "stats.pdf", "stats.PNG"):
        target = tmp_path / name
        assert main(["inspect", "--preset", "tiny", "--seq-len", "4", "--plot", str(target)]) == 0
        assert capsys.readouterr().out.endswith(f"\nplot written to {target}\n")
        assert target.read_bytes() == b"plot" and calls[-1] == target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.PNG", "stats.pdf", "stats.svg"]


@pytest.mark.parametrize("plot, expected", [
    ("{tmp}", "is a folder; expected a file name ending in .png, .svg, .pdf"),
    ("{tmp}/x.xyz", "expected a file name ending in .png, .svg, .pdf (the format follows the suffix), got .xyz"),
    ("{tmp}/report", "got no suffix"),
    ("{tmp}/missing/x.png", "does not exist"),
])
def test_finding_10_inspect_plot_path_must_be_a_png_svg_or_pdf_file(tmp_path, monkeypatch, capsys, plot, expected):
    calls = fake_matplotlib(monkeypatch)
    plot = plot.format(tmp=tmp_path)
    assert main(["inspect", "--preset", "tiny", "--seq-len", "4", "--plot", plot]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: --plot {plot}") and expected in captured.err
    assert captured.out == "" and not calls and list(tmp_path.iterdir()) == []  # refused before the work


@pytest.mark.plot
def test_plot_report_with_matplotlib_writes_exactly_the_path(tmp_path):
    pytest.importorskip("matplotlib")
    model = GPT(GPTConfig.from_preset("tiny", n_layer=1), seed=0)
    report = collect(model, np.zeros((1, 4), np.int64), np.ones((1, 4), np.int64))
    for name, magic in (("a.png", b"\x89PNG"), ("b.pdf", b"%PDF"), ("c.svg", b"<?xml")):
        assert plot_report(report, tmp_path / name) == tmp_path / name
        assert (tmp_path / name).read_bytes()[:len(magic)] == magic
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.pdf", "c.svg"]  # no temp files left
    with pytest.raises(ValueError, match=r"must end in \.png, \.svg, \.pdf"):
        plot_report(report, tmp_path / "d.jpg")


# ------------------------------------------------------------------ gradcheck progress (finding 11)
class Counter:
    """A stand-in for a tqdm bar."""
    def __init__(self):
        self.total, self.n = None, 0

    def update(self, n):
        self.n += n


def test_check_model_reports_each_finite_difference_to_the_progress_bar():
    config = GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=2, n_embd=4)
    model = GPT(config, seed=1, dtype=np.float64)
    idx, targets = np.random.default_rng(1).integers(0, 7, (2, 2, 4))
    bar = Counter()
    check_model(model, idx, targets, full=True, progress=bar)
    assert bar.total == bar.n == model.num_parameters()  # one difference per entry
    bar = Counter()
    check_model(model, idx, targets, projections=3, full_max=8, progress=bar)
    assert bar.total == bar.n == sum(p.size if p.size <= 8 else 3 for p in model.parameters())


def test_finding_11_gradcheck_full_shows_a_progress_bar(monkeypatch, capsys):
    import gpt.cli.gradcheck as gradcheck
    from gpt.config import PRESETS
    monkeypatch.setitem(PRESETS, "micro", dict(vocab_size=7, block_size=4, n_layer=1, n_head=2, n_embd=4))
    monkeypatch.setattr(gradcheck, "PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)  # a terminal
    n = GPT(GPTConfig(**PRESETS["micro"])).num_parameters()
    argv = ["gradcheck", "--preset", "micro", "--full", "--seq-len", "4"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert f"{n}/{n} [" in err and "finite differences" in err and "diff/s" in err
    assert re.search(r"^all 16 parameters passed", out, re.M) and "diff/s" not in out
    assert main(argv + ["--no-progress"]) == 0
    assert capsys.readouterr().err == ""
