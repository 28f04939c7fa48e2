"""`python -m gpt gradcheck`: check every parameter's gradient of a whole GPT against finite differences.

    python -m gpt gradcheck --preset tiny                 # by projection, B=2, T=8: seconds
    python -m gpt gradcheck --preset tiny --full-max 512  # also every bias and LayerNorm entry by entry

The model is built in float64 with dropout off, its weights moved off GPT-2's init by random noise (so
LayerNorm weights are not all 1 and biases not all 0, which would hide some bugs), and the loss is the
next-token cross-entropy on one random batch. Backprop gives dL/dw for every parameter w at once; the
numerical side is the central difference (L(w + eps d) - L(w - eps d)) / (2 eps), two forwards per d:

  --by-projection (default)  d = K random unit directions per parameter (the first with positive entries),
                  compared with grad . d. Parameters with at most --full-max entries are checked entry by
                  entry instead. A parameter whose projections fail is re-checked on --full-max random
                  entries so that its row can name the worst one. (Its old name, --fast, still works; it has
                  nothing to do with --engine fast.)
  --full          d = every unit vector: each entry of each parameter (slow: 2 forwards per entry, hours
                  for the tiny preset; meant for very small models, e.g. check_model on a custom GPTConfig).

An entry passes when |analytical - numerical| <= atol + rtol * |numerical|. One row per parameter: max
absolute error, max relative error (over entries with |numerical| > atol), pass/FAIL. A progress bar on
stderr (a terminal) counts the finite differences of a check that takes more than a second
(--no-progress: none).
The exit status is 0 when every parameter passes, 1 when any fails (with an `error:` line), and 2
for a bad flag.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from . import engine


def register(subparsers) -> None:
    from . import integer
    from ..config import PRESETS  # light: no numpy model code
    p = subparsers.add_parser("gradcheck", help="finite-difference check of every parameter's gradient (float64)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=list(PRESETS), help="GPTConfig preset (default tiny)")
    p.add_argument("--n-layer", type=integer, default=None, metavar="L", help="override the preset's number of blocks")
    p.add_argument("--seed", type=integer, default=0, help="seed of the init, the noise, the batch, the directions")
    p.add_argument("--batch-size", type=integer, default=2, metavar="B", help="sequences in the batch (default 2)")
    p.add_argument("--seq-len", type=integer, default=8, metavar="T", help="tokens per sequence (default 8)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--by-projection", dest="full", action="store_false", default=False,
                      help="random projections per parameter (default)")
    mode.add_argument("--fast", dest="full", action="store_false", help=argparse.SUPPRESS)  # --by-projection's old name
    mode.add_argument("--full", dest="full", action="store_true", help="check every entry of every parameter")
    p.add_argument("--projections", type=integer, default=2, metavar="K",
                   help="random directions per parameter (--by-projection)")
    p.add_argument("--full-max", type=integer, default=64, metavar="N",
                   help="--by-projection: also check entry by entry the parameters with at most N entries, and at "
                        "most N entries of a parameter whose projection failed (default 64)")
    p.add_argument("--eps", type=float, default=1e-6, help="finite-difference step (default 1e-6)")
    p.add_argument("--atol", type=float, default=1e-7, help="absolute tolerance (default 1e-7)")
    p.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance (default 1e-5)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar on stderr")
    p.set_defaults(func=run)


PROGRESS_DELAY = 1.0  # seconds before the progress bar appears: quick checks get none


@dataclass
class Row:
    name: str
    shape: tuple
    mode: str  # "2 projections", "all 128 entries", "2 projections + 64/65536 entries"
    max_abs: float
    max_rel: float  # nan when every numerical value is below atol
    passed: bool
    worst: str = ""  # the worst entry, for a failing row


class Checker:
    """Finite differences of a scalar loss L(params) against its backprop gradients."""

    def __init__(self, loss_fn, eps: float, atol: float, rtol: float, progress=None):
        self.loss_fn, self.eps, self.atol, self.rtol = loss_fn, eps, atol, rtol
        self.progress = progress  # tqdm-like (.update(n), .total): one unit per finite difference

    def tick(self) -> None:
        if self.progress is not None:
            self.progress.update(1)

    def loss(self) -> float:
        from tinygrad_lite import no_grad
        with no_grad():
            return float(self.loss_fn().data)

    def along(self, p, d: np.ndarray) -> float:
        """(L(w + eps d) - L(w - eps d)) / (2 eps), restoring w exactly."""
        w = p.data.copy()
        try:
            np.add(w, self.eps * d, out=p.data)
            hi = self.loss()
            np.subtract(w, self.eps * d, out=p.data)
            lo = self.loss()
        finally:
            np.copyto(p.data, w)
        self.tick()
        return (hi - lo) / (2 * self.eps)

    def entry(self, p, i: int) -> float:
        """dL/dw_i by central differences, with the step as actually represented in w's dtype."""
        flat, old = p.data.reshape(-1), p.data.reshape(-1)[i]
        try:
            flat[i] = old + self.eps
            hi, L_hi = flat[i], self.loss()
            flat[i] = old - self.eps
            lo, L_lo = flat[i], self.loss()
        finally:
            flat[i] = old
        self.tick()
        return (L_hi - L_lo) / (float(hi) - float(lo))

    def errors(self, ana: np.ndarray, num: np.ndarray) -> tuple[float, float, np.ndarray]:
        """(max abs error, max rel error over |num| > atol, per-item excess over the tolerance)."""
        err = np.abs(ana - num)
        big = np.abs(num) > self.atol
        rel = float((err[big] / np.abs(num[big])).max()) if big.any() else math.nan
        excess = np.where(np.isnan(err), np.inf, err - (self.atol + self.rtol * np.abs(num)))
        return float(np.nan_to_num(err, nan=np.inf).max()), rel, excess

    def by_entry(self, name: str, p, grad: np.ndarray, idx: np.ndarray, mode: str) -> Row:
        num = np.array([self.entry(p, int(i)) for i in idx])
        ana = grad.reshape(-1)[idx]
        max_abs, max_rel, excess = self.errors(ana, num)
        k = int(np.argmax(excess))
        entry = tuple(int(j) for j in np.unravel_index(int(idx[k]), p.shape))
        worst = f"entry {entry}: numerical {num[k]:.10g}, analytical {ana[k]:.10g}"
        return Row(name, p.shape, mode, max_abs, max_rel, bool(excess.max() <= 0), worst)

    def by_projection(self, name: str, p, grad: np.ndarray, k: int, rng: np.random.Generator) -> Row:
        dirs = [rng.random(p.shape)] + [rng.standard_normal(p.shape) for _ in range(k - 1)]  # one all-positive
        dirs = [d / np.linalg.norm(d) for d in dirs]
        num = np.array([self.along(p, d) for d in dirs])
        ana = np.array([float(np.vdot(grad, d)) for d in dirs])
        max_abs, max_rel, excess = self.errors(ana, num)
        return Row(name, p.shape, f"{k} projections", max_abs, max_rel, bool(excess.max() <= 0))


