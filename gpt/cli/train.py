"""`python -m gpt train`: train a GPT on a text (see gpt/train.py for the loop).

Examples:

    python -m gpt train                                  # char-level Tiny Shakespeare (shipped), out/shakespeare
    python -m gpt train --max-iters 30 --out /tmp/quick  # a quick look: warmup and decay follow --max-iters
    python -m gpt train --resume --out out/shakespeare   # continue a run (after Ctrl-C, or with more --max-iters)
    python -m gpt train --workers 1                      # one process (default: each batch split over one per core)
    python -m gpt train --data input.txt --tokenizer gpt2 --out out/mine
    python -m gpt train --init-from gpt2 --block-size 128 --lr 3e-5 --max-iters 200 --out out/ft   # fine-tune
    python -m gpt train --config gpt_config.json --out out/mine  # a tutorial's model dictionary (see demo --config)

The defaults are nanoGPT's CPU run on character-level Shakespeare (val loss about 1.90 after 2000
iterations). The run folder (--out) gets a checkpoint at every evaluation (the model, the optimizer,
the training state; the previous one is replaced only once the new one is complete), and
metrics.json at the end. Ctrl-C saves a checkpoint and stops (exit status 130), SIGTERM too (143);
`--resume` continues the run: options not given on the command line keep the values the run was
started with, its learning-rate schedule included (more --max-iters run at --min-lr past the decay;
give --lr-decay-iters to stretch it), and on another number of MPI ranks its global batch (with
--grad-accum or a smaller --batch-size, said) unless --batch-size or --grad-accum is given.
"""
from __future__ import annotations

import argparse
import dataclasses
import re

# (TrainConfig field, type, help): the flag is the field's name, --batch-size for batch_size; the defaults
# shown come from TrainConfig()
_OPTIONS = [
    ("data", str, "'shakespeare' (Tiny Shakespeare, shipped with the package) or a UTF-8 text file"),
    ("out", str, "the run folder: checkpoints and metrics.json"),
    ("tokenizer", str, "'char' (vocabulary = the text's characters) or 'gpt2' (BPE, 50257 tokens) (default: char; "
                       "gpt2 with --init-from)"),
    ("val_fraction", float, "fraction of the tokens, at the end of the text, held out for validation"),
    ("init_from", str, "fine-tune GPT-2's weights: gpt2, gpt2-medium, gpt2-large, gpt2-xl (fetched with "
                       "huggingface_hub) or a Hugging Face folder; the model's shape is its own"),
    ("batch_size", int, "sequences per iteration, per rank (under mpiexec -n N the global batch is N x --batch-size "
                        "x --grad-accum)"),
    ("grad_accum", int, "micro-batches of --batch-size per iteration, their gradients summed (the loss scaled by "
                        "1/K): the step of a K times larger batch"),
    ("workers", int, "processes each batch is split over, by rows, sharing the model's memory (1: none; default: one "
                     "per core, at most one per 4 rows and 8 in all; 1 with --dropout > 0, which they cannot split)"),
    ("dtype", str, "float32 or float64 (for checks: the same run to 1e-12 on any number of ranks)"),
    ("max_iters", int, "training iterations (optimizer steps)"),
    ("lr", float, "peak learning rate, reached after the warmup"),
    ("min_lr", float, "final learning rate of the cosine decay"),
    ("warmup_iters", int, "iterations of linear learning-rate warmup (default: 100, or a tenth of --max-iters (of "
                          "--lr-decay-iters if given) if that is less)"),
    ("lr_decay_iters", int, "iteration at which the cosine reaches --min-lr (default: --max-iters)"),
    ("weight_decay", float, "AdamW weight decay of the matrices (not of biases and LayerNorms)"),
    ("beta1", float, "AdamW beta1"),
    ("beta2", float, "AdamW beta2"),
    ("grad_clip", float, "clip the global gradient norm to this (0: no clipping)"),
    ("eval_interval", int, "evaluate and checkpoint every this many iterations (and at the end)"),
    ("eval_iters", int, "batches per split at each evaluation"),
    ("final_eval_iters", int, "batches per split at the last evaluation (default: --eval-iters)"),
    ("seed", int, "seed of the weight init, the batches, dropout and the evaluation batches"),
]
# GPTConfig fields (TrainConfig.model) the flags set, likewise
_MODEL_OPTIONS = [
    ("n_layer", int, "transformer blocks"),
    ("n_head", int, "attention heads per block"),
    ("n_embd", int, "embedding width (divisible by --n-head)"),
    ("block_size", int, "context length in tokens (with --init-from: at most the model's, whose position embeddings "
                        "are cropped to it)"),
    ("dropout", float, "dropout probability during training (off in evaluation)"),
]
_SHAPE = ("n_layer", "n_head", "n_embd", "bias")  # fixed by --init-from's model
_METAVARS = {"data": "FILE", "out": "DIR", "tokenizer": "{char,gpt2}", "init_from": "MODEL", "dtype": "{float32,float64}"}
_INVOCATION = ("resume", "allow_data_change", "overwrite", "progress", "workers")  # per command, never from the run


