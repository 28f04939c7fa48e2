"""`python -m gpt train`: train a GPT on a UTF-8 text file (see gpt/train.py for the loop).

Example (nanoGPT's CPU run on character-level Shakespeare: val loss about 1.90 after 2000 iters):

    python -m gpt train --data input.txt --tokenizer char --n-layer 4 --n-head 4 --n-embd 128 \\
        --block-size 64 --batch-size 12 --max-iters 2000 --lr 1e-3 --min-lr 1e-4 --warmup-iters 100 \\
        --eval-interval 250 --eval-iters 20 --dropout 0.0 --seed 1337 --out out-shakespeare

The output folder gets the model (config.json + model.safetensors, Hugging Face layout), the
optimizer state, the tokenizer spec and the training state at every evaluation, and metrics.json
at the end. `--resume` continues the run in --out: options not given on the command line keep the
values the run was started with.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

# (flag, TrainConfig field, help); the type and default come from the TrainConfig field
_OPTIONS = [
    ("--data", "data", "UTF-8 text file to train on (required unless --resume)"),
    ("--out", "out", "output folder for checkpoints and metrics.json"),
    ("--tokenizer", "tokenizer", "'char' (vocabulary = the file's characters) or 'gpt2' (BPE, 50257 tokens)"),
    ("--val-fraction", "val_fraction", "fraction of the tokens, at the end of the file, held out for validation"),
    ("--n-layer", "n_layer", "transformer blocks"),
    ("--n-head", "n_head", "attention heads per block"),
    ("--n-embd", "n_embd", "embedding width (divisible by --n-head)"),
    ("--block-size", "block_size", "context length in tokens"),
    ("--dropout", "dropout", "dropout probability during training (off in evaluation)"),
    ("--batch-size", "batch_size", "sequences per iteration"),
    ("--max-iters", "max_iters", "training iterations (optimizer steps)"),
    ("--lr", "lr", "peak learning rate, reached after the warmup"),
    ("--min-lr", "min_lr", "final learning rate of the cosine decay"),
    ("--warmup-iters", "warmup_iters", "iterations of linear learning-rate warmup"),
    ("--lr-decay-iters", "lr_decay_iters", "iteration at which the cosine reaches --min-lr (default: --max-iters)"),
    ("--weight-decay", "weight_decay", "AdamW weight decay of the matrices (not of biases and LayerNorms)"),
    ("--beta1", "beta1", "AdamW beta1"),
    ("--beta2", "beta2", "AdamW beta2"),
    ("--grad-clip", "grad_clip", "clip the global gradient norm to this (0: no clipping)"),
    ("--eval-interval", "eval_interval", "evaluate and checkpoint every this many iterations (and at the end)"),
    ("--eval-iters", "eval_iters", "batches per split at each evaluation"),
    ("--final-eval-iters", "final_eval_iters", "batches per split at the last evaluation (default: --eval-iters)"),
    ("--seed", "seed", "seed of the weight init, the batches and dropout"),
]

_METAVARS = {"data": "FILE", "out": "DIR", "tokenizer": "{char,gpt2}"}


def register(subparsers) -> None:
    from ..train import TrainConfig  # the defaults shown in --help are TrainConfig's

    defaults = TrainConfig()
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    p = subparsers.add_parser("train", help="train a GPT on a text file", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, name, text in _OPTIONS:
        kind = fields[name].type.split(" | ")[0]  # "int", "float", "str" or "int | None"
        default = getattr(defaults, name)
        shown = "" if default is None or name == "data" else f" (default: {default})"
        # SUPPRESS: only options given on the command line appear in args (for --resume)
        p.add_argument(flag, dest=name, type={"int": int, "float": float}.get(kind, str), metavar=_METAVARS.get(name, kind.upper()),
                       default=argparse.SUPPRESS, help=text + shown)
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=argparse.SUPPRESS,
                   help="no progress bar (evaluations are still printed)")
    p.add_argument("--checkpoint-blocks", dest="checkpoint_blocks", action="store_true", default=argparse.SUPPRESS,
                   help="activation checkpointing: keep only each block's output and rerun the block in backward "
                        "(about 1/3 less peak memory for GPT-2 at T=512, about 1.3x the step time; same gradients)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import STATE_FILE, TrainConfig, train

    given = {k: v for k, v in vars(args).items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}
    try:
        if args.resume:
            out = given.get("out", TrainConfig.out)
            try:
                with open(f"{out}/{STATE_FILE}") as f:
                    saved = json.load(f)["config"]
            except FileNotFoundError:
                raise FileNotFoundError(f"--resume: no checkpoint in {out!r} ({STATE_FILE} not found)") from None
            cfg = TrainConfig(**{**saved, **given, "resume": True})
        else:
            if "data" not in given:
                raise ValueError("--data FILE is required (or --resume to continue a run)")
            cfg = TrainConfig(**given)
        metrics = train(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"iters {metrics['iters']}  train loss {metrics['train_loss']:.4f}  val loss {metrics['val_loss']:.4f}  "
          f"{metrics['seconds']:.1f} s  {metrics['tokens_per_second']:,.0f} tokens/s  -> {cfg.out}")
    return 0
