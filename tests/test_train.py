"""gpt.train: the loop learns, resumes exactly, checkpoints atomically, and rejects bad input."""
import json
import os
import shutil

import numpy as np
import pytest

import gpt.train as train_mod
from gpt.cli import main
from gpt.data import TextData
from gpt.model import GPT
from gpt.train import TrainConfig, evaluate, load_train_state, param_groups, train

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 8


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "input.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def _cfg(text_file, out, **kw):
    base = dict(data=str(text_file), out=str(out), n_layer=2, n_head=2, n_embd=32, block_size=16, batch_size=4,
                max_iters=20, lr=3e-3, min_lr=3e-4, warmup_iters=3, eval_interval=5, eval_iters=2, seed=7,
                progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_overfits_a_single_batch(tmp_path):
    # each split holds exactly block_size + 1 tokens, so every batch is the same window
    p = tmp_path / "one.txt"
    p.write_text("the quick brown fox jumps over t" * 2 + "?" * 66)  # 64 + 66 chars: train split 65
    cfg = TrainConfig(data=str(p), out=str(tmp_path / "out"), val_fraction=0.5, n_layer=2, n_head=2, n_embd=64,
                      block_size=64, batch_size=2, max_iters=150, lr=1e-2, min_lr=1e-3, warmup_iters=10,
                      eval_interval=1000, eval_iters=1, weight_decay=0.0, seed=0, progress=False)
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
    assert [e["iter"] for e in m["evals"]] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert json.loads((out / "metrics.json").read_text())["val_loss"] == m["val_loss"]
    assert {"config.json", "model.safetensors", "optimizer.safetensors", "tokenizer_spec.json",
            "train_state.json"} <= set(os.listdir(out))
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no temporary leftovers
    # the saved model reproduces the final evaluation
    model = GPT.from_pretrained(out)
    data = TextData.from_file(text_file, json.loads((out / "tokenizer_spec.json").read_text()))
    again = evaluate(model, data, 4, 16, 2, seed=7)
    assert again["val_loss"] == pytest.approx(m["val_loss"], rel=1e-6)


def test_final_evaluation_uses_final_eval_iters_and_always_runs(text_file, tmp_path):
    m = train(_cfg(text_file, tmp_path / "a", max_iters=7, eval_interval=5, final_eval_iters=3))
    assert [e["iter"] for e in m["evals"]] == [5, 7]
    model = GPT.from_pretrained(tmp_path / "a")
    data = TextData.from_file(text_file)
    assert m["val_loss"] == pytest.approx(evaluate(model, data, 4, 16, 3, seed=7)["val_loss"], rel=1e-6)
    assert m["val_loss"] != pytest.approx(evaluate(model, data, 4, 16, 2, seed=7)["val_loss"], rel=1e-6)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_resume_gives_the_same_losses_as_a_straight_run(text_file, tmp_path, dropout):
    straight = train(_cfg(text_file, tmp_path / "straight", dropout=dropout))
    first = train(_cfg(text_file, tmp_path / "split", dropout=dropout, max_iters=10, lr_decay_iters=20))
    resumed = train(_cfg(text_file, tmp_path / "split", dropout=dropout, lr_decay_iters=20, resume=True))
    assert first["losses"] == straight["losses"][:10]
    assert resumed["losses"] == straight["losses"]  # iterations 11..20 bitwise equal
    assert resumed["val_loss"] == straight["val_loss"]
    assert resumed["iters"] == 20


def test_resume_after_a_crash_between_checkpoints(text_file, tmp_path, monkeypatch):
    straight = train(_cfg(text_file, tmp_path / "straight", dropout=0.1))
    real_lr_at = TrainConfig.lr_at

    def crashing_lr_at(self, it):
        if it == 12:
            raise KeyboardInterrupt  # killed during iteration 13; the last checkpoint is at iteration 10
        return real_lr_at(self, it)

    monkeypatch.setattr(TrainConfig, "lr_at", crashing_lr_at)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(text_file, tmp_path / "crash", dropout=0.1))
    monkeypatch.undo()
    assert load_train_state(tmp_path / "crash")["iter"] == 10
    resumed = train(_cfg(text_file, tmp_path / "crash", dropout=0.1, resume=True))
    assert resumed["losses"] == straight["losses"]


