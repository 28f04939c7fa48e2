"""gpt.train: the loop learns, resumes exactly, survives Ctrl-C and kills, stops on divergence, rejects bad input."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gpt.checkpoint as ck
import gpt.train as train_mod
from gpt.cli import main
from gpt.config import GPTConfig
from gpt.data import TextData
from gpt.errors import RunFailed, Terminated, UsageError
from gpt.model import GPT
from gpt.train import TrainConfig, evaluate, load_run, param_groups, train

REPO = Path(__file__).resolve().parents[1]
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 8
SMALL = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4"]


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "input.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def _cfg(text_file, out, n_layer=2, n_head=2, n_embd=32, block_size=16, dropout=0.0, **kw):
    base = dict(data=str(text_file), out=str(out), batch_size=4, max_iters=20, lr=3e-3, min_lr=3e-4,
                warmup_iters=3, eval_interval=5, eval_iters=2, seed=7, progress=False,
                model=GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, dropout=dropout))
    base.update(kw)
    return TrainConfig(**base)


def _iters_saved(out):
    """Iterations of the checkpoint folders in a run folder."""
    return sorted(int(p.name.split("-")[1]) for p in Path(out).glob("ckpt-*"))


def _snapshot(out):
    """The run folder's files and their bytes (but the lock of a run in progress, gpt/run_lock.py)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(Path(out).rglob("*"))
            if p.is_file() and p.name != ".lock"}


def _latest_iter(out):
    """The iteration latest.json names in a run folder that another process is writing (-1: none yet)."""
    try:
        return int(json.loads((Path(out) / "latest.json").read_text())["checkpoint"].split("-")[1])
    except (OSError, ValueError, KeyError):
        return -1


