"""Data-parallel scaling on one machine: 1 rank with 2 BLAS threads against 2 ranks with 1 thread each
(and, for comparison, 1 rank whose batch is split over 2 worker processes, `--workers 2`).

    python benchmarks/bench_scaling.py                # char model and GPT-2 124M
    python benchmarks/bench_scaling.py --config char --iters 40

Each run is `python -m gpt train` on the shipped Tiny Shakespeare with a fixed batch per rank (weak
scaling: 2 ranks process twice the tokens per step), timed by the training loop itself (metrics.json:
tokens/s of the steps, without start-up and evaluations), with the gradient all-reduce time per step
(`allreduce_seconds_per_iter`). Needs the `mpi` extra (mpi4py + mpich) for the 2-rank runs. Then prints
the bytes a step all-reduces and what that costs on a network (a ring all-reduce sends and receives
2 (N-1)/N times the gradient bytes per rank per step).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {  # name -> train flags (batch per rank)
    "char": ["--n-layer", "4", "--n-head", "4", "--n-embd", "128", "--block-size", "64", "--batch-size", "12"],
    "gpt2": ["--tokenizer", "gpt2", "--n-layer", "12", "--n-head", "12", "--n-embd", "768", "--block-size", "128",
             "--batch-size", "4"],
}
ITERS = {"char": 60, "gpt2": 6}


def run(name: str, ranks: int, threads: int, iters: int, out: Path, workers: int = 1) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    launch = [mpiexec, "-n", str(ranks)] if ranks > 1 else []
    cmd = launch + [sys.executable, "-m", "gpt", "train", *CONFIGS[name], "--max-iters", str(iters),
                    "--eval-interval", str(iters), "--eval-iters", "1", "--workers", str(workers), "--no-progress",
                    "--out", str(out)]
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=list(CONFIGS), action="append")
    ap.add_argument("--iters", type=int, default=None, help="training iterations per run (default: 60 char, 6 gpt2)")
    args = ap.parse_args()
    for name in args.config or list(CONFIGS):
        iters = args.iters or ITERS[name]
        with tempfile.TemporaryDirectory() as tmp:
            one = run(name, 1, 2, iters, Path(tmp) / "one")
            two = run(name, 2, 1, iters, Path(tmp) / "two")
            split = run(name, 1, 1, iters, Path(tmp) / "split", workers=2)
        grad_bytes = one["num_parameters"] * 4  # float32 gradients, all-reduced once per step
        print(f"== {name}: {one['num_parameters']:,} parameters, {iters} iterations, batch per rank "
              f"{one['tokens_per_iter']:,} tokens")
        print(f"  1 rank  x 2 threads: {one['tokens_per_second']:10,.0f} tokens/s")
        print(f"  2 ranks x 1 thread : {two['tokens_per_second']:10,.0f} tokens/s ({two['tokens_per_second'] / one['tokens_per_second']:.2f}x), "
              f"all-reduce {two['allreduce_seconds_per_iter'] * 1e3:.1f} ms per step")
        print(f"  (1 rank, its batch over 2 workers: {split['tokens_per_second']:10,.0f} tokens/s, the same tokens per "
              f"step as 1 rank)")
        for n in (2, 4, 8):
            sent = 2 * (n - 1) / n * grad_bytes  # ring all-reduce, per rank per step
            print(f"  {n} machines: {sent / 1e6:8.1f} MB sent per rank per step, {sent * 8 / 10e9 * 1e3:7.1f} ms at 10 Gbit/s")


if __name__ == "__main__":
    main()
