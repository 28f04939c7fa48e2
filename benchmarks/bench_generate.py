"""Generation speed with and without the KV cache.

    python benchmarks/bench_generate.py                      # gpt2 config, 8-token prompt, 200 new tokens
    python benchmarks/bench_generate.py --preset tiny --new-tokens 100

Builds a randomly initialised model (GPT-2 init; the weights do not change the cost), generates
greedily from an 8-token prompt with ``use_cache=True`` and ``use_cache=False``, checks that both
give the same tokens, and prints the tokens/s of each and their ratio. Without the cache every step
re-runs the whole context (8, 9, ..., 207 positions); with it, every step after the prompt runs one.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import tinygrad_lite.fast as fast  # noqa: E402
from gpt.config import GPTConfig  # noqa: E402
from gpt.model import GPT  # noqa: E402


def timed_generate(model: GPT, prompt: np.ndarray, n: int, use_cache: bool) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = model.generate(prompt, n, temperature=0, use_cache=use_cache)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="gpt2", help="GPTConfig preset (default: gpt2)")
    ap.add_argument("--prompt-tokens", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engine", choices=["fast", "math"], default="fast",
                    help="fast: tinygrad_lite.fast's kernels, as python -m gpt sample runs (default); math: the ops as written")
    args = ap.parse_args()
    fast.enable(args.engine == "fast")

    config = GPTConfig.from_preset(args.preset)
    model = GPT(config, seed=args.seed)
    prompt = np.random.default_rng(args.seed).integers(0, config.vocab_size, (1, args.prompt_tokens))
    model.generate(prompt, 2, temperature=0)  # warm up (allocations, BLAS threads)

    # cached runs before and after the (long) uncached one; the faster counts (load on a shared machine)
    cached, t_cache = timed_generate(model, prompt, args.new_tokens, use_cache=True)
    uncached, t_full = timed_generate(model, prompt, args.new_tokens, use_cache=False)
    t_cache = min(t_cache, timed_generate(model, prompt, args.new_tokens, use_cache=True)[1])
    same = np.array_equal(cached, uncached)
    n = args.new_tokens
    print(f"{args.preset}: {model.num_parameters():,} parameters, prompt {args.prompt_tokens} tokens, "
          f"{n} new tokens, greedy, batch 1")
    print(f"  with KV cache:    {n / t_cache:8.2f} tokens/s  ({t_cache:.2f} s)")
    print(f"  without KV cache: {n / t_full:8.2f} tokens/s  ({t_full:.2f} s)")
    print(f"  speedup:          {t_full / t_cache:8.2f}x")
    print(f"  identical tokens: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
