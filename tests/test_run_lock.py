"""One run at a time in a run folder (issue 20, item 8): a second `train --out X` (new, --resume or --overwrite)
is refused with the PID of the first while the first lives; a lock left by a killed run is taken over, said."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpt.cli import main
from gpt.errors import UsageError
from gpt.run_lock import LOCK_FILE, RunLock
from gpt.train import load_run
from mpi import MPIEXEC, mpi_test

REPO = Path(__file__).resolve().parents[1]
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" * 20
SMALL = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
         "--eval-iters", "1", "--no-progress"]
needs_flock = pytest.mark.skipif(os.name != "posix", reason="the lock is POSIX flock")


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "input.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def _start(*args, launch=()):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen([*launch, sys.executable, "-m", "gpt", "train", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _wait_for_a_checkpoint(proc, out: Path, timeout=120):
    deadline = time.time() + timeout
    while not (out / "latest.json").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.02)


def _holder(out: Path) -> dict:
    return json.loads((out / LOCK_FILE).read_text())


def _files(out: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}


@needs_flock
def test_issue20_item8_a_second_run_on_a_folder_in_use_is_refused_with_the_pid_of_the_first(text_file, tmp_path,
                                                                                            capsys):
    out = tmp_path / "run"
    first = _start("--data", str(text_file), *SMALL, "--max-iters", "1000000", "--eval-interval", "20",
                   "--workers", "2", "--out", str(out))
    try:
        _wait_for_a_checkpoint(first, out)
        holder = _holder(out)
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
        busy = (f"error: --out {out} is in use by another run (PID {first.pid} on {holder['host']}, started "
                f"{holder['started']}); wait for it to end, or give another --out\n")
        for extra in ([], ["--overwrite"], ["--resume"]):  # a new run, a replacement, a second resume
            before = _files(out) if extra == ["--overwrite"] else None
            code = main(["train", "--data", str(text_file), *SMALL, "--max-iters", "1", *extra, "--out", str(out)])
            assert (code, capsys.readouterr().err) == (2, busy), extra
            if before is not None:
                assert set(_files(out)) >= set(before)  # nothing of the first run deleted
        assert first.poll() is None  # and the first run goes on
    finally:
        first.send_signal(signal.SIGKILL)  # the parent only: its worker processes must not keep the lock
        first.wait(timeout=60)
        first.stderr.close()
    assert _holder(out)["pid"] == first.pid  # the killed run's lock file stays, its lock does not
    it = load_run(out).state["iter"]
    assert main(["train", "--resume", "--out", str(out), "--max-iters", str(it + 2), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert (f"note: --out {out} was locked by PID {first.pid} on {holder['host']}, started {holder['started']}, which "
            f"has ended without unlocking it (killed?): taking it over\n") in err
    assert not (out / LOCK_FILE).exists() and load_run(out).state["iter"] == it + 2


@needs_flock
def test_issue20_item8_the_lock_itself(tmp_path):
    out = tmp_path / "new" / "run"
    a, b = RunLock(out), RunLock(out, name="the run folder")
    assert a.acquire() == "" and (out / LOCK_FILE).exists()
    with pytest.raises(UsageError, match=f"the run folder {out} is in use by another run \\(PID {os.getpid()} on "):
        b.acquire()  # another open of the file: refused in one process too
    a.release()
    assert not (tmp_path / "new").exists()  # the folders it made, still empty, are gone again
    assert b.acquire() == ""
    (out / "latest.json").write_text("{}")
    b.release()
    assert sorted(os.listdir(out)) == ["latest.json"]  # a folder holding something stays
    (out / LOCK_FILE).write_text(json.dumps({"pid": 123456789, "host": "elsewhere", "started": "then"}))
    c = RunLock(out)
    assert c.acquire() == (f"--out {out} was locked by PID 123456789 on elsewhere, started then, which has ended "
                           "without unlocking it (killed?): taking it over")
    assert _holder(out)["pid"] == os.getpid()
    c.release()
    c.release()  # twice: nothing more
    assert RunLock(tmp_path / "gone").acquire(create=False) == "" and not (tmp_path / "gone").exists()


@needs_flock
def test_issue20_item8_a_file_system_without_locks_runs_unlocked_and_says_so(tmp_path, monkeypatch):
    import errno

    import gpt.run_lock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(gpt.run_lock.fcntl, "flock", no_locks)
    lock = RunLock(tmp_path / "run")
    assert lock.acquire() == (f"--out {tmp_path / 'run'} cannot be locked (No locks available): make sure no other "
                              "run writes there")
    lock.release()
    assert sorted(os.listdir(tmp_path / "run")) == [LOCK_FILE]  # not held, so not its to remove


def _wait_until_unlocked(out: Path, timeout=60) -> None:
    import fcntl
    deadline = time.time() + timeout
    with open(out / LOCK_FILE) as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return  # (closing the file unlocks it again)
            except BlockingIOError:
                assert time.time() < deadline, "the killed run's lock was not released"
                time.sleep(0.05)


@mpi_test
def test_issue20_item8_under_mpiexec_rank_0_holds_the_lock(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    first = _start("--data", str(text_file), *SMALL, "--max-iters", "1000000", "--eval-interval", "20", "--out",
                   str(out), launch=(MPIEXEC, "-n", "2"))
    try:
        _wait_for_a_checkpoint(first, out)
        pid = _holder(out)["pid"]
        assert pid != first.pid  # a rank, not mpiexec
        assert main(["train", "--resume", "--out", str(out), "--max-iters", "1", "--no-progress"]) == 2
        assert f"is in use by another run (PID {pid} on " in capsys.readouterr().err
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # mpiexec and its ranks
        first.communicate(timeout=60)
    _wait_until_unlocked(out)  # the ranks end a moment after mpiexec
    it = load_run(out).state["iter"]
    code = main(["train", "--resume", "--out", str(out), "--max-iters", str(it + 1), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0 and f"was locked by PID {pid} on " in err and not (out / LOCK_FILE).exists(), err


def test_issue20_item8_a_resume_loaded_before_another_run_saved_loads_the_run_again(text_file, tmp_path, capsys):
    from gpt.config import GPTConfig
    from gpt.train import TrainConfig, train

    def cfg(max_iters, resume):
        return TrainConfig(data=str(text_file), out=str(tmp_path / "run"), batch_size=4, max_iters=max_iters,
                           eval_interval=2, eval_iters=1, progress=False, workers=1, resume=resume,
                           model=GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16))
    train(cfg(2, False))
    loaded = load_run(tmp_path / "run")  # as the command line does, before train() takes the lock ...
    train(cfg(4, True))  # ... while another run continues it
    capsys.readouterr()
    assert train(cfg(6, True), resume_from=loaded)["iters"] == 6
    assert "resuming from iter 4" in capsys.readouterr().err


def test_issue20_item8_a_run_folder_that_cannot_be_written_is_one_error_line(text_file, tmp_path, monkeypatch,
                                                                            capsys):
    """Sibling: the lock is the first thing a run writes; a read-only run folder was a PermissionError traceback."""
    import gpt.run_lock
    out = tmp_path / "run"
    assert main(["train", "--data", str(text_file), *SMALL, "--max-iters", "2", "--out", str(out)]) == 0
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(LOCK_FILE) and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(gpt.run_lock.os, "open", read_only)
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--max-iters", "4", "--no-progress"]) == 2
    assert capsys.readouterr().err == f"error: --out {out} cannot be written: Permission denied\n"


def test_issue20_item8_a_checkpoint_folder_is_not_a_run_folder(text_file, tmp_path, capsys):
    """Sibling: --out RUN/ckpt-... with --overwrite (which the error suggested) wrote a run into one of the run's
    checkpoints, which then held files its manifest does not list: damaged, the run's only checkpoint."""
    out = tmp_path / "run"
    assert main(["train", "--data", str(text_file), *SMALL, "--max-iters", "2", "--out", str(out)]) == 0
    folder = load_run(out).path
    before = sorted(os.listdir(folder))
    capsys.readouterr()
    for extra in (["--overwrite"], ["--resume"], []):
        assert main(["train", "--data", str(text_file), *SMALL, "--max-iters", "2", *extra, "--out", str(folder)]) == 2
        err = capsys.readouterr().err
        assert f"--out {folder} is one checkpoint of the run in {out} (it holds manifest.json), not a run folder; " \
               f"give --out {out} (with --resume to continue that run), or another --out\n" in err
        assert err.count("\n") == 1 and sorted(os.listdir(folder)) == before
    assert load_run(out).path == folder
