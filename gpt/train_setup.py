"""What train() does before its loop: find the run to resume, build the data and the model, say what runs.

    ckpt = checkpoint_to_resume(cfg, world, resume_from)  # the run's latest checkpoint, or None (a new run folder)
    data, model = data_and_model(cfg, ckpt, world.size)   # the text, tokenized; the model, once it fits in memory
    resume(cfg, ckpt, data, optimizer, generators, world)  # the same text, the optimizer, the generators' states
    summary(cfg, data, model, it, ckpt, world, workers)    # the start-up lines

`load_run(out)` is the latest checkpoint of a run, checked to be a training state (--resume, sample).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tinygrad_lite import fast
from tinygrad_lite.optim import AdamW

from . import checkpoint
from .config import GPTConfig
from .data import SHAKESPEARE, TextData, check_same_text
from .distributed import World, global_batch_note
from .errors import UsageError, flag
from .memory import require, training_bytes
from .model import GPT
from .randomness import RunGenerators
from .train_config import TrainConfig

__all__ = ["load_run", "checkpoint_to_resume", "data_and_model", "resume", "summary", "say"]

# what a resumed run must keep: it fixes the model, the tokens, or the evaluation batches
_FROZEN = ("tokenizer", "val_fraction", "seed")
_FROZEN_MODEL = ("n_layer", "n_head", "n_embd", "block_size", "bias", "qkv_bias", "n_inner", "tie_weights",
                 "layer_norm_eps")


# ------------------------------------------------------------------------------------------------
# the run to resume


def checkpoint_to_resume(cfg: TrainConfig, world: World,
                         loaded: checkpoint.Checkpoint | None) -> checkpoint.Checkpoint | None:
    """With cfg.resume the run's latest checkpoint (`loaded` if the caller's is still the latest), checked to be
    resumable with cfg; else None, once cfg.out is ready for a new run (--overwrite empties it). Rank 0 reads
    and writes the folder; every rank gets the result, or the error."""
    if loaded is not None and world.on_main(lambda: checkpoint.latest_name(cfg.out)) not in (None, loaded.path.name):
        loaded = None  # another run saved since the caller loaded it: load it again, under the lock
    ckpt = loaded if loaded is not None else world.on_main(lambda: load_run(cfg.out) if cfg.resume else None)
    if ckpt is None:
        world.on_main(lambda: checkpoint.prepare_run(Path(cfg.out), cfg.overwrite, name="--out"))
    else:
        _check_resumable(cfg, ckpt)
    return ckpt


def load_run(out: str | os.PathLike) -> checkpoint.Checkpoint:
    """The latest checkpoint of the run in ``out`` (for --resume); a UsageError naming --out if there is none."""
    out = Path(out)
    if (out / checkpoint.MANIFEST).exists():
        raise UsageError(f"--resume: {checkpoint.in_checkpoint(out)}")
    if not checkpoint.is_run(out):
        why = "does not exist" if not out.exists() else "holds no training run (no latest.json, no ckpt-* folder)"
        raise UsageError(f"--resume: --out {out} {why}; start a run there first (without --resume)")
    ckpt = checkpoint.load(out)
    keys, data = {"iter", "config", "tokenizer", "losses", "evals", "best", "seconds", "rng"}, ckpt.state.get("data")
    # "data" (the text's identity) and "ranks" (of an MPI run) since format version 2: older runs lack them
    if set(ckpt.state) - {"data", "ranks"} != keys:
        raise checkpoint.CheckpointError(f"{ckpt.path / 'state.json'} is not a training state: expected the keys "
                                         f"{', '.join(sorted(keys))} and data, got {', '.join(sorted(ckpt.state))}")
    if "data" in ckpt.state and not (isinstance(data, dict) and isinstance(data.get("chars"), int)
                                     and isinstance(data.get("sha256"), str)):
        raise checkpoint.CheckpointError(f"{ckpt.path / 'state.json'}: data is {json.dumps(data)[:100]}; expected "
                                         '{"chars": int, "sha256": hex} (the identity of the text)')
    ckpt.check_finite()  # a step from a NaN weight or moment gives NaN: refuse it now, naming the tensor
    return ckpt


def _check_resumable(cfg: TrainConfig, ckpt: checkpoint.Checkpoint) -> None:
    """A UsageError naming each setting cfg changes that the run must keep."""
    saved = TrainConfig.from_dict(ckpt.state["config"])
    changed = [f"{flag(k)}: the run has {getattr(saved, k)!r}, now {getattr(cfg, k)!r}"
               for k in _FROZEN if getattr(cfg, k) != getattr(saved, k)]
    changed += [f"{flag(k)}: the run has {getattr(saved.model, k)!r}, now {getattr(cfg.model, k)!r}"
                for k in _FROZEN_MODEL if getattr(cfg.model, k) != getattr(saved.model, k)]
    if changed:
        raise UsageError(f"cannot resume the run in {cfg.out} with a different model, data split or seed: "
                         + "; ".join(changed))


def resume(cfg: TrainConfig, ckpt: checkpoint.Checkpoint, data: TextData, optimizer: AdamW,
           generators: RunGenerators, world: World) -> None:
    """Continue the run of `ckpt`: check that `data` is its text (else a UsageError; with --allow-data-change a
    note), load the optimizer's moments (its hyperparameters stay cfg's) and the generators' states."""
    note = world.on_main(lambda: check_same_text(data, cfg.data, ckpt.state.get("data"), ckpt.state["config"]["data"],
                                                 cfg.out, cfg.allow_data_change))
    if note and world.is_main:
        say(f"note: {note}")
    ckpt.load_optimizer(optimizer)
    generators.set_state(ckpt.state["rng"])
    for group, wd in zip(optimizer.param_groups, (cfg.weight_decay, 0.0)):  # hyperparameters from cfg
        group.update(weight_decay=wd, betas=(cfg.beta1, cfg.beta2))
    it = ckpt.state["iter"]
    if it > cfg.max_iters:
        raise UsageError(f"--max-iters {cfg.max_iters} is below the run's iteration {it}: give --max-iters "
                         f">= {it} to continue it")


