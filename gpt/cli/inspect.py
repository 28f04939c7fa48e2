"""`python -m gpt inspect`: gradient and activation report of a GPT on one batch.

    python -m gpt inspect --preset tiny
    python -m gpt inspect --ckpt out-shakespeare --plot report.png

Builds the model (a preset with GPT-2's random init, or a checkpoint folder), runs one forward pass
on random token ids with a forward hook on every module, then the backward pass of the next-token
cross-entropy, and prints two tables: per parameter the weight norm, gradient norm and their ratio;
per module output the mean and std of the activation and the std of its gradient. With matplotlib
installed (pip install -e ".[plot]") the same numbers are plotted to a PNG.
"""
from __future__ import annotations

import argparse
import math


def register(subparsers) -> None:
    from ..config import PRESETS  # light: no numpy model code
    p = subparsers.add_parser("inspect", help="per-parameter gradient norms and per-layer activation statistics",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="tiny", choices=list(PRESETS), help="GPTConfig preset (default tiny)")
    src.add_argument("--ckpt", metavar="DIR", help="checkpoint folder (config.json + model.safetensors) instead")
    p.add_argument("--seed", type=int, default=0, help="seed of the weight init and of the token ids (default 0)")
    p.add_argument("--batch-size", type=int, default=4, metavar="B", help="sequences in the batch (default 4)")
    p.add_argument("--seq-len", type=int, default=64, metavar="T", help="tokens per sequence (default 64)")
    p.add_argument("--plot", default="inspect.png", metavar="PNG", help="where to plot (default inspect.png)")
    p.add_argument("--no-plot", dest="plot", action="store_const", const=None, help="print the tables only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..config import GPTConfig
    from ..model import GPT
    from ..report import collect, format_report, plot_report

    if args.ckpt:
        model, what = GPT.from_pretrained(args.ckpt), f"checkpoint {args.ckpt}"
    else:
        model, what = GPT(GPTConfig.from_preset(args.preset), seed=args.seed), f"preset {args.preset} (random init)"
    model.eval()  # no dropout: the statistics of the model itself
    c = model.config
    B, T = args.batch_size, args.seq_len
    if not 1 <= T < c.block_size or B < 1:
        raise SystemExit(f"inspect: need --batch-size >= 1 and 1 <= --seq-len < block_size={c.block_size}, "
                         f"got {B} and {T}")
    ids = np.random.default_rng(args.seed).integers(0, c.vocab_size, (B, T + 1))
    report = collect(model, ids[:, :-1], ids[:, 1:])  # random tokens: next-token targets are the shifted ids
    print(f"GPT, {what}: {c.n_layer} layers, {c.n_head} heads, n_embd {c.n_embd}, vocab {c.vocab_size}, "
          f"{model.num_parameters():,} parameters")
    print(f"batch: random token ids (B={B}, T={T}), seed {args.seed}; loss {report.loss:.4f} "
          f"(ln {c.vocab_size} = {math.log(c.vocab_size):.4f})\n")
    print(format_report(report))
    if args.plot:
        path = plot_report(report, args.plot, title=f"GPT {what}: loss {report.loss:.4f}")
        if path is None:
            print('\nmatplotlib is not installed, so no plot was made (pip install -e ".[plot]" to get one)')
        else:
            print(f"\nplot written to {path}")
    return 0
