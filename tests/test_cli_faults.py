"""Issue 20, the command line's faults and bad input: every `python -m gpt` command ends a bad request or a
fault with one `error:` line and its exit status (gpt/errors.py), never a traceback. The run-folder items
(train --config, resuming, SIGTERM in a run) are in tests/test_train_faults.py."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpt.memory
from gpt import GPT, GPTConfig, checkpoint
from gpt.cli import main
from gpt.generate import generate
from gpt.tokenizer import get_tokenizer, tokenizer_spec
from test_cli_errors import char_run, usage_error  # noqa: E402 (tests/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
COMMANDS = ["demo", "train", "sample", "inspect", "gradcheck"]


def cli(args, env=None, **popen) -> subprocess.Popen:
    """`python -m gpt ...` in its own process."""
    env = dict(os.environ if env is None else env, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "gpt", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen)


# ------------------------------------------------------------------ 1. huggingface_hub 2.x, offline
@pytest.mark.parametrize("offline", [True, False])
def test_issue20_1_a_hub_name_offline_is_one_error_line_in_a_fresh_process(tmp_path, offline):
    """With the huggingface_hub the `hub` extra installs, in a process that has not imported its submodules yet
    (`huggingface_hub.constants` used to be an AttributeError there), and no HF_HOME: the hub's own error."""
    pytest.importorskip("huggingface_hub")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env["HOME"] = str(tmp_path)  # the default cache, empty
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    else:  # no network: a proxy that refuses every connection
        env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="")
    cache = tmp_path / ".cache" / "huggingface" / "hub"
    why = "HF_HUB_OFFLINE is set" if offline else "could not reach the Hugging Face hub"
    for args, flag in ((["sample", "--model", "gpt2"], "--model gpt2"),
                       (["train", "--init-from", "gpt2", "--out", str(tmp_path / "ft")], "--init-from gpt2")):
        proc = cli(args, env=env)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        assert err.decode().count("\n") == 1 and "Traceback" not in err.decode(), err.decode()
        assert err.decode().startswith(f"error: {flag}: ") and why in err.decode() and str(cache) in err.decode()
    assert not (tmp_path / "ft").exists()  # and the failed run made no folder


# ------------------------------------------------------------------ 2. a closed pipe
@pytest.mark.parametrize("args", [["sample", "--max-new-tokens", "1e20", "--seed", "1"], ["inspect"],
                                  ["demo", "--preset", "tiny"], ["gradcheck", "--n-layer", "1"], ["--help"]],
                         ids=["sample", "inspect", "demo", "gradcheck", "help"])
def test_issue20_2_a_reader_that_goes_away_ends_the_command_quietly(tmp_path, args):
    """`... | head -2`: stdout's reader leaves before the command has written everything; the command stops
    without a word, status 1 (--help: 0). Sample is asked for 1e20 tokens (which stream: nothing that size is held) and read
    for 20 bytes first; the others write less than a pipe holds, so the reader leaves before they write."""
    sample = args[0] == "sample"
    if sample:
        args = args + ["--ckpt", str(char_run(tmp_path / "run"))]
    proc = cli(args)
    first = proc.stdout.read(20) if sample else b""
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == (0 if args == ["--help"] else 1), err  # argparse's help ignores the pipe
    assert err == "" and len(first) == (20 if sample else 0)


# ------------------------------------------------------------------ 3. memory
@pytest.mark.parametrize("argv, names", [
    (["train", "--batch-size", "100000000"], ["one training step needs at least", "TiB", "--batch-size"]),
    (["train", "--n-embd", "65536", "--n-head", "1"], ["one training step", "parameters", "--n-embd"]),
    (["train", "--batch-size", "1e8", "--grad-accum", "1000"], ["one training step", "--grad-accum"]),
    (["inspect", "--batch-size", "100000000"], ["one batch (--batch-size 100000000, --seq-len 64) needs at least"]),
    (["gradcheck", "--n-layer", "1000000"], ["the check (float64, --n-layer 1000000"]),
], ids=["train-batch", "train-width", "train-accum", "inspect-batch", "gradcheck-layers"])
def test_issue20_3_a_request_beyond_the_machine_is_one_error_line_before_allocating(argv, names, tmp_path, capsys):
    argv = argv + (["--out", str(tmp_path / "run")] if argv[0] == "train" else [])
    usage_error(capsys, argv, *names, "available")
    assert not (tmp_path / "run").exists()