def planned_differences(model, full: bool, projections: int, full_max: int) -> int:
    """How many finite differences check_model will take (more if a projection fails and is re-checked)."""
    return sum(p.size if full or p.size <= full_max else projections for p in model.parameters())


def check_model(model, idx: np.ndarray, targets: np.ndarray, full: bool = False, projections: int = 2,
                full_max: int = 64, eps: float = 1e-6, atol: float = 1e-7, rtol: float = 1e-5, seed: int = 0,
                on_row=None, progress=None) -> list[Row]:
    """One Row per named parameter of `model` (float64) for the loss model.loss(idx, targets);
    `on_row(row)` is called as each row is done. `progress` (a tqdm bar, or anything with .update(n) and
    .total) gets total = the planned number of finite differences and one update per difference."""
    if progress is not None:
        progress.total = planned_differences(model, full, projections, full_max)
    checker = Checker(lambda: model.loss(idx, targets), eps, atol, rtol, progress)
    model.zero_grad()
    model.loss(idx, targets).backward()
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}
    rng = np.random.default_rng(seed)
    rows = []
    for name, p in model.named_parameters():
        n = p.size
        if full or n <= full_max:
            row = checker.by_entry(name, p, grads[name], np.arange(n), f"all {n} entries")
        else:
            row = checker.by_projection(name, p, grads[name], projections, rng)
            if not row.passed and full_max > 0:  # re-check entry by entry, to name the worst entry
                if progress is not None:
                    progress.total += full_max
                sample = np.sort(rng.choice(n, full_max, replace=False))
                detail = checker.by_entry(name, p, grads[name], sample, "")
                row.mode += f" + {full_max}/{n} entries"
                row.max_abs, row.worst = max(row.max_abs, detail.max_abs), detail.worst
                row.max_rel = max(row.max_rel, detail.max_rel) if not math.isnan(detail.max_rel) else row.max_rel
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def _fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2e}"


