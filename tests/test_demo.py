"""`python -m gpt demo`: the command line end to end (tiny preset), and the demo's numbers in-process."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import json

import pytest

import gpt.cli.demo as demo_cli
from gpt import GPT, GPTConfig
from gpt.cli import build_parser, main
from gpt.cli.demo import demo, parameter_table

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


# ---------------------------------------------------------------------- --config: a tutorial's dictionary
LLMS_FROM_SCRATCH_124M = {"vocab_size": 50257, "context_length": 1024, "emb_dim": 768, "n_heads": 12,
                          "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False}


def test_demo_with_a_tutorial_config_file(tmp_path):
    """GPT-2's vocabulary and the "LLMs from scratch" spelling, one small block: the table names the missing bias."""
    file = tmp_path / "small.json"
    file.write_text(json.dumps({"vocab_size": 50257, "context_length": 16, "emb_dim": 32, "n_heads": 2,
                                "n_layers": 1, "drop_rate": 0.1, "qkv_bias": False}))
    res = run_cli("demo", "--config", str(file))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "-> [6109, 3626, 6100, 345]" in out and "logits shape (2, 4, 50257)" in out
    assert "Model small.json: 1 layers, 2 heads, n_embd 32, vocab 50257, block_size 16, tied head, no q/k/v bias, " \
           "dropout 0.1 (built in" in out
    assert re.search(r"^transformer\.h\.\*\.attn\.c_attn \(no q/k/v bias\)\s+3,072\s+3,072$", out, re.M)
    assert re.search(r"^transformer\.h\.\*\.attn\.c_proj\s+1,056\s+1,056$", out, re.M)  # 32 x 32 + its bias
    total = 50257 * 32 + 16 * 32 + (12 * 32 * 32 + 13 * 32 - 3 * 32) + 2 * 32
    assert re.search(rf"^total\s+{total:,}$", out, re.M)
    assert "(c_attn has no q/k/v bias: 1 x 96 = 96 parameters fewer than with qkv_bias=True)" in out


@pytest.mark.parametrize("tie, lm_head, total", [(True, 0, 124_412_160), (False, 38_597_376, 163_009_536)])
def test_parameter_table_of_the_llms_from_scratch_gpt2_shows_where_it_differs(monkeypatch, tie, lm_head, total):
    monkeypatch.setattr(GPT, "_init_weights", lambda self, rng, dtype: None)  # counting only: no RAM touched
    model = GPT(GPTConfig.from_dict({**LLMS_FROM_SCRATCH_124M, "tie_weights": tie}))
    rows = {label: (per_block, n) for label, per_block, n in parameter_table(model)}
    gpt2 = {label: (per_block, n) for label, per_block, n in parameter_table(GPT(GPTConfig(tie_weights=tie)))}
    assert rows["transformer.h.*.attn.c_attn (no q/k/v bias)"] == ("1,769,472", 12 * 1_769_472)  # 768 x 2304
    assert gpt2["transformer.h.*.attn.c_attn"] == ("1,771,776", 12 * 1_771_776)  # + the 2304 bias
    assert rows["transformer.h.* (12 blocks)"] == ("7,085,568", 12 * 7_085_568)
    assert rows["lm_head (tied to transformer.wte)" if tie else "lm_head"] == ("", lm_head)
    same = [k for k in gpt2 if k in rows and rows[k] == gpt2[k]]
    assert len(same) == len(rows) - 2  # all but c_attn and the block total are GPT-2's own
    assert sum(n for label, _, n in parameter_table(model) if "blocks)" not in label) == total  # less the subtotal


def test_demo_default_is_gpt2_and_config_replaces_preset(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(demo_cli, "demo", lambda config, seed, name: calls.append((config, seed, name)))
    assert main(["demo"]) == 0 and calls.pop() == (GPTConfig.from_preset("gpt2"), 0, "gpt2")
    file = tmp_path / "gpt_config_124m.json"
    file.write_text(json.dumps(LLMS_FROM_SCRATCH_124M))
    assert main(["demo", "--config", str(file), "--seed", "5"]) == 0
    assert calls.pop() == (GPTConfig(dropout=0.1, qkv_bias=False), 5, "gpt_config_124m.json")

    def error(*args) -> str:
        assert main(["demo", *args]) == 2
        return capsys.readouterr().err

    assert error("--config", str(file), "--preset", "tiny") == (
        "error: --config and --preset both describe the model: give one of them\n")
    assert f"error: --config {tmp_path / 'nope.json'}: cannot read it as JSON" in error(
        "--config", str(tmp_path / "nope.json"))
    file.write_text(json.dumps({**LLMS_FROM_SCRATCH_124M, "d_model": 768}))
    assert f"error: --config {file}: GPTConfig.from_dict got more than one spelling of a field: emb_dim and " \
           "d_model both spell n_embd;" in error("--config", str(file))
    file.write_text(json.dumps({**LLMS_FROM_SCRATCH_124M, "ctx_len": 8}))
    assert "unknown GPTConfig.from_dict key: ctx_len; accepted keys: vocab_size, block_size (or context_length" \
           in error("--config", str(file))
    file.write_text("[768]")
    assert error("--config", str(file)) == f"error: --config {file}: holds a JSON list, expected a JSON object of " \
        'GPTConfig fields (e.g. {"n_layer": 2, "emb_dim": 64})\n'
    assert not calls