# ------------------------------------------------------------------------------------------------
# the data and the model


def data_and_model(cfg: TrainConfig, ckpt, ranks: int) -> tuple[TextData, GPT]:
    """The run's text, tokenized, and the model to train, once the memory a step needs is known to fit."""
    data = TextData.from_file(cfg.data, ckpt.state["tokenizer"] if ckpt else cfg.tokenizer, cfg.val_fraction)
    planned = (ckpt.config if ckpt else None if cfg.init_from
               else dataclasses.replace(cfg.model, vocab_size=data.vocab_size))
    if planned is not None:  # before the model is built; GPT-2's (--init-from) is checked once loaded
        _check_memory(planned, cfg, ranks)
    model = _build_model(cfg, data.vocab_size, ckpt)
    if planned is None:
        _check_memory(model.config, cfg, ranks)
    data.check_block_size(model.config.block_size)
    return data, model


def _check_memory(config: GPTConfig, cfg: TrainConfig, ranks: int) -> None:
    """A UsageError, before anything is allocated, when one step of this run cannot fit in this machine's memory."""
    rows, eval_rows = cfg.batch_size, cfg.grad_accum * cfg.batch_size  # an evaluation runs K B rows at once
    need = training_bytes(config, rows, np.dtype(cfg.dtype).itemsize, eval_rows)
    need["the batches of the whole step (all ranks)"] = 2 * 8 * ranks * eval_rows * config.block_size  # int64 x, y
    require(need, "one training step", "give a smaller --batch-size, --grad-accum, --block-size, --n-layer or --n-embd")


def _build_model(cfg: TrainConfig, vocab_size: int, ckpt) -> GPT:
    """The model to train (train mode, cfg.dtype): the checkpoint's, GPT-2's (cropped), or a new one."""
    if ckpt is not None:
        model = ckpt.model(dtype=cfg.dtype)
        if model.config.dropout != cfg.model.dropout:  # the one model setting a resumed run may change
            model = _copy_into(GPT(dataclasses.replace(model.config, dropout=cfg.model.dropout), dtype=cfg.dtype),
                               model)
    elif cfg.init_from is not None:
        model = _from_pretrained(cfg, vocab_size)
    else:
        model = GPT(dataclasses.replace(cfg.model, vocab_size=vocab_size), seed=cfg.seed, dtype=cfg.dtype)
    model.recompute_blocks = cfg.recompute_blocks
    return model.train()


