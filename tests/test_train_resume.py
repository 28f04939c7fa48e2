"""Resuming a run: exactly, after an interrupt anywhere in a step (issue 20, item 20a); only on the data it was
trained on (item 9); never from weights that are not finite (item 11); from the newest complete checkpoint when
latest.json is lost (item 13)."""
import os
import signal

import pytest

import gpt.train as train_mod
from gpt.config import GPTConfig
from gpt.data import TextData
from gpt.randomness import RunGenerators
from gpt.train import TrainConfig, load_run, train

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 8


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "input.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def _cfg(text_file, out, dropout=0.0, **kw):
    base = dict(data=str(text_file), out=str(out), batch_size=4, max_iters=12, lr=3e-3, min_lr=3e-4, warmup_iters=2,
                eval_interval=4, eval_iters=1, seed=7, progress=False, workers=1,
                model=GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, dropout=dropout))
    base.update(kw)
    return TrainConfig(**base)


# ------------------------------------------------------------------ an interrupt after the batch is drawn
@pytest.fixture
def raising_sigint_handler():
    """A SIGINT handler of the program's own that raises KeyboardInterrupt at once (as some frameworks install):
    train() leaves such a handler alone, so Ctrl-C lands wherever the step is."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGINT, handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_issue20_item20_ctrl_c_after_the_step_drew_its_batch_and_masks_resumes_exactly(
        text_file, tmp_path, monkeypatch, raising_sigint_handler):
    straight = train(_cfg(text_file, tmp_path / "straight", dropout=0.1))
    real_clip, calls = train_mod.clip_grad_norm_, []

    def clip_then_ctrl_c(params, max_norm):  # step 7 has drawn its batch and its dropout masks, and backpropagated
        calls.append(1)
        if len(calls) == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return real_clip(params, max_norm)

    monkeypatch.setattr(train_mod, "clip_grad_norm_", clip_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(text_file, tmp_path / "stop", dropout=0.1))
    monkeypatch.undo()
    assert load_run(tmp_path / "stop").state["iter"] == 6  # the step cut short is not saved: it runs again
    resumed = train(_cfg(text_file, tmp_path / "stop", dropout=0.1, resume=True))
    assert resumed["losses"] == straight["losses"] and resumed["evals"] == straight["evals"]


def test_issue20_item20_an_interrupt_raised_right_after_the_batch_is_drawn_resumes_exactly(
        text_file, tmp_path, monkeypatch):
    straight = train(_cfg(text_file, tmp_path / "straight"))
    real_get_batch, calls = TextData.get_batch, []

    def get_batch_then_interrupt(self, split, *args):  # a worker's, another thread's or a handler's interrupt
        batch = real_get_batch(self, split, *args)
        if split == "train":
            calls.append(1)
            if len(calls) == 10:  # evaluations at 0 and 4 drew one each: the batch of step 8
                raise KeyboardInterrupt
        return batch

    monkeypatch.setattr(TextData, "get_batch", get_batch_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(text_file, tmp_path / "stop"))
    monkeypatch.undo()
    assert load_run(tmp_path / "stop").state["iter"] == 7
    resumed = train(_cfg(text_file, tmp_path / "stop", resume=True))
    assert resumed["losses"] == straight["losses"] and resumed["evals"] == straight["evals"]


# ------------------------------------------------------------------ weights that are not finite
def _rewrite_tensor(folder, file, name, change):
    """Change one tensor of a checkpoint's safetensors file and its manifest entry alike (a consistent checkpoint)."""
    import json

    from safetensors.numpy import load_file, save_file

    import gpt.checkpoint as ck
    path = folder / file
    tensors = load_file(str(path))
    change(tensors[name])
    metadata = None
    if file == "optimizer.safetensors":
        from safetensors import safe_open
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata()
    save_file(tensors, str(path), metadata=metadata)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][file] = {"sha256": ck.sha256(path), "bytes": path.stat().st_size}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("file, name", [("model.safetensors", "transformer.h.0.attn.c_attn.weight"),
                                        ("optimizer.safetensors", "state.3.exp_avg_sq")])
def test_issue20_item11_resume_refuses_a_checkpoint_that_is_not_finite_naming_the_tensor(text_file, tmp_path, capsys,
                                                                                       file, name):
    import numpy as np

    from gpt.cli import main
    out = tmp_path / "run"
    train(_cfg(text_file, out, max_iters=4))
    folder = load_run(out).path
    _rewrite_tensor(folder, file, name, lambda a: a.reshape(-1).__setitem__(0, np.nan))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--max-iters", "8", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {folder / file} is not finite (NaN or infinity in {name}): training cannot continue from "
                   f"it; the run has no other checkpoint; restore the file from a backup or train again\n")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------ latest.json lost