def test_issue20_3_the_check_uses_the_memory_available(tmp_path, capsys, monkeypatch):
    """A request that fits an ordinary machine is refused where it does not fit, and says both numbers."""
    monkeypatch.setattr(gpt.memory, "available_bytes", lambda: 10 << 20)  # 10 MiB
    config = tmp_path / "model.json"
    config.write_text('{"vocab_size": 1000, "n_embd": 256, "n_layer": 2, "n_head": 2, "block_size": 32}')
    usage_error(capsys, ["demo", "--config", str(config)], f"--config {config}: its model needs at least",
                     "but this machine has 10.0 MiB available")
    monkeypatch.setattr(gpt.memory, "available_bytes", lambda: 1 << 40)
    assert main(["demo", "--config", str(config)]) == 0


def test_issue20_3_generate_says_what_a_result_too_large_for_an_array_needs():
    model = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=1, n_embd=8), seed=0)
    with pytest.raises(MemoryError, match=r"generate: the result, 1 x \(T \+ max_new_tokens\) = 1 x "
                                          r"100,000,000,000,000,000,002 int64 token ids, needs .* GiB"):
        generate(model, np.array([[1, 2]]), 10 ** 20)


def test_issue20_3_integer_flags_take_a_whole_number_written_as_a_float(tmp_path, capsys):
    run = char_run(tmp_path / "run")
    assert main(["sample", "--ckpt", str(run), "--max-new-tokens", "1e1", "--prompt", "F", "--seed", "0"]) == 0
    assert len(capsys.readouterr().out) == 1 + 10 + 1
    with pytest.raises(SystemExit) as e:
        main(["sample", "--ckpt", str(run), "--max-new-tokens", "2.5"])
    assert e.value.code == 2 and "argument --max-new-tokens: invalid integer: '2.5'" in capsys.readouterr().err