def _cli(*args, cwd=None, **popen):
    """`python -m gpt ...` in a subprocess, with Ctrl-C delivered as in a terminal (SIGINT not ignored)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "gpt", *args], cwd=cwd or REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen)


# ------------------------------------------------------------------ the loop


def test_overfits_a_single_batch(tmp_path):
    # each split holds exactly block_size + 1 tokens, so every batch is the same window
    p = tmp_path / "one.txt"
    p.write_text("the quick brown fox jumps over t" * 2 + "?" * 66)  # 64 + 66 chars: train split 65
    cfg = TrainConfig(data=str(p), out=str(tmp_path / "out"), val_fraction=0.5, batch_size=2, max_iters=150,
                      lr=1e-2, min_lr=1e-3, warmup_iters=10, eval_interval=1000, eval_iters=1, weight_decay=0.0,
                      seed=0, progress=False, model=GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=64))
    m = train(cfg)
    assert m["losses"][0] > 2.0  # starts near ln(vocab)
    assert m["losses"][-1] < 0.1
    assert m["train_loss"] < 0.1


def test_losses_fall_and_metrics_and_checkpoint_written(text_file, tmp_path):
    out = tmp_path / "run"
    m = train(_cfg(text_file, out, max_iters=40))
    for key in ("iters", "train_loss", "val_loss", "seconds", "tokens_per_second"):
        assert key in m
    assert m["iters"] == 40 and len(m["losses"]) == 40 and m["tokens_per_second"] > 0
    assert np.mean(m["losses"][-5:]) < np.mean(m["losses"][:5]) - 0.5
    assert [e["iter"] for e in m["evals"]] == [0, 5, 10, 15, 20, 25, 30, 35, 40]  # 0: before any step
    assert json.loads((out / "metrics.json").read_text())["val_loss"] == m["val_loss"]
    # the run folder: one complete checkpoint (the latest), its pointer, metrics.json, the log, nothing temporary
    assert sorted(os.listdir(out)) == sorted(["latest.json", "metrics.json", "log.jsonl", f"ckpt-{40:07d}-" +
                                              json.loads((out / "latest.json").read_text())["checkpoint"][-8:]])
    c = ck.load(out)
    assert c.state["iter"] == 40 and c.state["losses"] == m["losses"] and c.state["evals"] == m["evals"]
    assert c.state["config"]["model"]["vocab_size"] == len(set(TEXT)) == c.config.vocab_size
    assert c.state["config"]["data"] == str(text_file.resolve())
    # the saved model reproduces the final evaluation
    data = TextData.from_file(text_file, c.state["tokenizer"])
    again = evaluate(c.model(), data, 4, 16, 2, seed=7)
    assert again["val_loss"] == pytest.approx(m["val_loss"], rel=1e-6)


def test_final_evaluation_uses_final_eval_iters_and_always_runs(text_file, tmp_path):
    m = train(_cfg(text_file, tmp_path / "a", max_iters=7, eval_interval=5, final_eval_iters=3))
    assert [e["iter"] for e in m["evals"]] == [0, 5, 7]
    model = ck.load(tmp_path / "a").model()
    data = TextData.from_file(text_file)
    assert m["val_loss"] == pytest.approx(evaluate(model, data, 4, 16, 3, seed=7)["val_loss"], rel=1e-6)
    assert m["val_loss"] != pytest.approx(evaluate(model, data, 4, 16, 2, seed=7)["val_loss"], rel=1e-6)


def test_evaluation_at_iteration_0_is_recorded_and_changes_nothing(text_file, tmp_path):
    m = train(_cfg(text_file, tmp_path / "a", max_iters=5))
    first = m["evals"][0]
    assert first["iter"] == 0 and first["val_loss"] == pytest.approx(math.log(len(set(TEXT))), abs=0.3)
    assert ck.load(tmp_path / "a").state["evals"][0] == first  # recorded in the state, not saved on its own
    assert _iters_saved(tmp_path / "a") == [5]


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_resume_gives_the_same_losses_as_a_straight_run(text_file, tmp_path, dropout):
    straight = train(_cfg(text_file, tmp_path / "straight", dropout=dropout))
    first = train(_cfg(text_file, tmp_path / "split", dropout=dropout, max_iters=10, lr_decay_iters=20))
    resumed = train(_cfg(text_file, tmp_path / "split", dropout=dropout, lr_decay_iters=20, resume=True))
    assert first["losses"] == straight["losses"][:10]
    assert resumed["losses"] == straight["losses"]  # iterations 11..20 bitwise equal
    assert resumed["val_loss"] == straight["val_loss"]
    assert resumed["iters"] == 20 and resumed["evals"] == straight["evals"]


def test_failed_checkpoint_write_leaves_the_previous_checkpoint(text_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_write, calls, snapshot = ck._write_folder, [], {}

    def write_failing_second_time(folder, *args):
        calls.append(folder)
        if len(calls) == 1:
            real_write(folder, *args)
            return
        (folder / "model.safetensors").write_bytes(b"\x00" * 100)  # half a checkpoint, then the disk is full
        raise OSError(28, "No space left on device (simulated)")

    real_save = ck.save

    def save_and_snapshot(run, *args, **kw):
        path = real_save(run, *args, **kw)
        snapshot.update(_snapshot(run))
        return path

    monkeypatch.setattr(ck, "_write_folder", write_failing_second_time)
    monkeypatch.setattr(ck, "save", save_and_snapshot)
    with pytest.raises(ck.CheckpointError, match="simulated"):
        train(_cfg(text_file, out, max_iters=10))
    monkeypatch.undo()
    assert len(calls) == 2
    after = _snapshot(out)
    assert after.pop("log.jsonl").startswith(snapshot.pop("log.jsonl"))  # the log may run ahead; resume cuts it
    assert after == snapshot  # the first checkpoint untouched, no temporary folder left behind
    assert load_run(out).state["iter"] == 5
    resumed = train(_cfg(text_file, out, max_iters=10, resume=True))
    assert resumed["iters"] == 10


def test_checkpoint_with_files_from_different_saves_is_detected(text_file, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train(_cfg(text_file, a, max_iters=5))
    train(_cfg(text_file, b, max_iters=5, seed=8))
    (ckpt_a,), (ckpt_b,) = a.glob("ckpt-*"), b.glob("ckpt-*")
    shutil.copy(ckpt_b / "model.safetensors", ckpt_a / "model.safetensors")
    with pytest.raises(ck.CheckpointError, match="model.safetensors is damaged"):
        load_run(a)
    with pytest.raises(ck.CheckpointError, match="model.safetensors is damaged"):
        train(_cfg(text_file, a, max_iters=10, resume=True))


def test_resume_refuses_a_different_model(text_file, tmp_path):
    train(_cfg(text_file, tmp_path / "r", max_iters=5))
    with pytest.raises(UsageError, match="--n-embd: the run has 32, now 64"):
        train(_cfg(text_file, tmp_path / "r", max_iters=10, n_embd=64, resume=True))
    with pytest.raises(UsageError, match="--val-fraction: the run has 0.1, now 0.2"):
        train(_cfg(text_file, tmp_path / "r", max_iters=10, val_fraction=0.2, resume=True))
    with pytest.raises(UsageError, match="--resume: --out .*nothing-here does not exist"):
        train(_cfg(text_file, tmp_path / "nothing-here", resume=True))


def test_weight_decay_only_on_matrices():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16), seed=0)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[id(p)] for p in decay["params"])
    expected = sorted(n for n, _ in model.named_parameters() if n.endswith(".weight") and ".ln_" not in n)
    assert decayed == expected and "transformer.wte.weight" in decayed and "transformer.wpe.weight" in decayed
    assert all(".bias" in names[id(p)] or ".ln_" in names[id(p)] for p in no_decay["params"])
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    assert len(decay["params"]) + len(no_decay["params"]) == len(model.parameters())


def test_learning_rate_schedule():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=100, max_iters=2000)
    assert cfg.lr_at(0) == pytest.approx(1e-3 / 101)
    assert cfg.lr_at(49) == pytest.approx(1e-3 * 50 / 101)
    assert cfg.lr_at(100) == pytest.approx(1e-3)
    assert cfg.lr_at(1050) == pytest.approx(0.5 * (1e-3 + 1e-4))  # cosine half way
    assert cfg.lr_at(2000) == pytest.approx(1e-4)
    assert TrainConfig(max_iters=100, lr_decay_iters=200, warmup_iters=0).lr_at(100) > 5e-4
    # the default run is nanoGPT's: 100 warmup iterations, decay to --max-iters
    assert (TrainConfig().warmup, TrainConfig().decay_iters) == (100, 2000)


def test_evaluation_turns_dropout_off_and_restores_train_mode(text_file):
    model = GPT(GPTConfig(vocab_size=len(set(TEXT)), block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.5),
                seed=0)
    model.train()
    data = TextData.from_file(text_file)
    a = evaluate(model, data, 4, 16, 2, seed=1)
    assert model.training
    model.eval()
    assert evaluate(model, data, 4, 16, 2, seed=1) == a


def test_bad_data_files_are_clear_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        train(_cfg(tmp_path / "missing.txt", tmp_path / "o"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UsageError, match="empty"):
        train(_cfg(tmp_path / "empty.txt", tmp_path / "o"))
    (tmp_path / "short.txt").write_text("To be, or not to be, that is the question.")
    with pytest.raises(UsageError, match=r"too short: its val split has 5 tokens .* --block-size \+ 1 = 17"):
        train(_cfg(tmp_path / "short.txt", tmp_path / "o"))


@pytest.mark.parametrize("kw, match", [
    (dict(lr=1e-4, min_lr=1e-3), "--min-lr"), (dict(batch_size=0), "--batch-size"),
    (dict(tokenizer="bpe"), "--tokenizer"), (dict(beta2=1.0), "--beta2"), (dict(max_iters=-1), "--max-iters"),
    (dict(eval_interval=0), "--eval-interval"), (dict(val_fraction=1.0), "--val-fraction"),
    (dict(resume=True, overwrite=True), "--resume .* --overwrite"), (dict(model={"n_layer": 2}), "GPTConfig"),
])
def test_bad_config_is_a_clear_error(kw, match):
    with pytest.raises(UsageError, match=match):
        TrainConfig(**kw)
    with pytest.raises(ValueError, match="divisible"):  # the model's settings are GPTConfig's to check
        TrainConfig(model=GPTConfig(n_embd=30, n_head=4))


def test_train_config_round_trips_through_json():
    cfg = TrainConfig(data="x.txt", model=GPTConfig(n_layer=3, n_head=2, n_embd=8, bias=False), warmup_iters=7)
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.model.bias is False and os.path.isabs(again.data)
    with pytest.raises(UsageError, match="not a TrainConfig: .* got \\['n_layer'\\]"):
        TrainConfig.from_dict({**cfg.to_dict(), "n_layer": 3})


def test_a_model_without_biases_trains_checkpoints_and_resumes(text_file, tmp_path):
    m = train(_cfg(text_file, tmp_path / "nb", max_iters=6, model=GPTConfig(n_layer=1, n_head=2, n_embd=16,
                                                                           block_size=16, bias=False)))
    c = load_run(tmp_path / "nb")
    assert c.config.bias is False and not any(k.endswith(".bias") for k in c.weights)
    assert main(["train", "--resume", "--out", str(tmp_path / "nb"), "--max-iters", "8", "--no-progress"]) == 0
    assert load_run(tmp_path / "nb").state["losses"][:6] == m["losses"]


# ------------------------------------------------------------------ command line


def test_cli_train_resume_and_sample(text_file, tmp_path, capsys):
    out = str(tmp_path / "cli")
    args = ["train", "--data", str(text_file), *SMALL, "--max-iters", "6", "--warmup-iters", "2",
            "--eval-interval", "3", "--eval-iters", "1", "--out", out, "--no-progress"]
    assert main(args) == 0
    assert "iters 6" in capsys.readouterr().out
    # resume keeps the run's options (n_embd 16 etc.) and takes the new max_iters
    assert main(["train", "--out", out, "--resume", "--max-iters", "9", "--no-progress"]) == 0
    assert json.loads((tmp_path / "cli" / "metrics.json").read_text())["iters"] == 9
    assert load_run(out).config.n_embd == 16
    assert "iters 9" in capsys.readouterr().out
    assert main(["sample", "--ckpt", out, "--prompt", "First", "--max-new-tokens", "12", "--seed", "0"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("First") and len(text) == len("First") + 12 + 1  # 12 characters and a newline
    assert main(["sample", "--ckpt", out, "--prompt", "First", "--max-new-tokens", "12", "--seed", "0",
                 "--temperature", "0", "--no-cache"]) == 0


@pytest.mark.parametrize("argv, match", [
    (["train", "--data", "/nonexistent/input.txt"], "error: data file '/nonexistent/input.txt' does not exist"),
    (["train", "--data", ""], "error: --data must be a non-empty path"),
    (["train", "--n-layer", "0"], "error: --n-layer must be a positive int, got 0"),
    (["train", "--n-embd", "30", "--n-head", "4"], "error: --n-embd must be divisible by --n-head"),
    (["train", "--tokenizer", "bpe"], "error: --tokenizer must be 'char' or 'gpt2', got 'bpe'"),
    (["train", "--max-iters", "x"], "error: argument --max-iters: invalid integer: 'x'"),
    (["sample", "--ckpt", "/nonexistent/ckpt"], "error: --ckpt /nonexistent/ckpt"),
])
def test_cli_errors_exit_2_without_traceback(argv, match, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_cli_sample_rejects_unseen_characters(text_file, tmp_path, capsys):
    out = str(tmp_path / "c")
    train(_cfg(text_file, out, max_iters=2, warmup_iters=1))
    capsys.readouterr()
    assert main(["sample", "--ckpt", out, "--prompt", "Zebra™"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "3 character(s) not in the char tokenizer's vocabulary: 'Z', 'b', '™'" in err
    assert "Traceback" not in err


def test_recompute_blocks_switch_trains_the_same_run(text_file, tmp_path, monkeypatch):
    """--recompute-blocks reruns each block in backward: the same losses, from the library and the CLI; the old
    spellings (--checkpoint-blocks, TrainConfig(checkpoint_blocks=True)) still say the same."""
    from tinygrad_lite.recompute import Recompute
    reruns = []
    rerun = Recompute.backward
    monkeypatch.setattr(Recompute, "backward", staticmethod(lambda ctx, g: reruns.append(1) or rerun(ctx, g)))
    plain = train(_cfg(text_file, tmp_path / "a", max_iters=6, dropout=0.1))
    assert reruns == []
    rc_run = train(_cfg(text_file, tmp_path / "b", max_iters=6, dropout=0.1, recompute_blocks=True))
    assert len(reruns) == 6 * 2  # each step reran each of the 2 blocks
    assert plain["losses"] == rc_run["losses"] and plain["val_loss"] == rc_run["val_loss"]
    assert TrainConfig(checkpoint_blocks=True).recompute_blocks is True
    assert TrainConfig(recompute_blocks=True).checkpoint_blocks is True
    cli = ["train", "--data", str(text_file), "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "16",
           "--max-iters", "3", "--warmup-iters", "1", "--eval-interval", "3", "--eval-iters", "1", "--no-progress"]
    for flag, out in (("--recompute-blocks", "c"), ("--checkpoint-blocks", "d")):
        assert main([*cli, "--out", str(tmp_path / out), flag]) == 0
        assert load_run(tmp_path / out).state["config"]["recompute_blocks"] is True


# ------------------------------------------------------------------ issue 12's findings


def test_finding_1_short_runs_need_no_warmup_flag(text_file, tmp_path, capsys):
    # warmup: 100, at most a tenth of the decay; decay: to --max-iters
    assert [TrainConfig(max_iters=n).warmup for n in (0, 5, 50, 999, 2000, 5000)] == [0, 0, 5, 99, 100, 100]
    assert TrainConfig(max_iters=5000, lr_decay_iters=300).warmup == 30
    assert TrainConfig(max_iters=50).lr_at(49) > TrainConfig(max_iters=50).min_lr  # decays over the run
    assert main(["train", "--data", str(text_file), *SMALL, "--max-iters", "50", "--eval-interval", "25",
                 "--eval-iters", "1", "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    capsys.readouterr()
    # a warmup the user set that does not fit: the message names the flags they can see
    assert main(["train", "--data", str(text_file), "--max-iters", "50", "--warmup-iters", "100",
                 "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "error: --warmup-iters (100) must not exceed --max-iters (50)" in err and "lr_decay_iters" not in err
    assert main(["train", "--warmup-iters", "100", "--lr-decay-iters", "60", "--out", str(tmp_path / "b")]) == 2
    assert "error: --warmup-iters (100) must not exceed --lr-decay-iters (60)" in capsys.readouterr().err


def test_finding_2_shakespeare_is_the_default_and_shipped(tmp_path, capsys):
    assert TrainConfig().data == "shakespeare"
    # `python -m gpt train` with nothing else works from any directory (a short run of the default model)
    proc = _cli("train", "--max-iters", "2", "--eval-iters", "1", "--batch-size", "2", "--out", str(tmp_path / "s"),
                "--no-progress", cwd=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "shakespeare" in err and "1,003,854 train + 111,540 val tokens" in err and "vocabulary 65" in err
    assert load_run(tmp_path / "s").state["config"]["data"] == "shakespeare"  # a name, not the install's path


def test_finding_2_relative_data_path_resumes_from_another_directory(text_file, tmp_path, monkeypatch, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(text_file, tmp_path / "a" / "rel.txt")
    monkeypatch.chdir(tmp_path / "a")
    assert main(["train", "--data", "rel.txt", *SMALL, "--max-iters", "4", "--eval-interval", "2",
                 "--eval-iters", "1", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert load_run(tmp_path / "run").state["config"]["data"] == str(tmp_path / "a" / "rel.txt")
    monkeypatch.chdir(tmp_path / "b")
    assert main(["train", "--resume", "--out", str(tmp_path / "run"), "--max-iters", "6", "--no-progress"]) == 0
    assert load_run(tmp_path / "run").state["iter"] == 6


def test_finding_4_divergence_is_an_error_and_saves_nothing(text_file, tmp_path, capsys):
    # --lr 1e6: the loss overflows within a few steps
    argv = ["train", "--data", str(text_file), *SMALL, "--lr", "1e6", "--max-iters", "30", "--eval-iters", "1",
            "--out", str(tmp_path / "d")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error: training diverged at iteration " in err and "(try a lower --lr or more --warmup-iters)" in err
    assert "Traceback" not in err and "RuntimeWarning" not in err and "FloatingPointError" not in err
    assert not ck.is_run(tmp_path / "d")  # the broken weights were not saved


@pytest.mark.parametrize("what", ["loss", "gradient norm", "evaluation"])
def test_finding_4_divergence_keeps_the_last_good_checkpoint(text_file, tmp_path, monkeypatch, what):
    out = tmp_path / "run"
    train(_cfg(text_file, out, max_iters=10))  # checkpoints at 5 and 10
    good = _snapshot(out)
    real_ce, real_clip = train_mod.F.cross_entropy, train_mod.clip_grad_norm_
    calls = {"ce": 0, "clip": 0}

    def ce(logits, y):  # the loss of the 13th step is nan
        calls["ce"] += 1
        loss = real_ce(logits, y)
        return loss * float("nan") if what == "loss" and calls["ce"] == 3 else loss

    def clip(params, max_norm):  # the gradient of the 13th step overflows
        calls["clip"] += 1
        norm = real_clip(params, max_norm)
        return float("inf") if what == "gradient norm" and calls["clip"] == 3 else norm

    monkeypatch.setattr(train_mod.F, "cross_entropy", ce)
    monkeypatch.setattr(train_mod, "clip_grad_norm_", clip)
    if what == "evaluation":  # the evaluation at 15 is nan
        monkeypatch.setattr(train_mod, "evaluate", lambda *a, **k: {"train_loss": 1.0, "val_loss": float("nan")})
    with pytest.raises(RunFailed, match="training diverged at iteration 1[35]: .*the last good checkpoint "
                                        r"\(iteration 10\)"):
        train(_cfg(text_file, out, max_iters=20, resume=True, workers=1))  # the patched loss: in this process
    assert _snapshot(out) == good  # untouched: no save after the divergence, metrics.json not rewritten


@pytest.mark.parametrize("flag, value", [
    ("--lr", "inf"), ("--lr", "nan"), ("--lr", "-1"), ("--lr", "0"), ("--min-lr", "nan"), ("--weight-decay", "inf"),
    ("--grad-clip", "nan"), ("--beta1", "nan"), ("--beta2", "-0.5"), ("--val-fraction", "nan"), ("--dropout", "nan"),
])
def test_finding_4_nonsensical_hyperparameters_are_refused_up_front(flag, value, tmp_path, capsys):
    assert main(["train", flag, value, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag} must") and "Traceback" not in err
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_finding_5_existing_output_is_not_overwritten(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--data", str(text_file), *SMALL, "--max-iters", "4", "--eval-interval", "2", "--eval-iters", "1",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: --out {out} already holds a training run; give --resume to continue it, --overwrite" in err
    assert _snapshot(out) == before
    (out / "notes.txt").write_text("mine")
    assert main(argv[:-3] + ["--seed", "3", "--out", str(out), "--overwrite", "--no-progress"]) == 0
    assert load_run(out).state["config"]["seed"] == 3 and (out / "notes.txt").read_text() == "mine"
    assert _iters_saved(out) == [4]  # the old run's checkpoints are gone
    # a folder holding other files is not a place for a run either
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("...")
    assert main(argv[:-3] + ["--out", str(other)]) == 2
    assert "is not empty (thesis.tex) and holds no training run" in capsys.readouterr().err
    assert os.listdir(other) == ["thesis.tex"]
    assert main(argv[:-3] + ["--out", str(other), "--overwrite", "--no-progress"]) == 0
    assert ck.is_run(other) and (other / "thesis.tex").read_text() == "..."


def test_finding_6_ctrl_c_saves_the_current_iteration_and_resumes_exactly(text_file, tmp_path, monkeypatch, capsys):
    straight = train(_cfg(text_file, tmp_path / "straight", dropout=0.1))
    real_lr_at = TrainConfig.lr_at

    def interrupted_lr_at(self, it):
        if it == 12:
            raise KeyboardInterrupt  # Ctrl-C during iteration 13; the last evaluation was at iteration 10
        return real_lr_at(self, it)

    monkeypatch.setattr(TrainConfig, "lr_at", interrupted_lr_at)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(text_file, tmp_path / "stop", dropout=0.1))
    monkeypatch.undo()
    out = tmp_path / "stop"
    assert f"interrupted: iteration 12 saved in {out}; continue with: python -m gpt train --resume --out {out}" \
        in capsys.readouterr().err
    assert load_run(out).state["iter"] == 12 and _iters_saved(out) == [12]
    resumed = train(_cfg(text_file, out, dropout=0.1, resume=True))
    assert resumed["losses"] == straight["losses"] and resumed["evals"] == straight["evals"]


@pytest.fixture
def interactive_sigint():
    """Ctrl-C as in an interactive shell: Python's KeyboardInterrupt handler, even when the test runner was
    started in the background (where SIGINT is ignored, and train() rightly leaves it so)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signum, stop, said", [(signal.SIGINT, KeyboardInterrupt, "interrupted"),
                                                 (signal.SIGTERM, Terminated, "terminated (SIGTERM)")],
                         ids=["ctrl-c", "issue20_10-sigterm"])
