"""`python -m gpt inspect`: gradient and activation report of a GPT on one batch.

    python -m gpt inspect --preset tiny
    python -m gpt inspect --ckpt out/shakespeare --plot out/inspect.png

Builds the model (a preset with GPT-2's random init, or a checkpoint: a training run folder, one of
its checkpoint folders, or a Hugging Face GPT-2 folder), runs one forward pass on random token ids
with a forward hook on every module, then the backward pass of the next-token cross-entropy, and
prints two tables: per parameter the weight norm, gradient norm and their ratio; per module output
the mean and std of the activation and the std of its gradient. Nothing is written unless --plot
PATH is given: then the same numbers are plotted to exactly PATH (.png, .svg or .pdf; needs
matplotlib: pip install -e ".[plot]").
"""
from __future__ import annotations

import argparse
import math

from . import engine


def register(subparsers) -> None:
    from ..config import PRESETS  # light: no numpy model code
    p = subparsers.add_parser("inspect", help="per-parameter gradient norms and per-layer activation statistics",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="tiny", choices=list(PRESETS), help="GPTConfig preset (default tiny)")
    src.add_argument("--ckpt", metavar="DIR",
                     help="instead: a training run folder (its latest checkpoint), a checkpoint folder, or a "
                          "Hugging Face GPT-2 folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the weight init and of the token ids (default 0)")
    p.add_argument("--batch-size", type=int, default=4, metavar="B", help="sequences in the batch (default 4)")
    p.add_argument("--seq-len", type=int, default=None, metavar="T",
                   help="tokens per sequence, 1 to the model's block_size (default: 64, or the block_size if smaller)")
    p.add_argument("--plot", default=None, metavar="PATH",
                   help="also plot the statistics to PATH (.png, .svg or .pdf; needs matplotlib); default: no plot")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    import numpy as np

    from ..config import GPTConfig
    from ..errors import UsageError
    from ..model import GPT
    from ..plots import check_path
    from ..report import collect, format_report, plot_report
    from .sample import load_model, non_finite_parameters

    B = args.batch_size
    if B < 1:
        raise UsageError(f"--batch-size must be an int >= 1, got {B}")
    if args.seed < 0:
        raise UsageError(f"--seed must be an int >= 0, got {args.seed}")
    if args.plot is not None:
        check_path(args.plot, "--plot")  # before the work, not after it
    if args.ckpt:
        model, _, what, _ = load_model(ckpt=args.ckpt, need_tokenizer=False)
    else:
        model, what = GPT(GPTConfig.from_preset(args.preset), seed=args.seed), f"preset {args.preset} (random init)"
    model.eval()  # no dropout: the statistics of the model itself
    c = model.config
    T = min(64, c.block_size) if args.seq_len is None else args.seq_len
    if not 1 <= T <= c.block_size:
        raise UsageError(f"--seq-len must be in [1, {c.block_size}] (the model's block_size), got {T}")
    bad = non_finite_parameters(model)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        print(f"warning: NaN or infinity in {shown}: the run that saved these weights diverged", file=sys.stderr)
    ids = np.random.default_rng(args.seed).integers(0, c.vocab_size, (B, T + 1))
    report = collect(model, ids[:, :-1], ids[:, 1:])  # random tokens: next-token targets are the shifted ids
    print(f"GPT, {what}: {c.n_layer} layers, {c.n_head} heads, n_embd {c.n_embd}, vocab {c.vocab_size}, "
          f"{model.num_parameters():,} parameters, {engine.running()}")
    print(f"batch: random token ids (B={B}, T={T}), seed {args.seed}; loss {report.loss:.4f} "
          f"(ln {c.vocab_size} = {math.log(c.vocab_size):.4f})\n")
    print(format_report(report))
    if args.plot is not None:
        try:
            path = plot_report(report, args.plot, title=f"GPT {what}: loss {report.loss:.4f}")
        except OSError as e:
            raise UsageError(f"--plot {args.plot}: cannot write it: {e}") from None
        if path is None:
            raise UsageError('--plot needs matplotlib, which is not installed (pip install -e ".[plot]")')
        print(f"\nplot written to {path}")
    return 0