@pytest.mark.parametrize("how", ["deleted", "a copy without it", "unreadable", "naming a folder that is gone"])
def test_issue20_item13_resume_without_latest_json_takes_the_newest_complete_checkpoint(text_file, tmp_path, capsys,
                                                                                       how):
    import json
    import shutil

    from gpt.cli import main
    straight = train(_cfg(text_file, tmp_path / "straight"))
    out = tmp_path / "run"
    train(_cfg(text_file, out, max_iters=8, lr_decay_iters=12, save_best=True))
    newest = load_run(out).path
    if how == "deleted":
        (out / "latest.json").unlink()
    elif how == "a copy without it":
        copy = tmp_path / "copy"
        copy.mkdir()
        for folder in out.glob("ckpt-*"):
            shutil.copytree(folder, copy / folder.name)
        out, newest = copy, copy / newest.name
    elif how == "unreadable":
        (out / "latest.json").write_text("{")
    else:
        (out / "latest.json").write_text(json.dumps({"checkpoint": "ckpt-0000012-0123abcd"}))
    capsys.readouterr()
    assert main(["sample", "--ckpt", str(out), "--max-new-tokens", "2", "--seed", "0", "--no-progress"]) == 0
    assert f"note: {out / 'latest.json'} " in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--no-progress"]) == 2  # not a new run: its checkpoints stay
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" not in err and err.count("\n") == 1, err
    # --engine math: the ops that ran train() above (the command line's default, fast, rounds differently in float32)
    assert main(["train", "--resume", "--out", str(out), "--max-iters", "12", "--no-progress", "--engine", "math"]) == 0
    err = capsys.readouterr().err
    assert f"using the newest complete checkpoint, {newest.name}\n" in err and "resuming from iter 8" in err, err
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["losses"] == straight["losses"] and resumed["evals"] == straight["evals"]
    assert load_run(out).state["iter"] == 12 and not load_run(out).note  # latest.json is back


def test_issue20_item13_a_damaged_newest_checkpoint_is_skipped_and_said(tmp_path):
    import gpt.checkpoint as ck
    from gpt.model import GPT
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
    run = tmp_path / "run"
    older = ck.save(run, GPT(config, seed=0), None, {"iter": 4}, best=True)
    newer = ck.save(run, GPT(config, seed=1), None, {"iter": 8})
    with open(newer / "model.safetensors", "r+b") as f:
        f.seek(-1, 2)
        f.write(b"\xff")
    with pytest.raises(ck.CheckpointError, match=f"with {newer} moved away, train --resume continues from the newest"):
        ck.load(run)  # latest.json names a damaged checkpoint: said, with what to do
    newer.rename(tmp_path / "moved")
    assert ck.load(run).path == older and ck.load(run).note == (
        f"{run / 'latest.json'} names {newer.name}, which does not exist: using the newest complete checkpoint, "
        f"{older.name}")
    (tmp_path / "moved").rename(newer)
    (run / "latest.json").unlink()
    assert ck.is_run(run)
    loaded = ck.load(run)
    assert loaded.path == older and loaded.note.startswith(
        f"{run / 'latest.json'} is missing: using the newest complete checkpoint, {older.name}; skipped: "
        f"{newer / 'model.safetensors'} is damaged (sha256 mismatch: expected ")
    with open(older / "state.json", "a") as f:
        f.write(" ")
    with pytest.raises(ck.CheckpointError) as e:
        ck.load(run)
    assert str(e.value).startswith(f"{run / 'latest.json'} is missing, and no checkpoint of {run} is complete: "
                                   f"{newer / 'model.safetensors'} is damaged") and "--overwrite" not in str(e.value)
    assert f"{older / 'state.json'} is damaged" in str(e.value)


# ------------------------------------------------------------------ the text a run was trained on
def _resume(out, *args):
    from gpt.cli import main
    return main(["train", "--resume", "--out", str(out), "--no-progress", *args])


def test_issue20_item9_resume_refuses_another_text_unless_told(text_file, tmp_path, capsys):
    import hashlib
    out = tmp_path / "run"
    train(_cfg(text_file, out, max_iters=4))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = tmp_path / "other.txt"
    other.write_text(TEXT.replace("speak", "peaks"), encoding="utf-8")  # the same characters, another text
    sha = {p: hashlib.sha256(p.read_text(encoding="utf-8").encode()).hexdigest()[:12] for p in (text_file, other)}
    capsys.readouterr()
    assert _resume(out, "--data", str(other), "--max-iters", "8") == 2
    assert capsys.readouterr().err == (
        f"error: --data {other}: {len(TEXT):,} characters, sha256 {sha[other]}... is not the text the run in {out} was "
        f"trained on ({text_file}: {len(TEXT):,} characters, sha256 {sha[text_file]}...); give that text, or "
        f"--allow-data-change to continue on this one\n")
    text_file.write_text(TEXT.replace("speak", "peaks"), encoding="utf-8")  # the same path, changed contents
    assert _resume(out, "--max-iters", "8") == 2
    assert "is not the text the run in" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert _resume(out, "--max-iters", "8", "--allow-data-change") == 0  # said, and from now on the run's text
    err = capsys.readouterr().err
    assert f"note: --data {text_file}: {len(TEXT):,} characters, sha256 {sha[other]}... is not the text" in err
    assert "continuing on it, as --allow-data-change asks" in err
    assert load_run(out).state["data"]["sha256"].startswith(sha[other])
    assert _resume(out, "--max-iters", "10") == 0


