"""Data parallelism over MPI: `mpiexec -n 2 python -m gpt train` takes exactly the steps of one process
with twice the batch, with gradient accumulation, dropout and a resume on another number of ranks;
replicas that drift apart and a rank that dies stop the run. The MPI runs need the `mpi` extra
(mpi4py + mpich) and skip with that reason without it; the rest runs everywhere."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import gpt.checkpoint as ck
from gpt.config import GPTConfig
from gpt.distributed import World
from gpt.randomness import ShardedRandom
from gpt.errors import RunFailed
from gpt.train import TrainConfig, train
from mpi import MPIEXEC, mpi_test

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--eval-interval", "3",
         "--eval-iters", "2", "--no-progress", "--seed", "3"]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def _train(args: list[str], ranks: int, tmp_path: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    launch = [MPIEXEC, "-n", str(ranks)] if ranks > 1 else []
    return subprocess.run(launch + [sys.executable, "-m", "gpt", "train", *SMALL, *args], capture_output=True,
                          text=True, env=_env(), cwd=tmp_path, timeout=timeout)


def _run(out: Path):
    metrics = json.loads((out / "metrics.json").read_text())
    return np.array(metrics["losses"]), ck.load(out).weights, metrics


def _same(a: Path, b: Path, rtol: float) -> None:
    la, wa, ma = _run(a)
    lb, wb, mb = _run(b)
    np.testing.assert_allclose(la, lb, rtol=rtol, atol=0)
    np.testing.assert_allclose(ma["val_loss"], mb["val_loss"], rtol=rtol)
    scale = max(float(np.abs(w).max()) for w in wb.values())  # entries near 0 compared at the model's scale
    for name in wa:
        np.testing.assert_allclose(wa[name], wb[name], rtol=rtol, atol=rtol * scale, err_msg=name)


# ------------------------------------------------------------------ without MPI
def test_one_rank_outside_mpiexec(monkeypatch):
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(var, raising=False)
    world = World.from_environment()
    assert (world.rank, world.size, world.comm) == (0, 1, None) and world.is_main
    assert world.mean(2.5) == 2.5 and world.on_main(lambda: 7) == 7


def test_under_mpiexec_without_mpi4py_says_what_to_install(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails
    with pytest.raises(RunFailed, match=r'mpi4py is not installed: pip install -e "\.\[mpi\]"'):
        World.from_environment()


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_grad_accum_equals_one_process_with_a_k_times_larger_batch(tmp_path, dropout):
    """--grad-accum 2 with batch 3 takes the steps of batch 6 (float64: to 1e-12), dropout masks included."""
    base = dict(data="shakespeare", max_iters=5, eval_interval=5, eval_iters=2, seed=5, dtype="float64",
                progress=False, model=GPTConfig(block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=dropout))
    train(TrainConfig(out=str(tmp_path / "k2"), batch_size=3, grad_accum=2, **base))
    train(TrainConfig(out=str(tmp_path / "b6"), batch_size=6, **base))
    _same(tmp_path / "k2", tmp_path / "b6", 1e-12)


def test_sharded_random_gives_each_part_its_rows_of_one_draw():
    whole = np.random.default_rng(1).random((6, 4))
    masks = []
    for part in range(3):
        r = ShardedRandom(np.random.default_rng(1), parts=3)
        r.use_part(part)
        masks.append(r.random((2, 4)))
    np.testing.assert_array_equal(np.concatenate(masks), whole)
    r = ShardedRandom(np.random.default_rng(1), parts=2)  # two calls per step: the second site's mask
    a, b = r.random((1, 2)), r.random((1, 2))
    r.use_part(1)
    g = np.random.default_rng(1)
    first, second = g.random((2, 2)), g.random((2, 2))
    np.testing.assert_array_equal(np.concatenate([a, r.random((1, 2))]), first)
    np.testing.assert_array_equal(np.concatenate([b, r.random((1, 2))]), second)


# ------------------------------------------------------------------ mpiexec -n 2
@mpi_test
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_two_ranks_take_the_steps_of_one_process_with_twice_the_batch(tmp_path, dtype, rtol):
    common = ["--max-iters", "6", "--dtype", dtype]
    two = _train(common + ["--batch-size", "4", "--out", "two"], 2, tmp_path)
    one = _train(common + ["--batch-size", "8", "--out", "one"], 1, tmp_path)
    assert two.returncode == 0 and one.returncode == 0, two.stderr + one.stderr
    _same(tmp_path / "two", tmp_path / "one", rtol)
    # rank 0 alone prints (the other ranks nothing but errors) and writes
    assert two.stdout.count("iters 6") == 1 and two.stderr.count("iter 6:") == 1
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["ranks"] == 2


@mpi_test
def test_two_ranks_with_grad_accum_and_dropout_equal_one_process_with_four_times_the_batch(tmp_path):
    common = ["--max-iters", "4", "--dtype", "float64", "--dropout", "0.2"]
    two = _train(common + ["--batch-size", "2", "--grad-accum", "2", "--out", "two"], 2, tmp_path)
    one = _train(common + ["--batch-size", "8", "--out", "one"], 1, tmp_path)
    assert two.returncode == 0 and one.returncode == 0, two.stderr + one.stderr
    _same(tmp_path / "two", tmp_path / "one", 1e-12)


@mpi_test
def test_resume_on_another_number_of_ranks(tmp_path):
    """Two ranks of batch 4 for 3 iterations, then one process of batch 8 to 6: the run of batch 8 throughout."""
    common = ["--dtype", "float64", "--dropout", "0.1", "--lr-decay-iters", "6"]  # one schedule, whatever --max-iters
    a = _train(common + ["--max-iters", "3", "--batch-size", "4", "--out", "run"], 2, tmp_path)
    b = _train(common + ["--max-iters", "6", "--batch-size", "8", "--out", "run", "--resume"], 1, tmp_path)
    c = _train(common + ["--max-iters", "6", "--batch-size", "8", "--out", "straight"], 1, tmp_path)
    assert a.returncode == b.returncode == c.returncode == 0, a.stderr + b.stderr + c.stderr
    _same(tmp_path / "run", tmp_path / "straight", 1e-12)
    d = _train(["--max-iters", "9", "--lr-decay-iters", "9", "--batch-size", "4", "--out", "run", "--resume"], 2,
               tmp_path)
    assert d.returncode == 0 and "resuming from iter 6" in d.stderr, d.stderr


@mpi_test
def test_replicas_that_drift_apart_stop_with_an_error(tmp_path):
    script = textwrap.dedent("""
        import numpy as np, sys
        from gpt.distributed import World
        from gpt.errors import RunFailed
        from tinygrad_lite import Tensor
        world = World.from_environment()
        params = [Tensor(np.arange(6.0).reshape(2, 3)), Tensor(np.ones(4))]
        world.check_replicas(params)  # equal: fine
        if world.rank == 1:
            params[1].data[2] += 1e-7  # one rank's copy drifts
        try:
            world.check_replicas(params)
        except RunFailed as e:
            print(f"rank {world.rank}: {e}")
            sys.exit(1)
    """)
    res = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", script], capture_output=True, text=True,
                         env=_env(), timeout=120)
    assert res.returncode != 0
    assert res.stdout.count("replicas drifted apart: rank 1's parameters differ from rank 0's") == 2, res.stdout


@mpi_test
def test_a_rank_that_dies_ends_the_others_within_seconds(tmp_path):
    script = textwrap.dedent("""
        import os, signal, time
        from gpt.distributed import World
        world = World.from_environment()
        for i in range(1000):
            world.mean(1.0)  # a collective every 10 ms, as training does
            if world.rank == 1 and i == 20:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.01)
        print("survived")
    """)
    start = time.perf_counter()
    res = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", script], capture_output=True, text=True,
                         env=_env(), timeout=120)
    elapsed = time.perf_counter() - start
    assert res.returncode != 0 and "survived" not in res.stdout
    assert elapsed < 30, f"the surviving rank took {elapsed:.0f} s to end"
