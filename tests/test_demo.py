"""`python -m gpt demo`: the command line end to end (tiny preset), and the demo's numbers in-process."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gpt import GPTConfig
from gpt.cli import build_parser, main
from gpt.cli.demo import demo

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "gpt", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def test_demo_command_with_tiny_preset():
    res = run_cli("demo", "--preset", "tiny", "--seed", "1")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "logits shape (2, 17, 256)" in out  # character tokens, cropped to the shorter sentence
    assert re.search(r"^total\s+858,880$", out, re.M)  # the tiny preset's count from gpt.config's table
    loss = float(re.search(r"Loss at init: ([\d.]+)", out).group(1))
    assert abs(loss - math.log(256)) < 0.3
    assert "ln 256 = 5.5452" in out
    for name in ("transformer.wte", "transformer.wpe", "transformer.h.0", "transformer.h.3", "transformer.ln_f"):
        assert re.search(rf"^\s+{re.escape(name)}\b.*\d\.\d+e[+-]\d+$", out, re.M), name
    assert "transformer.h.4" not in out
    assert "Wall time:" in out


def test_demo_with_gpt2_vocabulary_small_model():
    """The GPT-2 BPE path of the demo, on a 1-layer model (GPT-2's ids are published in many places)."""
    lines = []
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=16)
    res = demo(cfg, seed=0, out=lines.append)
    assert res["idx"].tolist() == [[6109, 3626, 6100, 345], [6109, 1110, 6622, 257]]
    assert res["logits_shape"] == (2, 4, 50257)
    assert res["num_parameters"] == 50257 * 32 + 16 * 32 + (12 * 32 * 32 + 13 * 32) + 2 * 32
    assert 10.0 < res["loss"] < 11.5  # about ln 50257 = 10.82
    assert all(v > 0 and math.isfinite(v) for v in res["grad_norms"].values())
    text = "\n".join(lines)
    assert "lm_head (tied to transformer.wte)" in text and "(2, 4, 50257)" in text


def test_cli_help_lists_demo_and_rejects_bad_preset(capsys):
    assert "demo" in build_parser().format_help()
    with pytest.raises(SystemExit):
        main([])  # a command is required
    with pytest.raises(SystemExit):
        main(["demo", "--preset", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
