"""gpt.checkpoint on the disk: every published file reaches the disk before the rename that publishes it
(issue 20, item 20b), and a full disk is one error line that names the folder and keeps the last checkpoint
(issue 20, item 4)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpt.checkpoint as ck
from gpt.config import GPTConfig
from gpt.files import atomic_write
from gpt.model import GPT
from gpt.train import TrainConfig, load_run, train
from tinygrad_lite.optim import AdamW

REPO = Path(__file__).resolve().parents[1]
TINY = dict(vocab_size=23, block_size=8, n_layer=1, n_head=2, n_embd=16)
needs_proc_fd = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)")


def _trained(seed=0):
    model = GPT(GPTConfig(**TINY), seed=seed)
    optimizer = AdamW(model.parameters(), lr=1e-2)
    idx = np.random.default_rng(0).integers(0, 23, (2, 8))
    model.loss(idx, idx).backward()
    optimizer.step()
    return model, optimizer


class DiskLog:
    """Records, in order, every os.fsync (as the real path of the fd's file), os.rename and os.replace."""

    def __init__(self, mp: pytest.MonkeyPatch):
        self.events: list[tuple] = []
        real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

        def fsync(fd):
            self.events.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
            return real_fsync(fd)

        def rename(src, dst, *args, **kw):
            self.events.append(("publish", os.path.realpath(src), os.path.realpath(dst)))
            return real_rename(src, dst, *args, **kw)

        def replace(src, dst, *args, **kw):
            self.events.append(("publish", os.path.realpath(src), os.path.realpath(dst)))
            return real_replace(src, dst, *args, **kw)

        mp.setattr(os, "fsync", fsync)
        mp.setattr(os, "rename", rename)
        mp.setattr(os, "replace", replace)

    def check(self) -> int:
        """Assert that each rename published only fsynced files (and a fsynced folder's entries), and that the
        folder it renamed into was fsynced after it, before the next rename; return how many renames there were."""
        publishes = [i for i, e in enumerate(self.events) if e[0] == "publish"]
        for n, i in enumerate(publishes):
            _, src, dst = self.events[i]
            before = {e[1] for e in self.events[:i] if e[0] == "fsync"}
            if os.path.isdir(dst):  # a folder: its files and its own entries
                files = [os.path.join(src, os.path.relpath(os.path.join(d, f), dst))
                         for d, _, names in os.walk(dst) for f in names]
                assert files, dst
                for f in files + [src]:
                    assert f in before, f"{f} was not fsynced before the rename to {dst}"
            else:
                assert src in before, f"{src} was not fsynced before it was renamed to {dst}"
            end = publishes[n + 1] if n + 1 < len(publishes) else len(self.events)
            after = {e[1] for e in self.events[i + 1:end] if e[0] == "fsync"}
            assert os.path.dirname(dst) in after, f"{os.path.dirname(dst)} was not fsynced after the rename to {dst}"
        return len(publishes)


@needs_proc_fd
def test_issue20_item20_every_file_a_checkpoint_publishes_is_fsynced_before_its_rename(tmp_path, monkeypatch):
    run = tmp_path / "run"
    model, optimizer = _trained()
    log = DiskLog(monkeypatch)
    ck.save(run, model, optimizer, {"iter": 1}, best=True)  # a new run: the folder, then both pointers
    ck.save(run, model, optimizer, {"iter": 2}, best=True)  # pointers replaced
    monkeypatch.undo()
    assert log.check() == 6  # each save: the checkpoint folder, latest.json, best.json
    assert ck.load(run).state["iter"] == 2


@needs_proc_fd
def test_issue20_item20_atomic_write_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    log = DiskLog(monkeypatch)
    atomic_write(tmp_path / "a.json", lambda tmp: Path(tmp).write_text("{}"))  # metrics.json, an HF export, plots
    monkeypatch.undo()
    assert log.check() == 1 and (tmp_path / "a.json").read_text() == "{}"


@needs_proc_fd
def test_issue20_item20_a_training_run_publishes_only_fsynced_files(tmp_path, monkeypatch):
    text = tmp_path / "input.txt"
    text.write_text("abcdefghij klmnopqrst\n" * 20)
    cfg = TrainConfig(data=str(text), out=str(tmp_path / "run"), batch_size=2, max_iters=4, eval_interval=2,
                      eval_iters=1, progress=False, workers=1, save_best=True,
                      model=GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8))
    log = DiskLog(monkeypatch)
    train(cfg)
    monkeypatch.undo()
    assert log.check() >= 2 * 3 + 1  # two checkpoints (folder, latest.json, best.json), metrics.json


# ------------------------------------------------------------------ a full disk
SMALL = ["--n-layer", "1", "--n-head", "2", "--n-embd", "64", "--block-size", "16", "--batch-size", "4", "--workers",
         "1", "--eval-iters", "1", "--no-progress"]
ENOSPC = "Error while serializing: I/O error: No space left on device (os error 28)"  # what safetensors raises


