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
