"""`python -m gpt sample`, and the error paths of sample / inspect / gradcheck / demo: one `error: ...` line
naming the flag or file, never a traceback; exit 2 for a usage error, 1 for a failed check (gpt/errors.py)."""
import re
import sys

import numpy as np
import pytest

from gpt import GPT, GPTConfig, checkpoint
from gpt.cli import main
from gpt.tokenizer import get_tokenizer, tokenizer_spec

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


def usage_error(capsys, argv, *names, code=2) -> str:
    """Run main(argv): exit `code`, one `error:` line on stderr naming each of `names`, no traceback."""
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def char_run(path, seed=0, nan=False, block_size=16):
    """A training run folder (gpt.checkpoint) of a tiny char-level GPT; nan=True: one weight is NaN."""
    tok = get_tokenizer("char", text=TEXT)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=block_size, n_layer=1, n_head=2, n_embd=16), seed=seed)
    if nan:
        model.transformer.h[0].mlp.c_fc.weight.data[0, 0] = np.nan
    checkpoint.save(path, model, None, {"iter": 3, "tokenizer": tokenizer_spec(tok)})
    return path


def gpt2_vocab_folder(path, eos_first=False):
    """A Hugging Face GPT-2 folder of a tiny model with GPT-2's 50257-token vocabulary.

    eos_first: the model always predicts <|endoftext|> (ln_f's output is a constant vector e, and
    wte's row 50256 is e scaled up, so it has the largest logit everywhere)."""
    model = GPT(GPTConfig(vocab_size=50257, block_size=32, n_layer=1, n_head=2, n_embd=16), seed=0)
    if eos_first:
        e = np.random.default_rng(0).standard_normal(16).astype(np.float32)
        model.transformer.ln_f.weight.data[:] = 0.0
        model.transformer.ln_f.bias.data[:] = e
        model.transformer.wte.weight.data[50256] = 10 * e
    model.save_pretrained(path)
    return path


