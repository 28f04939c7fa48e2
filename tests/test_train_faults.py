"""Issue 20, `python -m gpt train`'s faults and bad input: SIGTERM, a --workers beyond the batch, train --config,
resuming on another number of ranks or with more --max-iters, a failed check that leaves no folder, a byte-order
mark, and an MPI rank that fails alone. The other commands' items are in tests/test_cli_faults.py."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gpt.cli import main
from gpt.data import TextData
from gpt.distributed import global_batch_note, keep_global_batch
from gpt.train import load_run
from mpi import MPIEXEC, mpi_test

REPO = Path(__file__).resolve().parents[1]
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 8
SMALL = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
         "--eval-iters", "1", "--no-progress"]


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "input.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def _latest_iter(out):
    try:
        return int(json.loads((Path(out) / "latest.json").read_text())["checkpoint"].split("-")[1])
    except (OSError, ValueError, KeyError):
        return -1


def _cli(*args, **popen):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "gpt", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


# ------------------------------------------------------------------ 10. SIGTERM saves, like Ctrl-C
def _children(pid: int) -> list[int]:
    """The processes `pid` started (Linux), e.g. its DataParallel workers."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.parametrize("everyone", [False, True], ids=["kill-pid", "kill-every-process"])
def test_issue20_10_sigterm_saves_the_current_iteration_and_exits_143(text_file, tmp_path, everyone):
    """`kill PID`, and a SIGTERM to every process of the run, the worker processes too (what systemd and Slurm
    do): the run saves the iteration it is at, says so, and exits 143."""
    out = tmp_path / "run"
    proc = _cli("train", "--data", str(text_file), *SMALL, "--batch-size", "8", "--workers", "2", "--max-iters",
                "100000", "--eval-interval", "50", "--out", str(out))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and _latest_iter(out) < 50:
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert len(workers) == 2 or not Path("/proc/self/task").is_dir()
    for pid in (workers if everyone else []):  # the workers first: they must live on until the parent stops them
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.5 if everyone else 0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    state = load_run(out).state
    assert state["iter"] >= 50 and len(state["losses"]) == state["iter"]
    assert f"terminated (SIGTERM): iteration {state['iter']} saved in {out}; continue with: python -m gpt train " \
           f"--resume --out {out}" in err
    assert err.endswith("terminated (SIGTERM)\n") and "Traceback" not in err