def _from_pretrained(cfg: TrainConfig, vocab_size: int) -> GPT:
    """GPT-2's weights (cfg.init_from) in a model with cfg's block size (the first positions) and dropout."""
    try:
        src = GPT.from_pretrained(cfg.init_from, dtype=cfg.dtype)
    except UsageError as e:  # not cached and no network, a bad folder: name the flag
        raise UsageError(f"--init-from {cfg.init_from}: {e}") from None
    T = cfg.model.block_size
    if T > src.config.block_size:
        raise UsageError(f"--block-size {T} exceeds the {src.config.block_size} positions of --init-from "
                         f"{cfg.init_from}; give --block-size {src.config.block_size} or less")
    if src.config.vocab_size != vocab_size:
        raise UsageError(f"--init-from {cfg.init_from} has a vocabulary of {src.config.vocab_size} tokens; the "
                         f"{cfg.tokenizer} tokenizer it is trained with has {vocab_size}")
    config = dataclasses.replace(src.config, block_size=T, dropout=cfg.model.dropout)
    return _copy_into(GPT(config, seed=cfg.seed, dtype=cfg.dtype), src)


def _copy_into(model: GPT, src: GPT) -> GPT:
    """model's parameters := src's (position embeddings: the first block_size rows)."""
    theirs = dict(src.named_parameters())
    for name, p in model.named_parameters():
        p.data[...] = theirs[name].data[:p.shape[0]] if name == "transformer.wpe.weight" else theirs[name].data
    return model


# ------------------------------------------------------------------------------------------------
# what runs


def summary(cfg: TrainConfig, data: TextData, model: GPT, it: int, ckpt, world: World, workers: int) -> None:
    """The start-up lines: data, model, batch and schedule, and where the run starts from."""
    c, tok = model.config, data.tokenizer
    source = "shakespeare (shipped Tiny Shakespeare)" if cfg.data == SHAKESPEARE else cfg.data
    say(f"data: {source}: {len(data.train):,} train + {len(data.val):,} val tokens, "
        f"{cfg.tokenizer} tokenizer, vocabulary {tok.n_vocab:,}")
    say(f"model: {c.n_layer} layers, {c.n_head} heads, n_embd {c.n_embd}, block size {c.block_size}, "
        f"dropout {c.dropout:g}{'' if c.bias else ', no bias'}: {model.num_parameters():,} parameters, "
        f"{model.transformer.wte.weight.dtype} on the CPU (NumPy), engine {'fast' if fast.is_enabled() else 'math'}")
    rows = world.size * cfg.grad_accum * cfg.batch_size
    split = (f" ({world.size} ranks x {cfg.grad_accum} micro-batches x {cfg.batch_size})"
             if rows != cfg.batch_size else "")
    after = f", then {cfg.min_lr:g}" if cfg.decay_iters < cfg.max_iters else ""
    say(f"batch: {rows}{split} x {c.block_size} = {rows * c.block_size:,} tokens per iteration; "
        f"{cfg.max_iters} iterations, lr {cfg.lr:g} -> {cfg.min_lr:g} (warmup {cfg.warmup}, decay until "
        f"{cfg.decay_iters}{after})")
    if ckpt is not None:
        saved = TrainConfig.from_dict(ckpt.state["config"])
        note = global_batch_note((ckpt.state.get("ranks", 1), saved.grad_accum, saved.batch_size),
                                 (world.size, cfg.grad_accum, cfg.batch_size))
        if note is not None:
            say(note)
    if cfg.workers is not None and cfg.workers > workers:
        say(f"workers: --workers {cfg.workers} is more than the {workers} rows of a batch (--batch-size "
            f"{cfg.batch_size}): each batch split over {workers} processes, one row each")
    elif workers > 1:
        say(f"workers: each batch split over {workers} processes (--workers 1: one process)")
    if ckpt is not None:
        if ckpt.note:
            say(f"note: {ckpt.note}")
        say(f"resuming from iter {it} ({ckpt.path})")
    elif cfg.init_from is not None:
        say(f"fine-tuning {cfg.init_from}")
    say(f"run: {cfg.out}")


def say(message: str) -> None:
    """A line on stderr, above any progress bar."""
    tqdm.write(message, file=sys.stderr)