# ------------------------------------------------------------------ 5. demo --config with a short context
def test_issue20_5_demo_cuts_its_sentences_to_a_short_context_and_says_so(tmp_path, capsys):
    config = tmp_path / "course.json"
    config.write_text('{"vocab_size": 65, "d_model": 128, "n_heads": 4, "n_layers": 1, "max_len": 8}')
    assert main(["demo", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "(cut to the model's context, block_size 8: the first 8 of each)" in out
    assert "idx: shape (2, 8)" in out and "logits shape (2, 8, 65)" in out
    config.write_text('{"vocab_size": 65, "d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 1}')
    assert main(["demo", "--config", str(config)]) == 0  # one token of context: its target is the next one
    out = capsys.readouterr().out
    assert "logits shape (2, 1, 65)" in out and "Loss at init: nan" not in out


def test_issue20_5_demo_config_with_a_vocabulary_smaller_than_its_sentences(tmp_path, capsys):
    config = tmp_path / "small.json"
    config.write_text('{"vocab_size": 5, "d_model": 16, "n_heads": 2, "n_layers": 1}')
    usage_error(capsys, ["demo", "--config", str(config)], f"--config {config}: vocab_size 5 is less than the 16 "
                                                         "characters of the demo's sentences")


# ------------------------------------------------------------------ 10. SIGTERM outside train
def test_issue20_10_sigterm_ends_sample_like_ctrl_c_with_143(tmp_path):
    proc = cli(["sample", "--ckpt", str(char_run(tmp_path / "run")), "--max-new-tokens", "1e20", "--seed", "1"])
    proc.stdout.read(50)  # it is sampling
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.decode() == "terminated (SIGTERM)\n", err
    assert out.endswith(b"\n")  # the line it was writing is ended


def test_issue20_10_a_sigterm_handler_of_the_caller_is_left_alone(tmp_path, capsys):
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda *a: seen.append(1))
    try:
        assert main(["demo", "--preset", "tiny"]) == 0
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL and seen == []
    finally:
        signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------ 18. the smaller ones
@pytest.mark.parametrize("command", COMMANDS)
def test_issue20_18_an_unknown_option_shows_the_usage_of_its_command(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--bogus"] + (["--ckpt", "x"] if command == "sample" else []))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"usage: python -m gpt {command} ")
    assert err.splitlines()[-1] == f"python -m gpt {command}: error: unrecognized arguments: --bogus"


def test_issue20_18_sample_with_a_damaged_optimizer_file_warns_and_samples(tmp_path, capsys):
    tok = get_tokenizer("char", text=TEXT)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=16, n_layer=1, n_head=2, n_embd=16), seed=0)
    from tinygrad_lite.optim import AdamW
    opt = AdamW(model.parameters())
    folder = checkpoint.save(tmp_path / "run", model, opt, {"iter": 3, "tokenizer": tokenizer_spec(tok)})
    with open(folder / "optimizer.safetensors", "r+b") as f:  # a flipped byte
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))
    for argv in (["sample", "--ckpt", str(tmp_path / "run"), "--prompt", "F", "--max-new-tokens", "5"],
                 ["inspect", "--ckpt", str(tmp_path / "run")]):
        assert main(argv) == 0
        err = capsys.readouterr().err
        assert re.fullmatch(rf"warning: {re.escape(str(folder))}/optimizer\.safetensors is damaged \(sha256 mismatch: "
                            r"expected [0-9a-f]{16}\.\.\., got [0-9a-f]{16}\.\.\.\); not needed here, so it was "
                            r"skipped\n", err), err
    with pytest.raises(checkpoint.CheckpointError, match="optimizer.safetensors is damaged"):
        checkpoint.load(tmp_path / "run")  # what resuming loads: still refused


def test_issue20_18_sample_output_ends_with_a_newline(tmp_path, capsys):
    run = char_run(tmp_path / "run")
    for extra in ([], ["--num-samples", "2"], ["--max-new-tokens", "0"], ["--prompt", "F\n"]):
        assert main(["sample", "--ckpt", str(run), "--seed", "3", "--max-new-tokens", "6", *extra]) == 0
        out = capsys.readouterr().out
        assert out.endswith("\n"), (extra, out)


def test_issue20_19_inspect_of_a_training_run_uses_its_validation_text(tmp_path, capsys):
    text = tmp_path / "input.txt"
    text.write_text(TEXT * 40, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "--data", str(text), "--out", str(run), "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
                 "--block-size", "16", "--batch-size", "8", "--max-iters", "60", "--lr", "1e-2", "--eval-iters", "1",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["inspect", "--ckpt", str(run), "--seq-len", "16"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("batch: "))
    assert line.startswith(f"batch: the run's validation text, {text} (B=4, T=16)")
    loss, ln_v = map(float, re.search(r"loss (\S+) \(ln \d+ = (\S+)\)", line).groups())
    assert loss < 0.8 * ln_v  # it learned the text; on random ids it would be above ln V
    text.unlink()  # the text is gone: random ids, said
    assert main(["inspect", "--ckpt", str(run), "--seq-len", "16"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("batch: "))
    assert line.startswith(f"batch: random token ids, since the run's text cannot be used (data file '{text}' does "
                           f"not exist")


def test_issue20_3_a_hugging_face_config_beyond_the_machine_is_refused_before_the_model_is_built(tmp_path, capsys):
    folder = tmp_path / "hf"
    GPT(GPTConfig(vocab_size=64, block_size=8, n_layer=1, n_head=2, n_embd=16), seed=0).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_embd": 65536, "n_head": 1, "n_layer": 48}))
    usage_error(capsys, ["sample", "--ckpt", str(folder)], f"--ckpt {folder}: the model {folder / 'config.json'} "
                                                           "describes needs at least", "TiB", "available")
