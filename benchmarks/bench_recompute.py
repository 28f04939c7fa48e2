"""Activation recomputation (PyTorch's activation checkpointing): peak memory and step time of GPT-2 124M,
with and without it.

    python benchmarks/bench_recompute.py                  # B=4, T=512, 3 steps per side
    python benchmarks/bench_recompute.py --batch 2 --seq 256 --steps 2

Each side runs in its own process (peak RSS is per process: /proc's VmHWM), alternating plain and
recomputing runs; a step is forward, cross-entropy, backward, AdamW and zero_grad, the first one
untimed. `model.recompute_blocks = True` keeps each block's output only and reruns the block in
backward. Both sides start from the same weights and batch, and their losses are checked equal.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(recomputed: bool, batch: int, seq: int, steps: int, preset: str) -> dict:
    import tinygrad_lite
    import tinygrad_lite.optim as optim
    from gpt import GPT, GPTConfig

    tinygrad_lite.fast.enable()  # the kernels, as python -m gpt train runs
    model = GPT(GPTConfig.from_preset(preset), seed=0)
    model.recompute_blocks = recomputed
    opt = optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    rng = np.random.default_rng(0)
    x, y = (rng.integers(0, model.config.vocab_size, (batch, seq)) for _ in range(2))
    times, losses = [], []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = model.loss(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    return {"times": times[1:], "losses": losses, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per process (after one untimed)")
    ap.add_argument("--repeats", type=int, default=2, help="processes per side, alternating")
    ap.add_argument("--preset", default="gpt2")
    ap.add_argument("--worker", choices=["plain", "recompute"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker == "recompute", args.batch, args.seq, args.steps, args.preset)))
        return
    results = {"plain": [], "recompute": []}
    for _ in range(args.repeats):
        for side in results:
            cmd = [sys.executable, __file__, "--worker", side, "--batch", str(args.batch), "--seq", str(args.seq),
                   "--steps", str(args.steps), "--preset", args.preset]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            results[side].append(json.loads(out.strip().splitlines()[-1]))
    print(f"{args.preset}, B={args.batch}, T={args.seq}: {args.repeats} processes per side, {args.steps} timed steps each")
    summary = {}
    for side, runs in results.items():
        t = np.median([s for r in runs for s in r["times"]])
        rss = np.median([r["peak_rss_mb"] for r in runs])
        summary[side] = (t, rss)
        print(f"  {side:10s}  step {t:7.2f} s (median)   peak RSS {rss:8,.0f} MB   losses {runs[0]['losses']}")
    assert results["plain"][0]["losses"] == results["recompute"][0]["losses"], "the two sides must compute the same"
    (t0, m0), (t1, m1) = summary["plain"], summary["recompute"]
    print(f"  recomputing: peak RSS {m1 / m0:.2f}x ({(1 - m1 / m0) * 100:.0f} % less), step time {t1 / t0:.2f}x")


if __name__ == "__main__":
    main()