def _text(tmp_path) -> Path:
    path = tmp_path / "input.txt"
    path.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 20)
    return path


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err and err.endswith("\n"), err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and err.splitlines()[-1] == lines[0], err
    return lines[0]


@pytest.mark.parametrize("where", ["safetensors", "json", "metrics"])
def test_issue20_item4_a_full_disk_is_one_error_line_exit_1_and_keeps_the_last_checkpoint(tmp_path, monkeypatch,
                                                                                           capsys, where):
    from safetensors import SafetensorError

    import gpt.train as train_mod
    from gpt.cli import main
    run = tmp_path / "run"
    real_save_file, real_open, real_atomic_write, writes = ck.save_file, open, train_mod.atomic_write, []

    def save_file(tensors, path, metadata=None):  # the disk fills up during the second checkpoint
        writes.append(path)
        if where == "safetensors" and len(writes) > 2:
            raise SafetensorError(ENOSPC)
        return real_save_file(tensors, path, metadata=metadata)

    def open_(path, *args, **kw):
        if where == "json" and len(writes) > 2 and str(path).endswith("state.json"):
            raise OSError(28, "No space left on device", str(path))
        return real_open(path, *args, **kw)

    def atomic_write(path, write):
        if where == "metrics":
            raise OSError(28, "No space left on device", str(path))
        return real_atomic_write(path, write)

    monkeypatch.setattr(ck, "save_file", save_file)
    monkeypatch.setattr(ck, "open", open_, raising=False)
    monkeypatch.setattr(train_mod, "atomic_write", atomic_write)
    code = main(["train", "--data", str(_text(tmp_path)), *SMALL, "--max-iters", "4", "--eval-interval", "2",
                 "--out", str(run)])
    monkeypatch.undo()
    line = _one_error_line(capsys.readouterr().err)
    assert code == 1
    if where == "metrics":
        assert line == (f"error: cannot write {run / 'metrics.json'}: No space left on device; the run's checkpoint "
                        f"of iteration 4 in {run} is complete")
        assert load_run(run).state["iter"] == 4
    else:
        first = ck.load(run)
        assert line == (f"error: cannot save a checkpoint in {run}: No space left on device (errno 28); "
                        f"{run / 'latest.json'} still names {first.path.name}, complete")
        assert first.state["iter"] == 2
    assert not [n for n in os.listdir(run) if n.startswith(".tmp")]  # no half-written checkpoint left


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare") or sys.platform != "linux":
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt || "
                            "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)
    return probe.returncode == 0


FULL_DISK = """
set -u
mount -t tmpfs -o size=1000k tmpfs "$DISK" || exit 99
python -m gpt train "$@" --out "$DISK/run"
echo "exit status $?"
python -c "import os, sys; from gpt.train import load_run; print('resumable at', load_run(sys.argv[1]).state['iter']); \
print(*sorted(os.listdir(sys.argv[1])))" "$DISK/run"
"""


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare -m and mount (root in a user namespace)")
def test_issue20_item4_a_real_full_disk(tmp_path):
    """train --out on a 1000 kB tmpfs (in a mount namespace of its own): one checkpoint of this model (650 kB)
    fits, the next one does not."""
    disk = tmp_path / "disk"
    disk.mkdir()
    env = dict(os.environ, DISK=str(disk), PYTHONPATH=str(REPO))
    args = ["--data", str(_text(tmp_path)), *SMALL, "--max-iters", "100", "--eval-interval", "1"]
    proc = subprocess.run(["unshare", "-m", "sh", "-c", FULL_DISK, "sh", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = _one_error_line(proc.stderr)
    assert line.startswith(f"error: cannot save a checkpoint in {disk / 'run'}: No space left on device (errno 28); "
                           f"{disk / 'run' / 'latest.json'} still names ckpt-0000001-"), line
    assert "exit status 1\nresumable at 1\n" in proc.stdout
    kept = line.split("still names ")[1].split(",")[0]
    # no half-written checkpoint left (the run's log may run ahead of it: a resume cuts it to the checkpoint)
    assert proc.stdout.splitlines()[-1].split() == [kept, "latest.json", "log.jsonl"]


def test_issue20_item4_a_killed_saves_leftover_is_removed_before_the_next_save_writes(tmp_path, monkeypatch):
    """Sibling: a save killed half-way (SIGKILL) leaves a .tmp-* folder as large as a checkpoint, removed only
    after the next save had succeeded: on a nearly full disk that next save could not fit beside it."""
    run = tmp_path / "run"
    model, optimizer = _trained()
    ck.save(run, model, optimizer, {"iter": 1})
    leftover = run / ".tmp-0123abcd"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"\0" * 1000)
    real_write, seen = ck._write_folder, []

    def write_folder(folder, *args):
        seen.append(leftover.exists())
        return real_write(folder, *args)

    monkeypatch.setattr(ck, "_write_folder", write_folder)
    ck.save(run, model, optimizer, {"iter": 2})
    assert seen == [False] and ck.load(run).state["iter"] == 2