def test_finding_6_ctrl_c_or_sigterm_inside_a_step_waits_for_its_end(text_file, tmp_path, monkeypatch, capsys,
                                                                     interactive_sigint, signum, stop, said):
    straight = train(_cfg(text_file, tmp_path / "straight"))
    real_clip, calls = train_mod.clip_grad_norm_, []
    before = signal.getsignal(signum)

    def clip_then_stop(params, max_norm):  # Ctrl-C or SIGTERM in the middle of the 8th step, before its optimizer step
        calls.append(1)
        if len(calls) == 8:
            os.kill(os.getpid(), signum)
        return real_clip(params, max_norm)

    monkeypatch.setattr(train_mod, "clip_grad_norm_", clip_then_stop)
    with pytest.raises(stop):
        train(_cfg(text_file, tmp_path / "stop"))
    monkeypatch.undo()
    state = load_run(tmp_path / "stop").state
    assert state["iter"] == 8 and state["losses"] == straight["losses"][:8]  # the step in progress was completed
    assert f"{said}: iteration 8 saved in" in capsys.readouterr().err
    assert signal.getsignal(signum) is before  # and the signal's handler is what it was
    assert train(_cfg(text_file, tmp_path / "stop", resume=True))["losses"] == straight["losses"]


def test_finding_6_ctrl_c_during_an_evaluation_runs_it_again_on_resume(text_file, tmp_path, monkeypatch):
    straight = train(_cfg(text_file, tmp_path / "straight"))
    real_evaluate, calls = train_mod.evaluate, []

    def evaluate_interrupted_at_10(*args, **kw):  # evaluations at 0, 5, then 10: cut short
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kw)

    monkeypatch.setattr(train_mod, "evaluate", evaluate_interrupted_at_10)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(text_file, tmp_path / "stop"))
    monkeypatch.undo()
    assert [e["iter"] for e in load_run(tmp_path / "stop").state["evals"]] == [0, 5]
    assert _iters_saved(tmp_path / "stop") == [10]
    resumed = train(_cfg(text_file, tmp_path / "stop", resume=True))
    assert resumed["evals"] == straight["evals"] and resumed["losses"] == straight["losses"]