def test_failed_checkpoint_write_leaves_the_previous_checkpoint(text_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_save, saves, snapshot = train_mod.save_optimizer, [], {}

    def save_optimizer_failing_second_time(optimizer, path):
        saves.append(path)
        if len(saves) == 1:
            return real_save(optimizer, path)
        # the model is already written into the temporary folder; half of this file, then a crash
        with open(path, "wb") as f:
            f.write(b"\x00" * 100)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(train_mod, "save_optimizer", save_optimizer_failing_second_time)
    real_checkpoint = train_mod.save_checkpoint

    def checkpoint_and_snapshot(out_dir, *args):
        real_checkpoint(out_dir, *args)
        if not snapshot:
            snapshot.update({n: (out_dir / n).read_bytes() for n in os.listdir(out_dir)})

    monkeypatch.setattr(train_mod, "save_checkpoint", checkpoint_and_snapshot)
    with pytest.raises(OSError, match="simulated"):
        train(_cfg(text_file, out, max_iters=10))
    monkeypatch.undo()
    assert len(saves) == 2
    assert sorted(os.listdir(out)) == sorted(snapshot)  # no temporary folder left behind
    for name, content in snapshot.items():
        assert (out / name).read_bytes() == content, name
    assert load_train_state(out)["iter"] == 5
    GPT.from_pretrained(out)  # loadable
    resumed = train(_cfg(text_file, out, max_iters=10, resume=True))
    assert resumed["iters"] == 10


def test_checkpoint_with_files_from_different_saves_is_detected(text_file, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train(_cfg(text_file, a, max_iters=5))
    train(_cfg(text_file, b, max_iters=5, seed=8))
    shutil.copy(b / "model.safetensors", a / "model.safetensors")
    with pytest.raises(ValueError, match="inconsistent: model.safetensors"):
        load_train_state(a)


def test_resume_refuses_a_different_model(text_file, tmp_path):
    train(_cfg(text_file, tmp_path / "r", max_iters=5))
    with pytest.raises(ValueError, match="n_embd: checkpoint 32, now 64"):
        train(_cfg(text_file, tmp_path / "r", max_iters=10, n_embd=64, resume=True))
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train(_cfg(text_file, tmp_path / "nothing-here", resume=True))


def test_weight_decay_only_on_matrices():
    model = GPT(train_mod.GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16), seed=0)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[id(p)] for p in decay["params"])
    expected = sorted(n for n, _ in model.named_parameters() if n.endswith(".weight") and ".ln_" not in n)
    assert decayed == expected and "transformer.wte.weight" in decayed and "transformer.wpe.weight" in decayed
    assert all(".bias" in names[id(p)] or ".ln_" in names[id(p)] for p in no_decay["params"])
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    assert len(decay["params"]) + len(no_decay["params"]) == len(model.parameters())


def test_learning_rate_schedule():
    cfg = TrainConfig(data="x", lr=1e-3, min_lr=1e-4, warmup_iters=100, max_iters=2000)
    assert cfg.lr_at(0) == pytest.approx(1e-3 / 101)
    assert cfg.lr_at(49) == pytest.approx(1e-3 * 50 / 101)
    assert cfg.lr_at(100) == pytest.approx(1e-3)
    assert cfg.lr_at(1050) == pytest.approx(0.5 * (1e-3 + 1e-4))  # cosine half way
    assert cfg.lr_at(2000) == pytest.approx(1e-4)
    assert TrainConfig(data="x", max_iters=100, lr_decay_iters=200, warmup_iters=0).lr_at(100) > 5e-4


def test_evaluation_turns_dropout_off_and_restores_train_mode(text_file):
    model = GPT(train_mod.GPTConfig(vocab_size=len(set(TEXT)), block_size=16, n_layer=1, n_head=2, n_embd=16,
                                    dropout=0.5), seed=0)
    model.train()
    data = TextData.from_file(text_file)
    a = evaluate(model, data, 4, 16, 2, seed=1)
    assert model.training
    model.eval()
    assert evaluate(model, data, 4, 16, 2, seed=1) == a


