"""Time one full training step (forward, cross-entropy, backward, AdamW, zero_grad), side by side
with PyTorch eager on a model of exactly the same shapes and weights, when torch is installed.

    python benchmarks/bench_step.py                 # all configs
    python benchmarks/bench_step.py --config gpt2 --runs 7

Each side runs in its own worker process; steps are interleaved (ours, torch, torch-math, ours, ...)
so that load on a shared machine hits all alike; the medians and their ratios are printed. Ours runs
three times: `ours`, one process with `tinygrad_lite.fast.enable()` (the kernels, as `python -m gpt`
runs), `math`, one process running the ops as written (the default; the ratio math/ours is printed),
and `ours-workers`, fast, each batch split over one worker process per core
(tinygrad_lite.parallel.DataParallel: NumPy's elementwise ops use one core, PyTorch's use all). PyTorch
runs twice: `torch` with its fused attention (F.scaled_dot_product_attention, its best eager path:
the ratios are against it) and `torch-math` with attention written out (softmax(q k^T / sqrt(d)) v).
Also: model FLOP utilisation against a measured NumPy float32 GEMM peak, and each side's peak RSS
(for ours-workers: the proportional set size of it and its workers after the steps, shared memory
counted once).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import tinygrad_lite.fast as fast  # noqa: E402
import tinygrad_lite.functional as F  # noqa: E402
import tinygrad_lite.optim as optim  # noqa: E402
from gpt import GPT, GPTConfig  # noqa: E402
from tinygrad_lite.parallel import DataParallel  # noqa: E402

CONFIGS = {  # name -> (GPTConfig overrides, batch, seq)
    "gpt2": (dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768), 4, 128),
    "char": (dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128), 12, 64),
    "tiny": (dict(vocab_size=256, block_size=256, n_layer=4, n_head=4, n_embd=128), 8, 128),
}


def make_batch(cfg: GPTConfig, B: int, T: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, cfg.vocab_size, (B, T)), rng.integers(0, cfg.vocab_size, (B, T))


# ------------------------------------------------------------------ ours
class Ours:
    def __init__(self, cfg: GPTConfig, seed: int = 0, workers: int = 0):
        self.model = GPT(cfg, seed=seed)
        self.opt = optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.1)
        self.par = DataParallel(self.model, workers=workers) if workers else None

    def step(self, x, y) -> float:
        if self.par is not None:  # forward and backward of each half of the batch in its own process
            loss = self.par.backward(x, y)
        else:
            loss = F.cross_entropy(self.model(x), y)
            loss.backward()
            loss = loss.item()
        self.opt.step()
        self.opt.zero_grad()
        return loss

    def pids(self) -> list[int]:
        return [] if self.par is None else [p.pid for p in self.par._procs]


# ------------------------------------------------------------------ PyTorch, the same model
def torch_model(weights, cfg: GPTConfig, fused_attention: bool = True):
    """A plain PyTorch GPT-2 of the same shapes holding our weights (name -> array), Linear as x @ W."""
    import torch
    import torch.nn.functional as TF

    sd = {k: torch.from_numpy(weights[k]) for k in weights}

    class TorchGPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.ParameterDict({k.replace(".", "_"): torch.nn.Parameter(v)
                                             for k, v in sd.items() if k != "lm_head.weight"})

        def w(self, name):
            return self.p[name.replace(".", "_")]

        def forward(self, idx):
            B, T = idx.shape
            C, H = cfg.n_embd, cfg.n_head
            x = self.w("transformer.wte.weight")[idx] + self.w("transformer.wpe.weight")[:T]
            for i in range(cfg.n_layer):
                h = f"transformer.h.{i}."
                a = TF.layer_norm(x, (C,), self.w(h + "ln_1.weight"), self.w(h + "ln_1.bias"), cfg.layer_norm_eps)
                qkv = a @ self.w(h + "attn.c_attn.weight") + self.w(h + "attn.c_attn.bias")
                q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in qkv.split(C, dim=2))
                if fused_attention:  # PyTorch's best eager path
                    att = TF.scaled_dot_product_attention(q, k, v, is_causal=True)
                else:  # attention written out, as nanoGPT's fallback does
                    s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
                    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
                    att = torch.softmax(s, dim=-1) @ v
                att = att.transpose(1, 2).reshape(B, T, C)
                x = x + att @ self.w(h + "attn.c_proj.weight") + self.w(h + "attn.c_proj.bias")
                m = TF.layer_norm(x, (C,), self.w(h + "ln_2.weight"), self.w(h + "ln_2.bias"), cfg.layer_norm_eps)
                m = TF.gelu(m @ self.w(h + "mlp.c_fc.weight") + self.w(h + "mlp.c_fc.bias"), approximate="tanh")
                x = x + m @ self.w(h + "mlp.c_proj.weight") + self.w(h + "mlp.c_proj.bias")
            x = TF.layer_norm(x, (C,), self.w("transformer.ln_f.weight"), self.w("transformer.ln_f.bias"),
                              cfg.layer_norm_eps)
            return x @ self.w("transformer.wte.weight").T

    return TorchGPT()


class Torch:
    def __init__(self, cfg: GPTConfig, weights, fused_attention: bool = True):
        import torch
        self.torch = torch
        self.model = torch_model(weights, cfg, fused_attention)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.1)

    def step(self, x, y) -> float:
        torch = self.torch
        logits = self.model(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), torch.from_numpy(y).view(-1))
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.item()


# ------------------------------------------------------------------ measurements
def sgemm_peak(n: int = 2048, reps: int = 5) -> float:
    """Best NumPy float32 GEMM throughput in GFLOP/s."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def step_flops(cfg: GPTConfig, B: int, T: int) -> float:
    """Model FLOPs of one training step: 6 per parameter per token (forward 2, backward 4), the
    LM head included, plus attention's 12 * n_layer * T * C per token (PaLM's accounting)."""
    C, L = cfg.n_embd, cfg.n_layer
    n_matmul = L * 12 * C * C + cfg.vocab_size * C
    return B * T * (6 * n_matmul + 12 * L * T * C)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _pss_mb(pid: int | str) -> float:
    """Proportional set size now: memory shared by n processes counts 1/n in each (0 where unknown)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024
    except (OSError, StopIteration):
        return 0.0


def _vm_hwm_mb() -> float:
    """Peak RSS of this process image. (ru_maxrss would also count the parent's RSS at fork time.)"""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ one process per side
def worker(side: str, name: str, weights: str) -> None:
    """Serve "step N" requests on stdin with N back-to-back training steps each, answering on stdout
    with their mean time.

    Each side lives in its own process so that neither's thread pools (OpenBLAS, OpenMP, ours) spin
    inside the other's step, and so that its peak RSS is its own. The torch side takes our initial
    weights from `weights` (an .npz written by the ours side) without copying them.
    """
    overrides, B, T = CONFIGS[name]
    cfg = GPTConfig(**overrides)
    x, y = make_batch(cfg, B, T)
    fast.reuse_freed_memory()  # malloc reuse; torch's side skips it (TINYGRAD_LITE_SYSTEM_MALLOC) unless --tuned-torch
    if side.startswith("ours") or side == "math":
        if side != "math":
            fast.enable()  # the kernels, with the optimizer's threads: the one call a training loop makes
        runner = Ours(cfg, workers=(os.cpu_count() or 1) if side == "ours-workers" else 0)
        if side == "ours":
            np.savez(weights, **{k: v for k, v in runner.model.state_dict().items() if k != "lm_head.weight"})
    else:
        runner = Torch(cfg, np.load(weights), fused_attention=side == "torch")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.startswith("step"):
            n = int(line.split()[1])
            t = time.perf_counter()
            for _ in range(n):
                loss = runner.step(x, y)
            reply = {"seconds": (time.perf_counter() - t) / n, "loss": loss}
        else:
            pids = runner.pids() if isinstance(runner, Ours) else []
            if pids:  # with its workers: their memory now, shared memory counted once (malloc keeps freed
                #       blocks, so this is about the peak)
                reply = {"peak_rss_mb": sum(_pss_mb(pid) for pid in ["self", *pids])}
            else:
                reply = {"peak_rss_mb": _vm_hwm_mb()}
        print(json.dumps(reply), flush=True)


class Side:
    def __init__(self, side: str, name: str, weights: str, tuned_torch: bool = False):
        env = dict(os.environ)
        if side.startswith("torch") and not tuned_torch:  # PyTorch as users run it: glibc's default malloc
            env["TINYGRAD_LITE_SYSTEM_MALLOC"] = "1"
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", side, "--config", name,
                                      "--weights", weights], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
        self.ask(None)

    def ask(self, what: str | None) -> dict:
        if what is not None:
            self.proc.stdin.write(what + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("benchmark worker died (see its error above)")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def bench(name: str, runs: int, warmup: int, have_torch: bool, peak: float, pause: float,
          tuned_torch: bool, burst: int) -> None:
    overrides, B, T = CONFIGS[name]
    cfg = GPTConfig(**overrides)
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "weights.npz")
        sides = {"ours": Side("ours", name, weights)}
        sides["math"] = Side("math", name, weights)
        sides["ours-workers"] = Side("ours-workers", name, weights)
        if have_torch:
            sides["torch"] = Side("torch", name, weights, tuned_torch)  # SDPA: the ratios are against this one
            sides["torch-math"] = Side("torch-math", name, weights, tuned_torch)  # attention written out
        first = {k: s.ask("step 1")["loss"] for k, s in sides.items()}  # same weights, same batch
        if have_torch:
            assert abs(first["ours"] - first["torch"]) < 1e-3 * max(1.0, abs(first["torch"])), first
        assert abs(first["ours"] - first["ours-workers"]) < 1e-5 * max(1.0, abs(first["ours"])), first
        assert abs(first["ours"] - first["math"]) < 1e-5 * max(1.0, abs(first["ours"])), first
        times = {k: [] for k in sides}
        for i in range(max(warmup - 1, 0) + runs):
            for k, s in sides.items():  # interleaved A/B; the pause lets idle threads park
                time.sleep(pause)
                seconds = s.ask(f"step {burst}")["seconds"]
                if i >= warmup - 1:
                    times[k].append(seconds)
        mem = {k: s.ask("rss")["peak_rss_mb"] for k, s in sides.items()}
        for s in sides.values():
            s.close()
    med = {k: float(np.median(v)) for k, v in times.items()}
    flops = step_flops(cfg, B, T)
    print(f"\n== {name}: n_layer={cfg.n_layer} n_embd={cfg.n_embd} vocab={cfg.vocab_size}  B={B} T={T}  "
          f"({flops / 1e9:.1f} GFLOP/step)")
    for k, m in med.items():
        spread = f"min {min(times[k]) * 1e3:.1f} max {max(times[k]) * 1e3:.1f}"
        print(f"  {k:12s} median {m * 1e3:8.1f} ms/step ({spread})   MFU {flops / m / 1e9 / peak:6.1%}   "
              f"peak RSS {mem[k]:,.0f} MB")
    print(f"  ratio math/ours: time {med['math'] / med['ours']:.3f}x   peak RSS {mem['math'] / mem['ours']:.3f}x")
    if have_torch:
        for k in ("ours", "math", "ours-workers"):
            print(f"  ratio {k}/torch: time {med[k] / med['torch']:.3f}x   peak RSS {mem[k] / mem['torch']:.3f}x"
                  f"   ({k}/torch-math: time {med[k] / med['torch-math']:.3f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=list(CONFIGS), action="append", help="config(s) to run (default: all)")
    ap.add_argument("--runs", type=int, default=7, help="timed steps per side (default 7)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per side first (default 2)")
    ap.add_argument("--pause", type=float, default=0.2,
                    help="seconds of idle before each step (default 0.2; with 0 a side starts while the previous "
                         "side's idle BLAS and OpenMP threads still spin on the cores)")
    ap.add_argument("--burst", type=int, default=1,
                    help="steps run back to back per timed sample, as in a training loop; the sample is their "
                         "mean (default 1)")
    ap.add_argument("--tuned-torch", action="store_true",
                    help="run PyTorch with our malloc setting too (tinygrad_lite.memory); default: as users run it")
    ap.add_argument("--worker", choices=["ours", "math", "ours-workers", "torch", "torch-math"], help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.config[0], args.weights)
    try:
        import torch
        have_torch = True
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    except ImportError:
        have_torch = False
        print("torch not installed: timing this project only (pip install torch==2.13.0 for the A/B)")
    peak = sgemm_peak()
    print(f"NumPy {np.__version__} float32 GEMM peak: {peak:.0f} GFLOP/s")
    for name in args.config or list(CONFIGS):
        bench(name, args.runs, args.warmup, have_torch, peak, args.pause, args.tuned_torch, args.burst)


if __name__ == "__main__":
    main()
