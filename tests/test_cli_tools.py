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
    out = capsys.readouterr().out
    assert status == 1
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
    png = tmp_path / "inspect.png"
    try:
        import matplotlib  # noqa: F401
        assert "plot written to inspect.png" in out and png.read_bytes()[:4] == b"\x89PNG"
    except ImportError:
        assert "matplotlib is not installed" in out and not png.exists()


def test_plot_report_without_matplotlib_returns_none(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    model = GPT(GPTConfig.from_preset("tiny", n_layer=1), seed=0)
    report = collect(model, np.zeros((1, 4), np.int64), np.ones((1, 4), np.int64))
    assert plot_report(report, tmp_path / "r.png") is None and not (tmp_path / "r.png").exists()
    assert main(["inspect", "--preset", "tiny", "--seq-len", "4", "--plot", str(tmp_path / "r.png")]) == 0
    assert 'matplotlib is not installed, so no plot was made (pip install -e ".[plot]"' in capsys.readouterr().out