def test_bad_data_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(_cfg(tmp_path / "missing.txt", tmp_path / "o"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        train(_cfg(tmp_path / "empty.txt", tmp_path / "o"))
    (tmp_path / "short.txt").write_text("To be, or not to be, that is the question.")
    with pytest.raises(ValueError, match=r"too short: its val split has 5 tokens .* block_size \+ 1 = 17"):
        train(_cfg(tmp_path / "short.txt", tmp_path / "o"))


@pytest.mark.parametrize("kw, match", [
    (dict(n_embd=30, n_head=4), "divisible"), (dict(lr=1e-4, min_lr=1e-3), "min_lr"),
    (dict(batch_size=0), "batch_size"), (dict(tokenizer="bpe"), "tokenizer"), (dict(beta2=1.0), "beta2"),
])
def test_bad_config_is_a_clear_error(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(data="x", **kw)


# ------------------------------------------------------------------ command line


def test_cli_train_resume_and_sample(text_file, tmp_path, capsys):
    out = str(tmp_path / "cli")
    args = ["train", "--data", str(text_file), "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
            "--block-size", "16", "--batch-size", "4", "--max-iters", "6", "--warmup-iters", "2",
            "--eval-interval", "3", "--eval-iters", "1", "--out", out, "--no-progress"]
    assert main(args) == 0
    assert "iters 6" in capsys.readouterr().out
    # resume keeps the run's options (n_embd 16 etc.) and takes the new max_iters
    assert main(["train", "--out", out, "--resume", "--max-iters", "9", "--no-progress"]) == 0
    assert json.loads((tmp_path / "cli" / "metrics.json").read_text())["iters"] == 9
    assert "iters 9" in capsys.readouterr().out
    assert main(["sample", "--ckpt", out, "--prompt", "First", "--max-new-tokens", "12", "--seed", "0"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("First") and len(text) == len("First") + 12 + 1  # 12 characters and a newline
    assert main(["sample", "--ckpt", out, "--prompt", "First", "--max-new-tokens", "12", "--seed", "0",
                 "--temperature", "0", "--no-cache"]) == 0


@pytest.mark.parametrize("argv, match", [
    (["train", "--data", "/nonexistent/input.txt"], "error: data file '/nonexistent/input.txt' does not exist"),
    (["train", "--max-iters", "5"], "error: --data FILE is required"),
    (["sample", "--ckpt", "/nonexistent/ckpt"], "error: checkpoint folder"),
])
def test_cli_errors_exit_2_without_traceback(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_cli_sample_rejects_unseen_characters(text_file, tmp_path, capsys):
    out = str(tmp_path / "c")
    train(_cfg(text_file, out, max_iters=2, warmup_iters=1))
    capsys.readouterr()
    assert main(["sample", "--ckpt", out, "--prompt", "Zebra™"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 3 character(s) not in the char tokenizer's vocabulary: 'Z', 'b', '™'")
    assert "Traceback" not in err


def test_checkpoint_blocks_switch_trains_the_same_run(text_file, tmp_path):
    """--checkpoint-blocks reruns each block in backward: the same losses, from the library and the CLI."""
    plain = train(_cfg(text_file, tmp_path / "a", max_iters=6, dropout=0.1))
    ck = train(_cfg(text_file, tmp_path / "b", max_iters=6, dropout=0.1, checkpoint_blocks=True))
    assert plain["losses"] == ck["losses"] and plain["val_loss"] == ck["val_loss"]
    assert main(["train", "--data", str(text_file), "--out", str(tmp_path / "c"), "--n-layer", "2", "--n-head", "2",
                 "--n-embd", "32", "--block-size", "16", "--max-iters", "3", "--warmup-iters", "1",
                 "--eval-interval", "3", "--eval-iters", "1", "--no-progress", "--checkpoint-blocks"]) == 0
    assert json.loads((tmp_path / "c" / "train_state.json").read_text())["config"]["checkpoint_blocks"] is True
