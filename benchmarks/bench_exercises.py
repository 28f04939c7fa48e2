"""How long `python -m tinygrad_lite.exercises check` takes on a complete workbook (the engine's own solutions).

    python benchmarks/bench_exercises.py            # 5 rounds: each task's median and range, and the whole check
    python benchmarks/bench_exercises.py --rounds 3

Each round grades every task in order in one process, as `check DIR` does (the GPT task's first round
also trains the engine's reference, which later rounds reuse, as one `check` process does not). The
whole `check DIR` is also timed as a fresh process, its start-up included.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from tinygrad_lite.exercises import TASKS, check, start

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "wb"
        start(folder, with_solutions=True)
        times = {t.name: [] for t in TASKS}
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for grade in check(folder):
                assert grade.status == "PASS", (grade.task.name, grade.summary, grade.details)
                times[grade.task.name].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
        t0 = time.perf_counter()
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
        res = subprocess.run([sys.executable, "-m", "tinygrad_lite.exercises", "check", str(folder)],
                             capture_output=True, text=True, env=env)
        whole = time.perf_counter() - t0
        assert res.returncode == 0, res.stdout + res.stderr
    print(f"{'task':20} {'median s':>9} {'min-max s':>13}   ({args.rounds} rounds, {os.cpu_count()} cores)")
    for name, ts in times.items():
        print(f"{name:20} {np.median(ts):9.2f} {min(ts):6.2f}-{max(ts):<6.2f}")
    tasks = sum(np.median(ts) for name, ts in times.items() if name != "gpt")
    print(f"every task but gpt: {tasks:.2f} s (medians summed); the whole `check DIR` process: {whole:.1f} s")


if __name__ == "__main__":
    main()