def test_issue20_item9_the_same_text_elsewhere_resumes_exactly(text_file, tmp_path, capsys):
    import shutil
    straight = train(_cfg(text_file, tmp_path / "straight"))
    train(_cfg(text_file, tmp_path / "run", max_iters=6, lr_decay_iters=12))
    moved = tmp_path / "moved.txt"
    shutil.move(text_file, moved)  # the run's text, moved (or the run copied to another machine)
    capsys.readouterr()
    assert _resume(tmp_path / "run", "--data", str(moved), "--max-iters", "12") == 0
    assert "note:" not in capsys.readouterr().err
    assert load_run(tmp_path / "run").state["losses"] == straight["losses"]


def test_issue20_item9_a_run_saved_before_runs_recorded_their_text_resumes_on_its_path(text_file, tmp_path, capsys):
    import json

    import gpt.checkpoint as ck
    out = tmp_path / "run"
    train(_cfg(text_file, out, max_iters=4))
    folder = load_run(out).path
    state = json.loads((folder / "state.json").read_text())
    del state["data"]
    (folder / "state.json").write_text(json.dumps(state))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["state.json"] = {"sha256": ck.sha256(folder / "state.json"),
                                       "bytes": (folder / "state.json").stat().st_size}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    copy = tmp_path / "copy.txt"
    copy.write_text(TEXT, encoding="utf-8")
    capsys.readouterr()
    assert _resume(out, "--data", str(copy), "--max-iters", "6") == 2  # only the path can be compared
    assert capsys.readouterr().err == (
        f"error: --data {copy} is not the text the run in {out} was trained on ({text_file} (the run, saved by an "
        f"older version, records its path only)); give that text, or --allow-data-change to continue on this one\n")
    assert _resume(out, "--max-iters", "6") == 0
    assert load_run(out).state["data"] == {"chars": len(TEXT), "sha256": __import__("hashlib").sha256(
        TEXT.encode()).hexdigest()}


def test_issue20_item9_allow_data_change_is_for_resume(text_file, tmp_path):
    from gpt.errors import UsageError
    with pytest.raises(UsageError, match="--allow-data-change lets --resume continue a run on another text"):
        _cfg(text_file, tmp_path / "run", allow_data_change=True)


def test_issue20_item13_a_failed_save_without_latest_json_deletes_no_checkpoint(tmp_path, monkeypatch):
    """Sibling: a save's clean-up removed every ckpt-* folder no pointer names, so with latest.json lost a save
    that failed (a full disk) deleted all the run's complete checkpoints."""
    import gpt.checkpoint as ck
    from gpt.model import GPT
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
    run = tmp_path / "run"
    first = ck.save(run, GPT(config, seed=0), None, {"iter": 4}, best=True)
    second = ck.save(run, GPT(config, seed=1), None, {"iter": 8})
    (run / "latest.json").unlink()
    (run / "best.json").unlink()  # two complete checkpoints, no pointer to either
    real_atomic_write = ck.atomic_write

    def full_disk(path, write):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "atomic_write", full_disk)  # the new checkpoint is written, its pointer is not
    with pytest.raises(ck.CheckpointWriteError, match=f"No space left on device \\(errno 28\\); the checkpoints in "
                                                      f"{run} stay"):
        ck.save(run, GPT(config, seed=2), None, {"iter": 12})
    monkeypatch.setattr(ck, "atomic_write", real_atomic_write)
    assert {first.name, second.name} <= set(os.listdir(run))  # (and the new one, complete but never pointed to)
    assert ck.load(run).state["iter"] == 12 and "using the newest complete checkpoint" in ck.load(run).note


def test_issue20_item20_an_interrupt_between_the_step_and_its_rng_bookkeeping_resumes_exactly(text_file, tmp_path,
                                                                                              monkeypatch):
    """Sibling: the loop marked a step finished before it recorded the generators' state after it, so an
    interrupt landing in between saved the step with the generators of the step before (its batch drawn again)."""
    straight = train(_cfg(text_file, tmp_path / "straight"))
    real_state, calls = RunGenerators.state, []

    def state_interrupted(self):  # calls: 1 before the loop, 2-5 after steps 1-4, 6 after step 5
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_state(self)

    monkeypatch.setattr(RunGenerators, "state", state_interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(text_file, tmp_path / "stop"))
    monkeypatch.undo()
    resumed = train(_cfg(text_file, tmp_path / "stop", resume=True))
    assert resumed["losses"] == straight["losses"] and resumed["evals"] == straight["evals"]