def test_finding_6_sigint_saves_and_exits_130(text_file, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(text_file), *SMALL, "--max-iters", "100000", "--eval-interval", "50",
            "--eval-iters", "1", "--out", str(out), "--no-progress"]
    proc = _cli(*args)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and _latest_iter(out) < 100:
        time.sleep(0.01)  # until the checkpoint at iteration 100
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    state = load_run(out).state
    assert state["iter"] >= 100 and len(state["losses"]) == state["iter"]
    assert f"interrupted: iteration {state['iter']} saved in {out}; continue with: python -m gpt train --resume " \
           f"--out {out}" in err
    assert "Traceback" not in err


def test_finding_6_start_up_summary(text_file, tmp_path, capsys):
    argv = ["train", "--data", str(text_file), *SMALL, "--max-iters", "2", "--eval-iters", "1", "--out",
            str(tmp_path / "r"), "--no-progress"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    n_train, n_val = int(len(TEXT) * 0.9), len(TEXT) - int(len(TEXT) * 0.9)
    assert f"{n_train:,} train + {n_val:,} val tokens, char tokenizer, vocabulary {len(set(TEXT))}" in err
    params = load_run(tmp_path / "r").model().num_parameters()
    assert f"{params:,} parameters, float32" in err and "4 x 16 = 64 tokens per iteration" in err
    assert "resuming" not in err
    assert main(["train", "--resume", "--out", str(tmp_path / "r"), "--max-iters", "3", "--no-progress"]) == 0
    assert "resuming from iter 2" in capsys.readouterr().err


def test_finding_7_bad_out_and_seed_are_usage_errors(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    cases = [(["--out", str(tmp_path / "file")], f"error: --out {tmp_path / 'file'} is a file"),
             (["--out", str(tmp_path / "file" / "run")], f"{tmp_path / 'file'} is a file, so no folder can be made"),
             (["--seed", "-1"], "error: --seed must be an integer >= 0, got -1")]
    unwritable = Path("/sys/kernel")  # read-only even for root
    if unwritable.is_dir() and not os.access(unwritable, os.W_OK):
        cases.append((["--out", str(unwritable / "run")], f"error: --out {unwritable / 'run'} cannot be written"))
    for args, match in cases:
        assert main(["train", *args]) == 2
        err = capsys.readouterr().err
        assert match in err and "Traceback" not in err and err.count("\n") == 1, err


def test_finding_8_sigkill_mid_run_then_resume_gives_the_straight_losses(text_file, tmp_path):
    args = ["--data", str(text_file), *SMALL, "--max-iters", "600", "--eval-interval", "10", "--eval-iters", "1",
            "--no-progress"]
    straight = _cli("train", *args, "--out", str(tmp_path / "straight"))
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    out = tmp_path / "killed"
    proc = _cli("train", *args, "--out", str(out))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and _latest_iter(out) < 20:
        time.sleep(0.005)  # kill it once it has saved twice (at 10 and 20), wherever it is then
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert 0 < load_run(out).state["iter"] < 600
    resumed = _cli("train", "--resume", "--out", str(out), "--no-progress")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert b["losses"] == a["losses"] and b["val_loss"] == a["val_loss"] and b["evals"] == a["evals"]
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # the killed run's leftovers are gone


def test_finding_10_defaults_in_help_and_exit_codes(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "out/shakespeare" in text and "out-shakespeare" not in text and "(default: shakespeare)" in text
    assert "exit status: 0 ok, 1 the run or check failed, 2 usage error" in text
    assert TrainConfig().out == "out/shakespeare"


def test_finding_11_evaluation_shows_progress_after_a_second(text_file, tmp_path, monkeypatch):
    bars = []
    real_tqdm = train_mod.tqdm

    class RecordingTqdm(real_tqdm):
        def __init__(self, *args, **kw):
            bars.append(kw)
            super().__init__(*args, **kw)

    monkeypatch.setattr(train_mod, "tqdm", RecordingTqdm)
    data = TextData.from_file(text_file)
    model = GPT(GPTConfig(vocab_size=data.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16), seed=0)
    evaluate(model, data, 4, 16, 3, seed=0, progress=True)
    evaluate(model, data, 4, 16, 3, seed=0)
    on, off = bars
    assert on["desc"] == "eval" and on["total"] == 6 and on["delay"] == 1.0 and on["disable"] is None  # a terminal
    assert on["file"] is sys.stderr and off["disable"] is True
    bars.clear()
    train(_cfg(text_file, tmp_path / "r", max_iters=5, progress=True))
    assert [b["desc"] for b in bars] == ["train", "eval", "eval"] and all(b["disable"] is None for b in bars)


def test_save_best_keeps_the_lowest_val_loss_beside_the_latest(text_file, tmp_path, monkeypatch):
    val = iter([9.0, 3.0, 2.0, 4.0, 2.5])  # evaluations at 0, 5, 10, 15, 20: the best is at 10

    def scripted(*args, **kw):
        return {"train_loss": 1.0, "val_loss": next(val)}

    monkeypatch.setattr(train_mod, "evaluate", scripted)
    m = train(_cfg(text_file, tmp_path / "r", save_best=True))
    assert m["best"] == {"iter": 10, "val_loss": 2.0}
    assert ck.load(tmp_path / "r", "best").state["iter"] == 10
    assert ck.load(tmp_path / "r").state["iter"] == 20
    assert _iters_saved(tmp_path / "r") == [10, 20]
    # without --save-best, no best.json
    val = iter([9.0, 3.0, 2.0, 4.0, 2.5])
    train(_cfg(text_file, tmp_path / "n"))
    assert not (tmp_path / "n" / "best.json").exists()
    monkeypatch.undo()
    assert main(["train", "--data", str(text_file), *SMALL, "--max-iters", "4", "--eval-interval", "2",
                 "--eval-iters", "1", "--out", str(tmp_path / "cli"), "--save-best", "--no-progress"]) == 0
    best = load_run(tmp_path / "cli").state["best"]
    assert ck.load(tmp_path / "cli", "best").state["iter"] == best["iter"] in (2, 4)


def _tiny_hf_gpt2(folder, block_size=32):
    """A 1-layer GPT with GPT-2's vocabulary, saved as a Hugging Face folder (what --init-from reads)."""
    src = GPT(GPTConfig(vocab_size=50257, block_size=block_size, n_layer=1, n_head=2, n_embd=8), seed=3)
    src.save_pretrained(folder)
    return src


def test_init_from_fine_tunes_a_hugging_face_model(text_file, tmp_path, capsys):
    src = _tiny_hf_gpt2(tmp_path / "hf")
    cfg = _cfg(text_file, tmp_path / "ft", init_from=str(tmp_path / "hf"), max_iters=0, warmup_iters=None, dropout=0.1)
    assert cfg.tokenizer == "gpt2"  # GPT-2's model, GPT-2's tokenizer
    train(cfg)
    c = load_run(tmp_path / "ft")
    assert (c.config.n_embd, c.config.n_layer, c.config.block_size, c.config.dropout) == (8, 1, 16, 0.1)
    for name, p in src.named_parameters():  # the weights are GPT-2's; positions cropped to the first 16
        want = p.data[:16] if name == "transformer.wpe.weight" else p.data
        np.testing.assert_array_equal(c.weights[name], want, err_msg=name)
    assert c.state["tokenizer"] == {"kind": "gpt2"}
    m = train(_cfg(text_file, tmp_path / "ft2", init_from=str(tmp_path / "hf"), max_iters=4))
    assert m["losses"][0] == pytest.approx(math.log(50257), abs=0.5)
    assert main(["train", "--resume", "--out", str(tmp_path / "ft2"), "--max-iters", "6", "--no-progress"]) == 0
    assert load_run(tmp_path / "ft2").state["losses"][:4] == m["losses"]  # resumed from its own weights
    capsys.readouterr()
    base = ["train", "--data", str(text_file), "--init-from", str(tmp_path / "hf"), "--out", str(tmp_path / "x")]
    assert main(base + ["--n-embd", "16"]) == 2
    assert "error: --n-embd: the model's shape comes from --init-from" in capsys.readouterr().err
    assert main(base + ["--block-size", "64"]) == 2
    assert "error: --block-size 64 exceeds the 32 positions of --init-from" in capsys.readouterr().err
    assert main(base + ["--tokenizer", "char"]) == 2
    assert "needs --tokenizer gpt2" in capsys.readouterr().err
    assert main(["train", "--resume", "--init-from", "gpt2", "--out", str(tmp_path / "ft")]) == 2
    assert main(["train", "--init-from", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")]) == 2
    assert "nowhere" in capsys.readouterr().err


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_finding_7_a_training_state_with_a_missing_or_extra_key_is_an_error_line(text_file, tmp_path, change, capsys):
    """A state.json that is valid JSON, with a consistent manifest, but not the keys a training state has."""
    out = tmp_path / "run"
    train(_cfg(text_file, out, max_iters=4, warmup_iters=1, eval_interval=2))
    folder = ck.load(out).path
    state = json.loads((folder / "state.json").read_text())
    if change == "missing":
        del state["rng"]
    else:
        state["surprise"] = 1
    data = json.dumps(state).encode()
    (folder / "state.json").write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())  # keep the manifest consistent: not a damaged file
    manifest["files"]["state.json"] = {"sha256": __import__("hashlib").sha256(data).hexdigest(), "bytes": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code = main(["train", "--resume", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.count("error:") == 1 and "state.json is not a training state" in err and ("rng" in err or "surprise" in err)