def register(subparsers) -> None:
    from ..errors import flag
    from ..train import TrainConfig  # the defaults shown in --help are TrainConfig's
    from . import integer

    defaults = TrainConfig()
    p = subparsers.add_parser("train", help="train a GPT on a text (Tiny Shakespeare by default)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    # SUPPRESS: only options given on the command line appear in args (for --resume)
    for group, options, source in (("run", _OPTIONS, defaults), ("model", _MODEL_OPTIONS, defaults.model)):
        g = p.add_argument_group(group)
        for name, kind, text in options:
            default = getattr(source, name)
            shown = "" if default is None or "(default:" in text else f" (default: {default})"
            g.add_argument(flag(name), dest=name, type=integer if kind is int else kind, metavar=_METAVARS.get(name, kind.__name__.upper()),
                           default=argparse.SUPPRESS, help=text + shown)
        if group == "model":
            g.add_argument("--bias", dest="bias", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=f"biases in the Linear and LayerNorm layers (default: {defaults.model.bias})")
            g.add_argument("--config", metavar="FILE.json",
                           help="the model as a JSON object of GPTConfig fields, ours or a tutorial's spelling, as "
                                "demo --config takes it (the flags above override its fields); its vocab_size picks "
                                "the tokenizer unless --tokenizer is given (50257: gpt2, else char), and the model's "
                                "vocabulary is the tokenizer's")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--allow-data-change", dest="allow_data_change", action="store_true", default=argparse.SUPPRESS,
                   help="with --resume: continue on --data even though it is not the text the run was trained on "
                        "(refused otherwise; its validation losses then measure another text)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out (or write among the files a non-empty --out holds)")
    p.add_argument("--save-best", dest="save_best", action="store_true", default=argparse.SUPPRESS,
                   help="also keep the checkpoint with the lowest val loss (best.json in --out)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars (evaluations are still printed)")
    p.add_argument("--recompute-blocks", dest="recompute_blocks", action="store_true", default=argparse.SUPPRESS,
                   help="activation recomputation: keep only each block's output and rerun the block in backward "
                        "(about 1/3 less peak memory for GPT-2 at T=512, about 1.3x the step time; same gradients)")
    p.add_argument("--checkpoint-blocks", dest="recompute_blocks", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)  # the old name of --recompute-blocks
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..distributed import World, keep_global_batch
    from ..errors import UsageError, flag
    from ..train import TrainConfig, load_run, train
    from . import read_model_config

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    model_names = {name for name, _, _ in _MODEL_OPTIONS} | {"bias"}
    given = {k: v for k, v in vars(args).items() if k in names}
    model_given = {k: v for k, v in vars(args).items() if k in model_names}
    for other in ("resume", "init_from"):
        if args.config is not None and given.get(other):
            raise UsageError(f"--config describes a new model; {flag(other)} takes the model "
                             f"{'of the run in --out' if other == 'resume' else 'of GPT-2'}: give one of them")
    if args.resume and "init_from" in given:
        raise UsageError("--init-from starts a new run from GPT-2's weights; --resume continues the run in --out "
                         "from its own weights: give one of them")
    if "init_from" in given and set(model_given) & set(_SHAPE):
        flags = ", ".join(flag(k) for k in model_given if k in _SHAPE)
        raise UsageError(f"{flags}: the model's shape comes from --init-from {given['init_from']}; only --block-size "
                         f"and --dropout can be set with it")
    world = World.from_environment()  # under mpiexec: rank 0 reads the run folder and alone prints
    ckpt, base, start = None, {}, TrainConfig().model  # a new run starts from the defaults
    if args.config is not None:  # ... or from the file's model
        start, written = read_model_config(args.config)
        if "tokenizer" not in given and "vocab_size" in written:
            base["tokenizer"] = "gpt2" if start.vocab_size == 50257 else "char"
    if args.resume:  # a resumed one from its own values
        ckpt = world.on_main(lambda: load_run(given.get("out", TrainConfig.out)))
        saved = TrainConfig.from_dict(ckpt.state["config"])
        base = {f.name: getattr(saved, f.name) for f in dataclasses.fields(TrainConfig) if f.name not in _INVOCATION}
        start = saved.model
        if "lr_decay_iters" not in given:  # --max-iters alone continues the run's schedule (decay and warmup)
            base.update(lr_decay_iters=saved.decay_iters, warmup_iters=given.get("warmup_iters", saved.warmup))
        if "batch_size" not in given and "grad_accum" not in given:  # on another number of ranks: the same steps
            ranks = ckpt.state.get("ranks", 1)
            kept = keep_global_batch(ranks * saved.grad_accum * saved.batch_size, world.size, saved.batch_size)
            if kept is not None and ranks != world.size:
                base.update(batch_size=kept[0], grad_accum=kept[1])
    model = _model_config({**dataclasses.asdict(start), **model_given})
    cfg = TrainConfig(**{**base, **given, "model": model})
    metrics = train(cfg, resume_from=ckpt)  # Ctrl-C: train() saves, then gpt.cli.main exits 130
    if world.is_main:
        print(f"iters {metrics['iters']}  train loss {metrics['train_loss']:.4f}  val loss {metrics['val_loss']:.4f}  "
              f"{metrics['seconds']:.1f} s  {metrics['tokens_per_second']:,.0f} tokens/s  -> {cfg.out}")
    return 0


def _model_config(fields: dict):
    """GPTConfig(**fields); its validation errors name the flags (GPTConfig.n_head -> --n-head)."""
    from ..config import GPTConfig
    from ..errors import UsageError, flag

    try:
        return GPTConfig(**fields)
    except (ValueError, TypeError) as e:
        flags = {name: flag(name) for name, _, _ in _MODEL_OPTIONS}
        text = re.sub(r"\b(?:GPTConfig\.)?(" + "|".join(flags) + r")\b", lambda m: flags[m[1]], str(e))
        raise UsageError(text) from None