def check_args(args: argparse.Namespace, block_size: int) -> None:
    """UsageError naming the first flag out of range."""
    from ..errors import UsageError

    checks = [
        ("--n-layer", args.n_layer, args.n_layer is None or args.n_layer >= 1, "an int >= 1"),
        ("--seed", args.seed, args.seed >= 0, "an int >= 0"),
        ("--batch-size", args.batch_size, args.batch_size >= 1, "an int >= 1"),
        ("--seq-len", args.seq_len, 1 <= args.seq_len <= block_size, f"in [1, {block_size}] (the block_size)"),
        ("--projections", args.projections, args.projections >= 1, "an int >= 1"),
        ("--full-max", args.full_max, args.full_max >= 0, "an int >= 0"),
        ("--eps", args.eps, 0 < args.eps < math.inf, "a finite number > 0 (the finite-difference step)"),
        ("--atol", args.atol, 0 <= args.atol < math.inf, "a finite number >= 0"),
        ("--rtol", args.rtol, 0 <= args.rtol < math.inf, "a finite number >= 0"),
    ]
    for flag, value, ok, expected in checks:
        if not ok:
            raise UsageError(f"{flag} must be {expected}, got {value!r}")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..config import PRESETS, GPTConfig
    from ..errors import RunFailed
    from ..memory import backward_bytes, require
    from ..model import GPT
    from ..report import aliases

    check_args(args, PRESETS[args.preset]["block_size"])
    overrides = {"dropout": 0.0} | ({"n_layer": args.n_layer} if args.n_layer is not None else {})
    config = GPTConfig.from_preset(args.preset, **overrides)
    B, T = args.batch_size, args.seq_len
    require(backward_bytes(config, B, T, np.dtype(np.float64).itemsize), f"the check (float64, --n-layer "
            f"{config.n_layer}, --batch-size {B}, --seq-len {T})", "give a smaller --batch-size, --seq-len or "
            "--n-layer")  # before the model or the batch is made
    rng = np.random.default_rng(args.seed)
    model = GPT(config, seed=args.seed, dtype=np.float64).eval()
    for p in model.parameters():  # off the init: LayerNorm weights != 1, biases != 0
        p.data += rng.normal(0.0, 0.1, p.shape)
    idx = rng.integers(0, config.vocab_size, (B, T + 1))
    x, y = idx[:, :-1], idx[:, 1:]
    print(f"gradcheck of GPT preset {args.preset} ({config.n_layer} layers, n_embd {config.n_embd}, vocab "
          f"{config.vocab_size}, {model.num_parameters():,} parameters) in float64, {engine.running()}, batch B={B}, "
          f"T={T}, {'every entry' if args.full else 'by projection'}, eps {args.eps:g}, atol {args.atol:g}, "
          f"rtol {args.rtol:g}")
    label = {name: name + "".join(f" (= {a})" for a in aliases(model, name)) for name, _ in model.named_parameters()}
    width = max(len(n) for n in label.values()) + 2
    mwidth = 30
    print(f"\n{'parameter':{width}}{'shape':>12}  {'checked':{mwidth}}{'max abs err':>12}{'max rel err':>12}  result")

    def print_row(r: Row) -> None:  # through tqdm, which lifts its bar (stderr) out of the way
        errors = f"{_fmt(r.max_abs):>12}{_fmt(r.max_rel):>12}"
        tqdm.write(f"{label[r.name]:{width}}{str(r.shape):>12}  {r.mode:{mwidth}}{errors}  "
                   f"{'ok' if r.passed else 'FAIL  ' + r.worst}", file=sys.stdout)
        sys.stdout.flush()

    t0 = time.perf_counter()
    # None: a bar only when stderr is a terminal (a log file gets the rows, not the bar's redraws)
    with tqdm(unit="diff", file=sys.stderr, disable=None if args.progress else True, delay=PROGRESS_DELAY, leave=False,
              desc="finite differences") as bar:
        rows = check_model(model, x, y, full=args.full, projections=args.projections, full_max=args.full_max,
                           eps=args.eps, atol=args.atol, rtol=args.rtol, seed=args.seed, on_row=print_row,
                           progress=bar)
    failed = [r.name for r in rows if not r.passed]
    took = time.perf_counter() - t0
    if failed:
        print(f"\nFAILED: {len(failed)} of {len(rows)} parameters: {', '.join(failed)} ({took:.1f} s)")
        raise RunFailed(f"gradient check failed for {len(failed)} of {len(rows)} parameters: {', '.join(failed)}")
    print(f"\nall {len(rows)} parameters passed ({took:.1f} s)")
    return 0
