"""A tutorial's configuration end to end: a model without the q/k/v bias trains, checkpoints, resumes
(through gpt.train and the command line) and exports to Hugging Face GPT-2."""
import json

import numpy as np
from safetensors.numpy import load_file

import gpt.checkpoint as ck
from gpt import GPT
from gpt.cli import main
from gpt.config import GPTConfig
from gpt.train import TrainConfig, train

# "LLMs from scratch"'s spelling, scaled down to train in a second on the shipped Shakespeare
TINY_LLMS_FROM_SCRATCH = {"context_length": 16, "emb_dim": 32, "n_heads": 2, "n_layers": 2, "drop_rate": 0.1,
                          "qkv_bias": False}


def _cfg(out, **kw) -> TrainConfig:
    base = dict(data="shakespeare", out=str(out), batch_size=4, max_iters=12, lr=3e-3, min_lr=3e-4, warmup_iters=2,
                eval_interval=6, eval_iters=2, seed=3, progress=False,
                model=GPTConfig.from_dict(TINY_LLMS_FROM_SCRATCH))
    return TrainConfig(**{**base, **kw})


def test_trains_checkpoints_and_resumes_without_the_qkv_bias(tmp_path):
    straight = train(_cfg(tmp_path / "straight"))
    first = train(_cfg(tmp_path / "split", max_iters=6, lr_decay_iters=12))
    run = ck.load(tmp_path / "split")
    assert run.config.qkv_bias is False and run.config.bias is True and run.config.dropout == 0.1
    assert json.loads((run.path / "gpt_config.json").read_text())["qkv_bias"] is False
    weights = load_file(run.path / "model.safetensors")
    assert "transformer.h.0.attn.c_attn.weight" in weights and "transformer.h.0.attn.c_proj.bias" in weights
    assert not any(k.endswith("attn.c_attn.bias") for k in weights)

    resumed = train(_cfg(tmp_path / "split", lr_decay_iters=12, resume=True))
    assert first["losses"] == straight["losses"][:6]
    assert resumed["losses"] == straight["losses"]  # iterations 7..12 bitwise equal: nothing lost in the checkpoint
    assert ck.load(tmp_path / "split").model().config == run.config


def test_command_line_resume_keeps_the_run_without_the_qkv_bias(tmp_path, capsys):
    out = tmp_path / "run"
    train(_cfg(out, max_iters=4))
    # the command line has no flag for qkv_bias: a resumed run takes it from its checkpoint
    assert main(["train", "--resume", "--out", str(out), "--max-iters", "6", "--no-progress"]) == 0
    run = ck.load(out)
    assert run.state["iter"] == 6 and run.config == GPTConfig.from_dict({**TINY_LLMS_FROM_SCRATCH, "vocab_size": 65})
    assert "iters 6" in capsys.readouterr().out


def test_trained_model_exports_to_hugging_face_with_a_zero_qkv_bias(tmp_path):
    train(_cfg(tmp_path / "run", max_iters=3))
    model = ck.load(tmp_path / "run").model()
    model.save_pretrained(tmp_path / "hf")
    saved = load_file(tmp_path / "hf" / "model.safetensors")
    assert all(not saved[f"transformer.h.{i}.attn.c_attn.bias"].any() for i in range(2))
    loaded = GPT.from_pretrained(tmp_path / "hf")
    assert loaded.config.qkv_bias is None and loaded.config.c_attn_bias  # the bias is back, zero
    idx = np.arange(16)[None] % 65
    np.testing.assert_array_equal(loaded(idx).data, model(idx).data)