# ------------------------------------------------------------------ sample
def test_sample_a_training_run_prints_the_prompt_and_its_continuation(tmp_path, capsys):
    run = char_run(tmp_path / "run")
    assert main(["sample", "--ckpt", str(run), "--prompt", "First", "--max-new-tokens", "12", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("First") and len(out) == len("First") + 12 + 1  # 12 characters and a newline
    # the same from the checkpoint folder itself, and greedy without the cache gives greedy with it
    (folder,) = run.glob("ckpt-*")
    assert main(["sample", "--ckpt", str(folder), "--prompt", "First", "--max-new-tokens", "12", "--seed", "0"]) == 0
    assert capsys.readouterr().out == out
    greedy = ["sample", "--ckpt", str(run), "--prompt", "F", "--max-new-tokens", "20", "--temperature", "0"]
    assert main(greedy) == 0
    cached = capsys.readouterr().out
    assert main(greedy + ["--no-cache"]) == 0
    assert capsys.readouterr().out == cached


def test_sample_num_samples_are_printed_one_after_another(tmp_path, capsys):
    run = char_run(tmp_path / "run")
    assert main(["sample", "--ckpt", str(run), "--prompt", "F", "--max-new-tokens", "8", "--seed", "1",
                 "--num-samples", "3"]) == 0
    samples = capsys.readouterr().out.split("-" * 40 + "\n")
    assert len(samples) == 3 and all(s.startswith("F") and len(s) == 1 + 8 + 1 for s in samples)


def test_finding_4_sample_refuses_a_checkpoint_whose_weights_are_not_finite(tmp_path, capsys):
    run = char_run(tmp_path / "run", nan=True)
    line = usage_error(capsys, ["sample", "--ckpt", str(run)], "model.safetensors", "not finite",
                       "transformer.h.0.mlp.c_fc.weight")
    assert str(next(run.glob("ckpt-*")) / "model.safetensors") in line
    # a Hugging Face folder too
    model = GPT(GPTConfig(vocab_size=50257, block_size=8, n_layer=1, n_head=2, n_embd=8), seed=0)
    model.transformer.wpe.weight.data[1, 2] = np.inf
    model.save_pretrained(tmp_path / "hf")
    usage_error(capsys, ["sample", "--ckpt", str(tmp_path / "hf")], str(tmp_path / "hf" / "model.safetensors"),
                "transformer.wpe.weight")


def test_finding_9_sample_refuses_a_checkpoint_with_flipped_bytes(tmp_path, capsys):
    run = char_run(tmp_path / "run")
    weights = next(run.glob("ckpt-*")) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    for i in (-5, -400, -1000):  # inside the tensor data (the header is at the start)
        data[i] ^= 0xFF
    weights.write_bytes(bytes(data))
    usage_error(capsys, ["sample", "--ckpt", str(run)], str(weights), "damaged")


def test_finding_7_sample_seed_minus_one_names_seed(tmp_path, capsys):
    run = char_run(tmp_path / "run")
    usage_error(capsys, ["sample", "--ckpt", str(run), "--seed", "-1"], "--seed", ">= 0")


@pytest.mark.parametrize("flags, name", [
    (["--top-k", "-1"], "--top-k"), (["--top-p", "0"], "--top-p"), (["--top-p", "1.5"], "--top-p"),
    (["--temperature", "-1"], "--temperature"), (["--temperature", "inf"], "--temperature"),
    (["--max-new-tokens", "-1"], "--max-new-tokens"), (["--num-samples", "0"], "--num-samples"),
    (["--prompt", ""], "--prompt"), (["--prompt", "Zebra"], "--prompt"),
])
def test_sample_bad_flags_are_usage_errors_naming_the_flag(tmp_path, capsys, flags, name):
    run = char_run(tmp_path / "run")
    usage_error(capsys, ["sample", "--ckpt", str(run), *flags], name)


def test_sample_missing_or_wrong_checkpoint_is_a_usage_error(tmp_path, capsys):
    usage_error(capsys, ["sample", "--ckpt", "/nonexistent/ckpt"], "--ckpt", "/nonexistent/ckpt")
    (tmp_path / "file.txt").write_text("x")
    usage_error(capsys, ["sample", "--ckpt", str(tmp_path / "file.txt")], "--ckpt", "not a folder")
    (tmp_path / "empty").mkdir()
    usage_error(capsys, ["sample", "--ckpt", str(tmp_path / "empty")], str(tmp_path / "empty"))
    run = char_run(tmp_path / "run")
    usage_error(capsys, ["sample", "--ckpt", str(run), "--best"], "best.json")  # trained without --save-best
    hf = gpt2_vocab_folder(tmp_path / "hf")
    (hf / "config.json").write_text("[1, 2]")  # not a JSON object
    usage_error(capsys, ["sample", "--ckpt", str(hf)], "config.json")
    hf2 = gpt2_vocab_folder(tmp_path / "hf2")
    (hf2 / "model.safetensors").write_bytes((hf2 / "model.safetensors").read_bytes()[:1000])  # truncated
    usage_error(capsys, ["sample", "--ckpt", str(hf2)], "model.safetensors")
    usage_error(capsys, ["sample", "--model", str(tmp_path / "nope")], "--model")


def test_sample_top_k_0_means_off(tmp_path, capsys):
    run = char_run(tmp_path / "run")
    base = ["sample", "--ckpt", str(run), "--prompt", "F", "--max-new-tokens", "30", "--seed", "5"]
    assert main(base) == 0
    off = capsys.readouterr().out
    assert main(base + ["--top-k", "0"]) == 0
    assert capsys.readouterr().out == off


def test_sample_stop_at_eos_ends_at_endoftext(tmp_path, capsys):
    hf = gpt2_vocab_folder(tmp_path / "hf", eos_first=True)
    base = ["sample", "--ckpt", str(hf), "--prompt", "Hello", "--max-new-tokens", "5", "--temperature", "0"]
    assert main(base) == 0
    assert capsys.readouterr().out == "Hello" + "<|endoftext|>" * 5 + "\n"
    assert main(base + ["--stop-at-eos"]) == 0
    assert capsys.readouterr().out == "Hello<|endoftext|>\n"  # the token is kept, then the sample ends
    assert main(["sample", "--model", str(hf), "--prompt", "Hello", "--max-new-tokens", "5", "--temperature", "0",
                 "--stop-at-eos"]) == 0  # --model takes a Hugging Face folder too
    assert capsys.readouterr().out == "Hello<|endoftext|>\n"


def test_sample_stop_at_eos_with_a_char_tokenizer_says_it_has_none(tmp_path, capsys):
    run = char_run(tmp_path / "run")
    usage_error(capsys, ["sample", "--ckpt", str(run), "--stop-at-eos"], "--stop-at-eos", "no end-of-text token")


def test_sample_streams_each_token_as_it_is_made(tmp_path, capsys, monkeypatch):
    run = char_run(tmp_path / "run")
    forwards = []
    real_forward = GPT.forward

    def counting_forward(self, *args, **kwargs):
        forwards.append(1)
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(GPT, "forward", counting_forward)
    writes = []  # (text, forward passes run so far)

    class Recorder:
        def write(self, text):
            writes.append((text, len(forwards)))
            return len(text)

        def flush(self):
            pass

        def isatty(self):
            return False

    monkeypatch.setattr(sys, "stdout", Recorder())
    assert main(["sample", "--ckpt", str(run), "--prompt", "Fi", "--max-new-tokens", "6", "--seed", "0",
                 "--no-progress"]) == 0
    pieces = [(t, n) for t, n in writes if t and t != "\n"]
    assert pieces[0] == ("Fi", 0)  # the prompt, before any forward pass
    assert [n for _, n in pieces[1:]] == [1, 2, 3, 4, 5, 6]  # token k written right after forward pass k
    assert "".join(t for t, _ in pieces[1:]) and all(len(t) == 1 for t, _ in pieces[1:])


def test_finding_11_sample_shows_a_progress_bar_on_stderr(tmp_path, capsys, monkeypatch):
    import gpt.cli.sample as sample
    run = char_run(tmp_path / "run", block_size=64)
    monkeypatch.setattr(sample, "PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)  # stderr on a terminal, stdout not
    argv = ["sample", "--ckpt", str(run), "--prompt", "F", "--max-new-tokens", "40", "--seed", "0"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert re.search(r"\d+/40 \[", captured.err) and "tok/s" in captured.err, captured.err
    assert len(captured.out) == 1 + 40 + 1 and "tok/s" not in captured.out
    assert main(argv + ["--no-progress"]) == 0
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ inspect / gradcheck / demo flags
@pytest.mark.parametrize("argv, names", [
    (["inspect", "--ckpt", "/nonexistent"], ["--ckpt", "/nonexistent"]),
    (["inspect", "--seq-len", "0"], ["--seq-len", "[1, 256]"]),
    (["inspect", "--seq-len", "257"], ["--seq-len", "[1, 256]"]),
    (["inspect", "--batch-size", "0"], ["--batch-size"]),
    (["inspect", "--seed", "-1"], ["--seed"]),
    (["inspect", "--plot", "x.xyz"], ["--plot", ".png"]),
    (["gradcheck", "--eps", "0"], ["--eps", "> 0"]),
    (["gradcheck", "--eps=-1e-6"], ["--eps"]),
    (["gradcheck", "--eps", "nan"], ["--eps"]),
    (["gradcheck", "--n-layer", "0"], ["--n-layer", ">= 1"]),
    (["gradcheck", "--batch-size", "0"], ["--batch-size"]),
    (["gradcheck", "--seq-len", "0"], ["--seq-len"]),
    (["gradcheck", "--seq-len", "257"], ["--seq-len", "256"]),
    (["gradcheck", "--projections", "0"], ["--projections"]),
    (["gradcheck", "--full-max", "-1"], ["--full-max"]),
    (["gradcheck", "--atol", "-1"], ["--atol"]),
    (["gradcheck", "--rtol", "inf"], ["--rtol"]),
    (["gradcheck", "--seed", "-1"], ["--seed"]),
    (["demo", "--seed", "-1"], ["--seed"]),
])
def test_finding_7_bad_flags_are_one_error_line_naming_the_flag_exit_2(argv, names, capsys):
    usage_error(capsys, argv, *names)