# ------------------------------------------------------------------ 7. --workers beyond the rows
def test_issue20_7_workers_beyond_the_rows_of_a_batch_are_capped_and_said(text_file, tmp_path, capsys):
    argv = ["train", "--data", str(text_file), *SMALL, "--max-iters", "1", "--workers", "64", "--out",
            str(tmp_path / "run")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "workers: --workers 64 is more than the 4 rows of a batch (--batch-size 4): each batch split over 4 " \
           "processes, one row each" in err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["workers"] == 4


# ------------------------------------------------------------------ 14. train --config
def test_issue20_14_train_takes_the_model_from_a_config_file(text_file, tmp_path, capsys):
    course = tmp_path / "course.json"
    course.write_text('{"vocab_size": 65, "d_model": 32, "n_heads": 2, "n_layers": 1, "max_len": 16, "d_ff": 48, '
                      '"dropout": 0.0}')
    argv = ["train", "--data", str(text_file), "--config", str(course), "--max-iters", "2", "--eval-iters", "1",
            "--batch-size", "4", "--no-progress"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    config = load_run(tmp_path / "a").config
    assert (config.n_embd, config.n_head, config.n_layer, config.block_size, config.n_inner) == (32, 2, 1, 16, 48)
    assert config.vocab_size == len(set(TEXT))  # the tokenizer's (char)
    assert main(argv + ["--out", str(tmp_path / "b"), "--n-layer", "2"]) == 0  # a flag overrides the file
    assert load_run(tmp_path / "b").config.n_layer == 2
    capsys.readouterr()
    for extra, other in ((["--resume", "--out", str(tmp_path / "a")], "--resume"), (["--init-from", "gpt2"],
                                                                                    "--init-from")):
        assert main(argv + extra) == 2
        err = capsys.readouterr().err
        assert f"error: --config describes a new model; {other} takes the model" in err and err.count("\n") == 1


def test_issue20_14_a_config_of_gpt2s_vocabulary_trains_with_gpt2s_tokenizer(text_file, tmp_path, capsys):
    book = tmp_path / "book.json"  # "LLMs from scratch", small
    book.write_text('{"vocab_size": 50257, "context_length": 16, "emb_dim": 16, "n_heads": 2, "n_layers": 1, '
                    '"drop_rate": 0.0, "qkv_bias": false}')
    assert main(["train", "--data", str(text_file), "--config", str(book), "--max-iters", "1", "--eval-iters", "1",
                 "--batch-size", "2", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    run = load_run(tmp_path / "run")
    assert run.state["tokenizer"] == {"kind": "gpt2"} and run.config.qkv_bias is False
    bad = tmp_path / "bad.json"
    bad.write_text('{"emb_dim": 16, "d_model": 16}')
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert f"error: --config {bad}: " in capsys.readouterr().err and not (tmp_path / "x").exists()


# ------------------------------------------------------------------ 16. --resume --max-iters keeps the schedule
def test_issue20_16_resume_with_more_iterations_keeps_the_learning_rate_schedule(text_file, tmp_path, capsys):
    common = ["train", "--data", str(text_file), *SMALL, "--eval-interval", "4", "--seed", "3"]
    assert main(common + ["--max-iters", "8", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(common + ["--max-iters", "12", "--out", str(tmp_path / "run"), "--resume"]) == 0
    assert "(warmup 0, decay until 8, then 0.0001)" in capsys.readouterr().err
    assert main(common + ["--max-iters", "12", "--lr-decay-iters", "8", "--warmup-iters", "0", "--out",
                          str(tmp_path / "straight")]) == 0  # what the run was told: decay until 8
    resumed = json.loads((tmp_path / "run" / "metrics.json").read_text())
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    np.testing.assert_allclose(resumed["losses"], straight["losses"], rtol=1e-6)
    # --lr-decay-iters given: the decay is stretched, as asked
    assert main(common + ["--max-iters", "16", "--lr-decay-iters", "16", "--out", str(tmp_path / "run"),
                          "--resume"]) == 0
    assert "decay until 16)" in capsys.readouterr().err


# ------------------------------------------------------------------ 15. another number of ranks
def test_issue20_15_the_global_batch_on_another_number_of_ranks():
    assert keep_global_batch(24, 1, 12) == (12, 2)  # 2 ranks x 12 -> one process, 2 micro-batches
    assert keep_global_batch(12, 2, 12) == (6, 1)  # one process of 12 -> 2 ranks of 6
    assert keep_global_batch(24, 3, 12) == (8, 1)
    assert keep_global_batch(12, 5, 12) is None  # no split of 12 rows over 5 ranks
    assert global_batch_note((2, 1, 12), (1, 2, 12)) == ("batch: the run took its steps on 2 ranks, now 1: "
                                                         "--batch-size 12 --grad-accum 2 keep its global batch of 24 rows")
    assert global_batch_note((2, 1, 6), (1, 1, 6)) == ("batch: the run's global batch was 12 rows (2 ranks x 1 x 6), "
                                                       "now 6 (1 x 1 x 6): its steps from here are not those it would "
                                                       "have taken")
    assert global_batch_note((1, 1, 6), (1, 1, 6)) is None


# ------------------------------------------------------------------ 18. the smaller ones
def test_issue20_18_a_failed_data_check_leaves_no_empty_out_folder(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("ab")
    for out in (tmp_path / "run", tmp_path / "new" / "deeper" / "run"):
        assert main(["train", "--data", str(short), "--out", str(out)]) == 2
        assert "is too short" in capsys.readouterr().err
        assert not out.exists() and not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()  # a folder that was there before stays
    assert main(["train", "--data", str(short), "--out", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine").is_dir()


def test_issue20_18_a_byte_order_mark_is_not_a_vocabulary_character(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes("\ufeff".encode("utf-8") + TEXT.encode("utf-8"))
    data = TextData.from_file(p, "char")
    assert data.vocab_size == len(set(TEXT)) and "\ufeff" not in data.tokenizer.decode(list(range(data.vocab_size)))


# ------------------------------------------------------------------ 6. MPI: a rank that fails alone
@mpi_test
def test_issue20_6_a_rank_that_fails_alone_is_named_and_ends_the_run(text_file, tmp_path):
    """Rank 1 fails on its own (its disk, its worker): one line naming it, and the whole run ends at once (rank 0
    waited for it in the next all-reduce forever)."""
    script = textwrap.dedent("""
        import sys
        from mpi4py import MPI
        from gpt.cli import main
        from gpt.distributed import ParallelStep
        from gpt.errors import RunFailed
        real, calls = ParallelStep.forward_backward, []
        def flaky(self, x, y):
            calls.append(1)
            if MPI.COMM_WORLD.Get_rank() == 1 and len(calls) == 3:
                raise RunFailed("the disk of rank 1 is gone")
            return real(self, x, y)
        ParallelStep.forward_backward = flaky
        sys.exit(main(sys.argv[1:]))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    start = time.time()
    res = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", script, "train", "--data", str(text_file), *SMALL,
                          "--max-iters", "1000", "--out", str(tmp_path / "run")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 1, res.stderr
    assert [line for line in res.stderr.splitlines() if line.startswith("error:")] == \
        ["error: rank 1 of 2: the disk of rank 1 is gone"]
    assert "Traceback" not in res.stderr + res.stdout and time.time() - start < 60


@mpi_test
def test_issue20_6_an_mpi_error_in_a_collective_is_one_line(tmp_path):
    """What mpi4py raises when a collective meets a dead rank (the launcher did not end this one first)."""
    script = textwrap.dedent("""
        from mpi4py import MPI
        from gpt.distributed import World
        from gpt.errors import RunFailed

        class Dead:
            def Get_rank(self): return 0
            def Get_size(self): return 2
            def allreduce(self, value):
                raise MPI.Exception(MPI.ERR_OTHER)

        try:
            World(Dead()).mean(1.0)
        except RunFailed as e:
            print(e)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert res.stdout.startswith("rank 0 of 2: another rank died or stopped answering (MPI: "), res.stdout + res.stderr
    assert res.stdout.count("\n") == 1


@mpi_test
def test_issue20_15_resuming_on_fewer_ranks_keeps_the_global_batch(text_file, tmp_path):
    """2 ranks of batch 4 for 3 iterations, then `--resume` in one process without --batch-size: --grad-accum 2
    keeps the global batch of 8, said, and the run is that of one process with batch 8 throughout."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    common = [sys.executable, "-m", "gpt", "train", "--data", str(text_file), "--n-layer", "1", "--n-head", "2",
              "--n-embd", "16", "--block-size", "16", "--eval-iters", "1", "--no-progress", "--dtype", "float64",
              "--dropout", "0.1", "--lr-decay-iters", "6", "--eval-interval", "3"]
    runs = [[MPIEXEC, "-n", "2"] + common + ["--max-iters", "3", "--batch-size", "4", "--out", "run"],
            common + ["--max-iters", "6", "--out", "run", "--resume"],
            common + ["--max-iters", "6", "--batch-size", "8", "--out", "straight"]]
    done = [subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240) for argv in runs]
    assert all(r.returncode == 0 for r in done), [r.stderr for r in done]
    assert "batch: the run took its steps on 2 ranks, now 1: --batch-size 4 --grad-accum 2 keep its global batch " \
           "of 8 rows" in done[1].stderr
    resumed, straight = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("run", "straight"))
    np.testing.assert_allclose(resumed["losses"], straight["losses"], rtol=1e-12)


# ------------------------------------------------------------------ 2 (sibling): a log's reader that leaves
def test_issue20_2_a_run_whose_log_reader_leaves_saves_before_it_stops(text_file, tmp_path):
    """`train ... 2>&1 | head`: the next line the run writes meets a closed pipe (here the evaluation at 40,
    before its checkpoint): the run saves that iteration, then stops quietly with status 1."""
    out = tmp_path / "run"
    proc = _cli("train", "--data", str(text_file), *SMALL, "--max-iters", "100000", "--eval-interval", "20",
                "--workers", "1", "--out", str(out))
    for line in proc.stderr:
        if line.startswith("iter 20:"):
            break
    proc.stderr.close()
    assert proc.wait(timeout=120) == 1
    state = load_run(out).state  # the evaluation at 40 (or, were its line in the pipe already, a later one)
    assert state["iter"] >= 40 and state["iter"] % 20 == 0 and state["evals"][-1]["iter"] == state["iter"]


@mpi_test
@pytest.mark.parametrize("target", ["mpiexec", "rank 1"])
def test_issue20_10_sigterm_under_mpiexec_stops_every_rank_after_the_same_step(text_file, tmp_path, target):
    """SIGTERM to mpiexec (which passes it on to every rank) or to one rank alone: the ranks agree to stop after
    the same step, rank 0 saves it and says so once, all exit 143 (a rank that stopped alone left the others
    waiting in their next all-reduce forever)."""
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "gpt", "train", "--data", str(text_file), *SMALL,
                             "--max-iters", "100000", "--eval-interval", "50", "--out", str(out)], text=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and _latest_iter(out) < 50:
        time.sleep(0.01)
    ranks = [pid for proxy in _children(proc.pid) for pid in _children(proxy)]
    os.kill(proc.pid if target == "mpiexec" else ranks[1], signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        for pid in ranks:
            os.kill(pid, signal.SIGKILL)
        raise
    assert proc.returncode == 143, err
    state = load_run(out).state
    assert f"terminated (SIGTERM): iteration {state['iter']} saved in {out}" in err
    assert err.count("terminated (SIGTERM)\n") == 1 and "Traceback" not in err, err


@mpi_test
@pytest.mark.parametrize("where", ["every rank", "rank 1"])
def test_issue20_6_a_setup_error_under_mpiexec_is_one_line(text_file, tmp_path, where):
    """The data each rank reads for itself is missing on every rank, or on rank 1 alone (another machine): one
    error line (naming rank 1 in the second case), exit 2, no abort banner."""
    script = textwrap.dedent(f"""
        import sys
        from mpi4py import MPI
        import gpt.data
        from gpt.cli import main
        from gpt.errors import UsageError
        real = gpt.data.TextData.from_file
        def missing(path, *args, **kwargs):
            if {where == "every rank"} or MPI.COMM_WORLD.Get_rank() == 1:
                raise UsageError(f"data file {{path!r}} does not exist")
            return real(path, *args, **kwargs)
        gpt.data.TextData.from_file = missing
        sys.exit(main(sys.argv[1:]))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    res = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", script, "train", "--data", str(text_file), *SMALL,
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=120)
    prefix = "rank 1 of 2: " if where == "rank 1" else ""
    assert res.returncode == 2 and res.stderr == f"error: {prefix}data file '{text_file}' does not exist\n", res.stderr
    assert res.stdout == "" and not (tmp_path / "run").exists()
