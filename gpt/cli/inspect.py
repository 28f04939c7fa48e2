"""`python -m gpt inspect`: gradient and activation report of a GPT on one batch.

    python -m gpt inspect --preset tiny
    python -m gpt inspect --ckpt out/shakespeare --plot out/inspect.png

Builds the model (a preset with GPT-2's random init, or a checkpoint: a training run folder, one of
its checkpoint folders, or a Hugging Face GPT-2 folder) and runs one batch through it with a forward
hook on every module, then the backward pass of the next-token cross-entropy. The batch is from the
validation split of the text a training run was trained on (when that text can still be read), else
random token ids (on which a trained model's loss is high). It prints two tables: per parameter the
weight norm, gradient norm and their ratio; per module output the mean and std of the activation
and the std of its gradient. Nothing is written unless --plot PATH is given: then the same numbers
are plotted to exactly PATH (.png, .svg or .pdf; needs matplotlib: pip install -e ".[plot]").
"""
from __future__ import annotations

import argparse
import math

from . import engine


def register(subparsers) -> None:
    from . import integer
    from ..config import PRESETS  # light: no numpy model code
    p = subparsers.add_parser("inspect", help="per-parameter gradient norms and per-layer activation statistics",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="tiny", choices=list(PRESETS), help="GPTConfig preset (default tiny)")
    src.add_argument("--ckpt", metavar="DIR",
                     help="instead: a training run folder (its latest checkpoint), a checkpoint folder, or a "
                          "Hugging Face GPT-2 folder")
    p.add_argument("--seed", type=integer, default=0, help="seed of the weight init and of the token ids (default 0)")
    p.add_argument("--batch-size", type=integer, default=4, metavar="B", help="sequences in the batch (default 4)")
    p.add_argument("--seq-len", type=integer, default=None, metavar="T",
                   help="tokens per sequence, 1 to the model's block_size (default: 64, or the block_size if smaller)")
    p.add_argument("--plot", default=None, metavar="PATH",
                   help="also plot the statistics to PATH (.png, .svg or .pdf; needs matplotlib); default: no plot")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    import numpy as np

    from ..config import GPTConfig
    from ..errors import UsageError
    from ..memory import backward_bytes, require
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
    model, state = None, {}
    if args.ckpt:
        model, _, what, _, state = load_model(ckpt=args.ckpt, need_tokenizer=False)
        c, itemsize = model.config, model.transformer.wte.weight.dtype.itemsize
    else:
        c, what, itemsize = GPTConfig.from_preset(args.preset), f"preset {args.preset} (random init)", 4
    T = min(64, c.block_size) if args.seq_len is None else args.seq_len
    if not 1 <= T <= c.block_size:
        raise UsageError(f"--seq-len must be in [1, {c.block_size}] (the model's block_size), got {T}")
    require(backward_bytes(c, B, T, itemsize), f"one batch (--batch-size {B}, --seq-len {T})",
            "give a smaller --batch-size or --seq-len")  # before the model or the batch is made
    if model is None:
        model = GPT(c, seed=args.seed)
    model.eval()  # no dropout: the statistics of the model itself
    bad = non_finite_parameters(model)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        print(f"warning: NaN or infinity in {shown}: the run that saved these weights diverged", file=sys.stderr)
    (x, y), source = batch(state, c.vocab_size, B, T, np.random.default_rng(args.seed))
    report = collect(model, x, y)
    print(f"GPT, {what}: {c.n_layer} layers, {c.n_head} heads, n_embd {c.n_embd}, vocab {c.vocab_size}, "
          f"{model.num_parameters():,} parameters, {engine.running()}")
    print(f"batch: {source} (B={B}, T={T}), seed {args.seed}; loss {report.loss:.4f} "
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


def batch(state: dict, vocab_size: int, B: int, T: int, rng) -> tuple[tuple, str]:
    """((x, y), what they are): B windows of T tokens from the validation split of the text a training run
    was trained on (its state names it), else random token ids, on which a trained model's loss is high."""
    from ..data import TextData
    from ..errors import UsageError

    config = state.get("config")
    if not isinstance(config, dict) or "data" not in config:  # a preset, or a Hugging Face model
        return _random_ids(vocab_size, B, T, rng), "random token ids (a trained model's loss on them is high)"
    try:
        data = TextData.from_file(config["data"], state["tokenizer"], config.get("val_fraction", 0.1))
        if data.vocab_size != vocab_size:
            raise UsageError(f"its tokenizer has {data.vocab_size} tokens, the model {vocab_size}")
        data.check_block_size(T)
        return data.get_batch("val", B, T, rng), f"the run's validation text, {config['data']}"
    except (UsageError, KeyError, TypeError, ValueError) as e:
        return _random_ids(vocab_size, B, T, rng), f"random token ids, since the run's text cannot be used ({e})"


def _random_ids(vocab_size: int, B: int, T: int, rng) -> tuple:
    ids = rng.integers(0, vocab_size, (B, T + 1))
    return ids[:, :-1], ids[:, 1:]  # next-token targets are the shifted ids
