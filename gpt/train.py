"""Train a GPT on a text: nanoGPT's loop on tinygrad_lite.

    cfg = TrainConfig(data="shakespeare", out="out/shakespeare", max_iters=2000)
    metrics = train(cfg)      # {"iters", "train_loss", "val_loss", "seconds", "tokens_per_second", ...}

Each iteration: set the learning rate (linear warmup, then cosine decay to ``min_lr``), draw a random
(B, T) batch, forward, cross-entropy loss, backward, clip the gradient norm, AdamW step. Weight decay
applies to the matrices (Linear weights and embeddings: every param with ndim >= 2) and not to
biases and LayerNorm params. The losses are evaluated (mean over ``eval_iters`` batches of each
split, dropout off) before the first step, every ``eval_interval`` iterations and at the end; each
evaluation after the first writes a checkpoint (gpt/checkpoint.py) of the whole run: the model, the
optimizer, and the state below. metrics.json is written at the end.

    state.json   iter, config (TrainConfig.to_dict(), the model's GPTConfig included), tokenizer (its spec),
                 data (the text's identity: {"chars", "sha256"}), losses (one per iteration), evals ([{"iter",
                 "train_loss", "val_loss"}]), best ({"iter", "val_loss"} of the best saved checkpoint, or None),
                 seconds, rng (generator states)

``resume=True`` continues the run in ``out`` and reproduces the losses an uninterrupted run would
have given: the model, optimizer moments, iteration (hence learning rate) and every RNG are restored.
It refuses another text than the run's unless ``allow_data_change``. The run folder is locked while
a run writes it (gpt/run_lock.py).
Evaluation draws its batches from its own generator, seeded afresh at each evaluation, so it never
changes the training batches and each evaluation sees the same batches.

A non-finite loss, gradient norm or evaluation stops the run with `RunFailed` before the optimizer
step, and saves nothing: the last checkpoint is the last good one. Ctrl-C waits for the step in
progress, saves a checkpoint at that iteration, and re-raises KeyboardInterrupt.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import tinygrad_lite.functional as F
from tinygrad_lite import fast, no_grad
from tinygrad_lite.parallel import DataParallel, WorkerError
from tinygrad_lite.optim import AdamW, clip_grad_norm_, cosine_with_warmup

from . import checkpoint
from .config import GPTConfig
from .data import SHAKESPEARE, TextData, check_same_text, data_source
from .distributed import World, global_batch_note, shard_dropout
from .errors import RunFailed, Terminated, UsageError, flag
from .files import atomic_write
from .memory import require, training_bytes
from .model import GPT
from .run_control import CtrlC, no_overflow_warnings, rng_states, set_rng_states
from .run_lock import RunLock
from .runlog import RunLog

__all__ = ["TrainConfig", "train", "evaluate", "param_groups", "load_run", "METRICS_FILE"]

METRICS_FILE = "metrics.json"
RESUME_HINT = "python -m gpt train --resume --out {out}"

# what a resumed run must keep: it fixes the model, the tokens, or the evaluation batches
_FROZEN = ("tokenizer", "val_fraction", "seed")
_FROZEN_MODEL = ("n_layer", "n_head", "n_embd", "block_size", "bias", "qkv_bias", "n_inner", "tie_weights", "layer_norm_eps")


def _char_model() -> GPTConfig:
    """nanoGPT's CPU model for character-level Shakespeare; vocab_size is set from the tokenizer."""
    return GPTConfig(block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0)


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults: nanoGPT's CPU run on character-level Shakespeare.

    Fields are named like their flags (``lr`` is ``--lr``). ``model.vocab_size`` is replaced by the
    tokenizer's at the start of training. With ``init_from`` the model is that GPT-2 (a hub name or a
    local Hugging Face folder): only ``model.block_size`` (at most its own: the position embeddings are
    cropped) and ``model.dropout`` are taken from ``model``; a resumed run takes its weights from its checkpoint.
    """

    data: str = SHAKESPEARE  # "shakespeare" (shipped) or a UTF-8 text file; kept as an absolute path
    out: str = "out/shakespeare"  # the run folder (checkpoints, metrics.json)
    tokenizer: str | None = None  # "char" or "gpt2"; None: "gpt2" with init_from, else "char"
    val_fraction: float = 0.1  # last fraction of the tokens held out for validation
    model: GPTConfig = field(default_factory=_char_model)
    init_from: str | None = None  # fine-tune GPT-2: "gpt2", "gpt2-medium", ... or a Hugging Face folder
    # optimisation
    batch_size: int = 12  # B, per rank (mpiexec -n N: the global batch is N * B * grad_accum)
    grad_accum: int = 1  # K: micro-batches of batch_size per step, their gradients summed (loss scaled by 1/K)
    workers: int | None = None  # processes each batch is split over (tinygrad_lite.parallel.DataParallel); 1: none;
    # None: one per core (this rank's share under mpiexec; at most one per 4 rows, and 8), 1 with dropout
    dtype: str = "float32"  # of the model and its training: "float32" or "float64"
    max_iters: int = 2000
    lr: float = 1e-3  # peak learning rate, reached after warmup
    min_lr: float = 1e-4  # learning rate at the end of the cosine decay
    warmup_iters: int | None = None  # None: min(100, decay_iters // 10)
    lr_decay_iters: int | None = None  # iteration where the cosine reaches min_lr; None: max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    # evaluation and bookkeeping
    eval_interval: int = 250
    eval_iters: int = 20  # batches per split at each evaluation
    final_eval_iters: int | None = None  # batches per split at the last evaluation; None: eval_iters
    save_best: bool = False  # also keep the checkpoint of the lowest val loss (best.json)
    seed: int = 1337  # model init, batches, dropout, evaluation batches
    resume: bool = False  # continue the run saved in `out`
    allow_data_change: bool = False  # with resume: continue on another text than the run's (else refused)
    overwrite: bool = False  # replace the run (or other files) in `out`
    progress: bool = True  # tqdm progress bars on stderr (when it is a terminal)
    recompute_blocks: bool = False  # rerun each block's forward in backward instead of keeping it (less memory)
    checkpoint_blocks: InitVar[bool | None] = None  # the old name of recompute_blocks (also readable, below)

    def __post_init__(self, checkpoint_blocks: bool | None) -> None:
        if checkpoint_blocks is not None:  # TrainConfig(checkpoint_blocks=True), the old spelling
            self.recompute_blocks = self.recompute_blocks or checkpoint_blocks
        if not isinstance(self.model, GPTConfig):
            raise UsageError(f"TrainConfig.model must be a GPTConfig, got {type(self.model).__name__}")
        for name in ("data", "out"):
            if not isinstance(getattr(self, name), (str, os.PathLike)) or not os.fspath(getattr(self, name)):
                raise UsageError(f"{flag(name)} must be a non-empty path, got {getattr(self, name)!r}")
        self.data, self.out = data_source(self.data), os.fspath(self.out)
        if self.tokenizer is None:
            self.tokenizer = "gpt2" if self.init_from is not None else "char"
        if self.tokenizer not in ("char", "gpt2"):
            raise UsageError(f"--tokenizer must be 'char' or 'gpt2', got {self.tokenizer!r}")
        if self.init_from is not None:
            if not isinstance(self.init_from, (str, os.PathLike)) or not os.fspath(self.init_from):
                raise UsageError(f"--init-from must name a GPT-2 model or folder, got {self.init_from!r}")
            self.init_from = os.fspath(self.init_from)
            if self.tokenizer != "gpt2":
                raise UsageError(f"--init-from {self.init_from} is a GPT-2 model: it needs --tokenizer gpt2, "
                                 f"got --tokenizer {self.tokenizer}")
        for name in ("batch_size", "grad_accum", "eval_interval", "eval_iters"):
            _check(name, int, lambda v: v >= 1, ">= 1", getattr(self, name))
        if self.dtype not in ("float32", "float64"):
            raise UsageError(f"--dtype must be float32 or float64, got {self.dtype!r}")
        _check("max_iters", int, lambda v: v >= 0, ">= 0", self.max_iters)
        _check("seed", int, lambda v: v >= 0, ">= 0", self.seed)
        for name, low in (("warmup_iters", 0), ("lr_decay_iters", 1), ("final_eval_iters", 1), ("workers", 1)):
            if getattr(self, name) is not None:
                _check(name, int, lambda v: v >= low, f">= {low} (or unset)", getattr(self, name))
        _check("lr", float, lambda v: v > 0.0, "> 0", self.lr)
        for name in ("min_lr", "weight_decay", "grad_clip"):
            _check(name, float, lambda v: v >= 0.0, ">= 0", getattr(self, name))
        for name in ("beta1", "beta2"):
            _check(name, float, lambda v: 0.0 <= v < 1.0, "in [0, 1)", getattr(self, name))
        _check("val_fraction", float, lambda v: 0.0 < v < 1.0, "in (0, 1)", self.val_fraction)
        for name in ("save_best", "resume", "allow_data_change", "overwrite", "progress", "recompute_blocks"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"TrainConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if self.min_lr > self.lr:
            raise UsageError(f"--min-lr ({self.min_lr:g}) must not exceed --lr ({self.lr:g})")
        if self.warmup > self.decay_iters:
            until = "--lr-decay-iters" if self.lr_decay_iters is not None else "--max-iters"
            raise UsageError(f"--warmup-iters ({self.warmup}) must not exceed {until} ({self.decay_iters})")
        if self.resume and self.overwrite:
            raise UsageError("--resume continues the run in --out and --overwrite replaces it: give one of them")
        if self.allow_data_change and not self.resume:
            raise UsageError("--allow-data-change lets --resume continue a run on another text; give it with --resume")

    @property
    def decay_iters(self) -> int:
        """Iteration where the cosine reaches min_lr: --lr-decay-iters, else --max-iters."""
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters

    @property
    def warmup(self) -> int:
        """Warmup iterations: --warmup-iters, else 100 capped at a tenth of the decay (short runs work)."""
        return min(100, self.decay_iters // 10) if self.warmup_iters is None else self.warmup_iters

    def lr_at(self, it: int) -> float:
        """Learning rate of iteration ``it`` (0-based): warmup, cosine to min_lr, then min_lr."""
        return cosine_with_warmup(it, self.lr, self.min_lr, self.warmup, self.decay_iters)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the model as GPTConfig.to_dict()); inverse of ``from_dict``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """A TrainConfig from ``to_dict()``'s form, also as checkpoints before format 3 wrote it (checkpoint_blocks)."""
        if isinstance(d, dict) and "checkpoint_blocks" in d and "recompute_blocks" not in d:
            d = {("recompute_blocks" if k == "checkpoint_blocks" else k): v for k, v in d.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or set(d) - names or not isinstance(d.get("model"), dict):
            got = sorted(set(d) - names) if isinstance(d, dict) else type(d).__name__
            raise UsageError(f"not a TrainConfig: expected a JSON object with the keys {', '.join(sorted(names))} "
                             f"(model a GPTConfig object), got {got}")
        return cls(**{**d, "model": GPTConfig.from_dict(d["model"])})


TrainConfig.checkpoint_blocks = property(lambda cfg: cfg.recompute_blocks,  # the old name, read (InitVar: passed)
                                         doc="The old name of recompute_blocks.")


def _check(name: str, kind: type, ok, expected: str, value: Any) -> None:
    """value must be an int (kind int) or a finite number (kind float) for which ok(value) holds."""
    number = isinstance(value, (int, float)) and (kind is float or isinstance(value, int))
    if isinstance(value, bool) or not number or not math.isfinite(value) or not ok(value):
        what = "an integer" if kind is int else "a finite number"
        raise UsageError(f"{flag(name)} must be {what} {expected}, got {value!r}")


# ------------------------------------------------------------------------------------------------
# the training loop


def param_groups(model: GPT, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: matrices (ndim >= 2: Linear weights, embeddings) decay; biases and LayerNorms don't."""
    params = model.parameters()  # the tied wte / lm_head matrix once
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


@no_grad()
def evaluate(model: GPT, data: TextData, batch_size: int, block_size: int, iters: int, seed: int,
             progress: bool = False, world: World | None = None, par: DataParallel | None = None) -> dict[str, float]:
    """Mean loss over ``iters`` (B, T) batches of each split, dropout off; batches from ``default_rng([seed, 2])``.

    With a `world` of N ranks, B is the global batch: each rank takes its B / N rows of every batch.
    ``progress``: a progress bar on stderr (a terminal) once the pass has taken a second. ``par``: the
    model's DataParallel, to split each batch over its workers."""
    world = world or World()
    was_training = model.training
    model.eval()
    rng = np.random.default_rng([seed, 2])  # the same batches at every evaluation
    rows = slice(world.rank * batch_size // world.size, (world.rank + 1) * batch_size // world.size)
    out = {}
    with tqdm(total=2 * iters, desc="eval", delay=1.0, leave=False, disable=None if progress else True,
              dynamic_ncols=True, file=sys.stderr) as bar:
        for split in ("train", "val"):
            total = 0.0
            for _ in range(iters):
                x, y = data.get_batch(split, batch_size, block_size, rng)
                total += (par.loss(x[rows], y[rows]) if par is not None
                          else F.cross_entropy(model(x[rows]), y[rows]).item())
                bar.update(1)
            out[f"{split}_loss"] = world.mean(total) / iters
    model.train(was_training)
    return out


def train(cfg: TrainConfig, resume_from: checkpoint.Checkpoint | None = None) -> dict[str, Any]:
    """Run (or, with ``cfg.resume``, continue) training; return the metrics also written to metrics.json.

    ``resume_from``: the run's checkpoint when the caller has already loaded it (``load_run(cfg.out)``). The run
    folder is locked while the run lasts (gpt/run_lock.py): a second run on it is refused, naming the first."""
    world = World.from_environment()
    lock = RunLock(cfg.out)
    note = world.on_main(lambda: lock.acquire(create=not cfg.resume))  # rank 0 writes the folder: rank 0 holds it
    try:
        if note and world.is_main:
            _say(f"note: {note}")
        if resume_from is not None and world.on_main(lambda: checkpoint.latest_name(cfg.out)) not in (
                None, resume_from.path.name):
            resume_from = None  # another run saved since the caller loaded it: load it again, under the lock
        return _train(cfg, resume_from)
    finally:
        lock.release()


def _train(cfg: TrainConfig, resume_from: checkpoint.Checkpoint | None) -> dict[str, Any]:
    """train() with the run folder locked."""
    t_start = time.perf_counter()
    out = Path(cfg.out)
    world = World.from_environment()  # one rank, or mpiexec's N: rank 0 alone reads and writes the run folder
    say = _say if world.is_main else (lambda message: None)  # the other ranks print nothing but errors
    ckpt = resume_from if resume_from is not None else world.on_main(lambda: load_run(out) if cfg.resume else None)
    if ckpt is None:
        world.on_main(lambda: checkpoint.prepare_run(out, cfg.overwrite, name="--out"))
    else:
        _check_resumable(cfg, ckpt)
    data, model = world.together(lambda: _data_and_model(cfg, ckpt, world.size))  # each rank reads the data itself
    if ckpt is not None:  # the text too must be the run's (--allow-data-change: said)
        note = world.on_main(lambda: check_same_text(data, cfg.data, ckpt.state.get("data"),
                                                     ckpt.state["config"]["data"], cfg.out, cfg.allow_data_change))
        if note:
            say(f"note: {note}")
    T, B, K, N = model.config.block_size, cfg.batch_size, cfg.grad_accum, world.size
    workers = _workers(cfg, model.config.dropout, world.size)
    dropout_rngs = shard_dropout(model, N * K)  # each rank's rows of the masks one process would draw
    run_cfg = dataclasses.replace(cfg, model=model.config)  # what the checkpoints record
    optimizer = AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    rng = np.random.default_rng(cfg.seed)  # training batches
    it, losses, evals, best, seconds = 0, [], [], None, 0.0
    if ckpt is not None:
        ckpt.load_optimizer(optimizer)
        set_rng_states(model, rng, ckpt.state["rng"])
        s = ckpt.state
        it, losses, evals, best, seconds = s["iter"], s["losses"], s["evals"], s["best"], s["seconds"]
        for group, wd in zip(optimizer.param_groups, (cfg.weight_decay, 0.0)):  # hyperparameters from cfg
            group.update(weight_decay=wd, betas=(cfg.beta1, cfg.beta2))
        if it > cfg.max_iters:
            raise UsageError(f"--max-iters {cfg.max_iters} is below the run's iteration {it}: give --max-iters "
                             f">= {it} to continue it")
    if world.is_main:
        _summary(cfg, data, model, it, ckpt, world, workers)
    saved_at = it if ckpt is not None else None  # iteration of the checkpoint latest.json names
    log = RunLog(out if world.is_main else None, saved_at)  # out/log.jsonl, cut to the checkpoint's iteration

    def save(best_now: bool = False, alone: bool = False) -> None:
        nonlocal saved_at
        state = {"iter": it, "config": run_cfg.to_dict(), "tokenizer": data.tokenizer_spec(), "data": data.identity,
                 "losses": losses, "evals": evals, "best": best, "seconds": seconds + time.perf_counter() - t_start,
                 "rng": rng_states(model, rng), "ranks": N}

        def write() -> None:
            log.flush()  # the log's lines up to `it` are on disk before the checkpoint that covers them
            checkpoint.save(out, model, optimizer, state, best=best_now)
        if not alone:
            world.on_main(write)  # an error: every rank
        elif world.is_main:  # after Ctrl-C the other ranks may be anywhere: no collective
            write()
        saved_at = it

    def diverged(at: int, what: str) -> RunFailed:
        last = (f"the last good checkpoint (iteration {saved_at}) is in {out}" if saved_at is not None
                else "no checkpoint was saved")
        return world.alike(RunFailed(f"training diverged at iteration {at}: {what}; {last} (try a lower --lr or "
                                     f"more --warmup-iters)"))  # every rank sees the same mean loss

    def run_eval(n_batches: int) -> dict[str, float]:
        world.check_replicas(params)  # every rank must still hold the same model
        with ctrl_c.deferred(world) if N > 1 else nullcontext():  # the ranks agree after it, as after a step
            result = {"iter": it, **evaluate(model, data, N * K * B, T, n_batches, cfg.seed,
                                             cfg.progress and world.is_main, world, par)}  # batches of the global size
        bad = [k for k in ("train_loss", "val_loss") if not math.isfinite(result[k])]
        if bad:
            raise diverged(it, f"the evaluation gives {bad[0].replace('_', ' ')} {result[bad[0]]}")
        evals.append(result)
        log.evaluation(result, model)  # with the last step's lr, gradient norms and tokens/s
        say(f"iter {it}: train loss {result['train_loss']:.4f}, val loss {result['val_loss']:.4f}")
        return result

    def eval_and_save(n_batches: int) -> dict[str, float]:
        nonlocal best
        result = run_eval(n_batches)
        is_best = cfg.save_best and (best is None or result["val_loss"] < best["val_loss"])
        if is_best:
            best = {"iter": it, "val_loss": result["val_loss"]}
        save(is_best)
        return result

    model.train()
    params = model.parameters()
    tokens_per_iter = N * K * B * T
    start_iter, train_seconds = it, 0.0
    max_norm = cfg.grad_clip if cfg.grad_clip > 0.0 else math.inf  # inf: measure the norm, clip nothing
    rng_at_it = rng_states(model, rng)  # the generators as they are at iteration `it`
    stepping = False  # from optimizer.step() until the step is recorded: the parameters may be half updated
    bar = tqdm(total=cfg.max_iters, initial=it, disable=None if cfg.progress and world.is_main else True,
               desc="train", dynamic_ncols=True, file=sys.stderr)
    par = None
    try:
        if workers > 1:  # the parameters move into memory shared with the workers
            try:
                par = DataParallel(model, workers=workers)
            except (OSError, WorkerError) as e:  # no room in shared memory, processes not allowed, ...
                if cfg.workers is not None:
                    raise RunFailed(f"--workers {workers}: the worker processes could not start: {e}") from None
                say(f"workers: could not start them ({e}); training in one process")
                workers = 1
        with CtrlC(always=N > 1) as ctrl_c, no_overflow_warnings():  # ranks stop where they agree
            if it < cfg.max_iters and not (evals and evals[-1]["iter"] == it):  # an evaluation due at `it`?
                if it == 0:
                    run_eval(cfg.eval_iters)  # the loss at initialisation, before any step
                elif it % cfg.eval_interval == 0:
                    eval_and_save(cfg.eval_iters)  # the one Ctrl-C cut short
            while it < cfg.max_iters:
                with ctrl_c.deferred(world):  # Ctrl-C lands after the step, on every rank: a checkpoint is a whole step
                    t0 = time.perf_counter()
                    lr = cfg.lr_at(it)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    loss = _gradient(model, params, data, rng, T, B, K, world, dropout_rngs, par)  # mean of N K B rows
                    norm = clip_grad_norm_(params, max_norm)  # before clipping
                    if not (math.isfinite(loss) and math.isfinite(norm)):  # before the step: weights intact
                        raise diverged(it + 1, f"loss is {loss}, gradient norm {norm} (lr {lr:.3g})")
                    stepping = True
                    optimizer.step()
                    losses.append(loss)
                    it += 1
                    rng_at_it = rng_states(model, rng)  # the generators at the new `it`, before the step counts as done
                    stepping = False
                    train_seconds += time.perf_counter() - t0
                    log.step(lr, norm, time.perf_counter() - t0, tokens_per_iter)
                tok_s = (it - start_iter) * tokens_per_iter / train_seconds
                bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:,.0f}", refresh=False)
                bar.update(1)
                if it % cfg.eval_interval == 0 and it < cfg.max_iters:
                    eval_and_save(cfg.eval_iters)
            bar.close()
            if evals and evals[-1]["iter"] == it and saved_at == it:
                last = evals[-1]  # resumed a finished run: nothing new to evaluate
            else:
                last = eval_and_save(cfg.final_eval_iters or cfg.eval_iters)  # the last evaluation always runs
    except (KeyboardInterrupt, BrokenPipeError) as stop:  # Ctrl-C, SIGTERM (Terminated), or the log's reader left
        bar.close()
        how = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
        if stepping:  # only when KeyboardInterrupt is raised without SIGINT (another thread, a test)
            where = f"iteration {saved_at} in {out}" if saved_at is not None else "none"
            say(f"{how} inside an optimizer step: nothing saved (the last checkpoint: {where})")
            raise
        set_rng_states(model, rng, rng_at_it)  # an iteration cut short has drawn its batch: undo that
        if saved_at != it:
            save(cfg.save_best and best is not None and best["iter"] == it, alone=True)  # best: cut short after eval
        if not isinstance(stop, BrokenPipeError):  # no one reads stderr any more
            say(f"{how}: iteration {it} saved in {out}; continue with: {RESUME_HINT.format(out=out)}")
        raise
    except WorkerError as e:
        raise RunFailed(f"--workers {workers}: {e}") from None
    finally:
        bar.close()
        if par is not None:
            par.close()  # the model's parameters are copied back out of the shared memory
    done = it - start_iter
    metrics = {"iters": it, "train_loss": last["train_loss"], "val_loss": last["val_loss"],
               "seconds": seconds + time.perf_counter() - t_start,
               "tokens_per_second": done * tokens_per_iter / train_seconds if done else 0.0,
               "tokens_per_iter": tokens_per_iter, "num_parameters": model.num_parameters(), "best": best,
               "evals": evals, "losses": losses, "config": run_cfg.to_dict(), "ranks": N, "workers": workers,
               "allreduce_seconds_per_iter": world.allreduce_seconds / done if done else 0.0}
    world.on_main(lambda: _write_metrics(out / METRICS_FILE, metrics, saved_at))
    return metrics


def _write_metrics(path: Path, metrics: dict, saved_at: int) -> None:
    """metrics.json, atomically; a failed write is RunFailed naming it (the last checkpoint is complete)."""
    text = json.dumps(metrics, indent=1)
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    except OSError as e:
        raise RunFailed(f"cannot write {path}: {e.strerror or e}; the run's checkpoint of iteration {saved_at} in "
                        f"{path.parent} is complete") from None


def _gradient(model: GPT, params: list, data: TextData, rng: np.random.Generator, T: int, B: int, K: int,
              world: World, dropout_rngs: list, par: DataParallel | None = None) -> float:
    """Fill every parameter's .grad with the gradient of the mean loss over one global batch, and return that
    loss. The global batch, N ranks x K micro-batches x B rows, is drawn once, alike on every rank; rank r
    computes micro-batch k on rows part * B, part = k N + r, with loss / K, and the ranks average. With
    `par`, its workers share each micro-batch's rows."""
    x, y = data.get_batch("train", world.size * K * B, T, rng)  # (N K B, T), (N K B, T)
    for d in dropout_rngs:
        d.next_step()
    for p in params:  # (model.zero_grad() would walk the module tree every step)
        p.grad = None
    total = 0.0
    for k in range(K):
        part = k * world.size + world.rank
        for d in dropout_rngs:
            d.use_part(part)
        rows = slice(part * B, (part + 1) * B)
        if par is not None:
            total += par.backward(x[rows], y[rows], scale=1 / K)
            continue
        loss = F.cross_entropy(model(x[rows]), y[rows])
        (loss / K if K > 1 else loss).backward()  # gradients of the micro-batches add up
        total += loss.item()
    world.average_gradients(params)
    return world.mean(total / K)


def _data_and_model(cfg: TrainConfig, ckpt, ranks: int) -> tuple[TextData, GPT]:
    """The run's text, tokenized, and the model to train, once the memory a step needs is known to fit."""
    data = TextData.from_file(cfg.data, ckpt.state["tokenizer"] if ckpt else cfg.tokenizer, cfg.val_fraction)
    planned = ckpt.config if ckpt else None if cfg.init_from else dataclasses.replace(cfg.model, vocab_size=data.vocab_size)
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


_ROWS_PER_WORKER, _MAX_WORKERS = 4, 8  # the default --workers: rows of the batch each, and processes at most


def _workers(cfg: TrainConfig, dropout: float, ranks: int) -> int:
    """How many processes each batch is split over: --workers (at most one per row of --batch-size: the summary
    says so), else one per core this rank may use (at most one per 4 rows, and 8), unless dropout is on (workers
    cannot draw the masks one process would) or the system is not POSIX."""
    if cfg.workers is not None:
        if cfg.workers > 1 and dropout > 0:
            raise UsageError(f"--workers {cfg.workers} splits each batch over processes, which cannot draw the "
                             f"dropout masks of one process: give --dropout 0, or --workers 1 (dropout is {dropout:g})")
        return min(cfg.workers, cfg.batch_size)
    if dropout > 0 or os.name != "posix":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # a worker's step has a fixed cost (its Python, its share of the gradient sum): give each 4 rows or more
    return max(1, min(cores // ranks, cfg.batch_size // _ROWS_PER_WORKER, _MAX_WORKERS))


def _say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)  # stderr, above any progress bar


def _summary(cfg: TrainConfig, data: TextData, model: GPT, it: int, ckpt, world: World, workers: int) -> None:
    """The start-up lines: data, model, batch and schedule, and where the run starts from."""
    c, tok = model.config, data.tokenizer
    source = "shakespeare (shipped Tiny Shakespeare)" if cfg.data == SHAKESPEARE else cfg.data
    _say(f"data: {source}: {len(data.train):,} train + {len(data.val):,} val tokens, "
         f"{cfg.tokenizer} tokenizer, vocabulary {tok.n_vocab:,}")
    _say(f"model: {c.n_layer} layers, {c.n_head} heads, n_embd {c.n_embd}, block size {c.block_size}, "
         f"dropout {c.dropout:g}{'' if c.bias else ', no bias'}: {model.num_parameters():,} parameters, "
         f"{model.transformer.wte.weight.dtype} on the CPU (NumPy), engine {'fast' if fast.is_enabled() else 'math'}")
    rows = world.size * cfg.grad_accum * cfg.batch_size
    split = (f" ({world.size} ranks x {cfg.grad_accum} micro-batches x {cfg.batch_size})"
             if rows != cfg.batch_size else "")
    after = f", then {cfg.min_lr:g}" if cfg.decay_iters < cfg.max_iters else ""
    _say(f"batch: {rows}{split} x {c.block_size} = {rows * c.block_size:,} tokens per iteration; "
         f"{cfg.max_iters} iterations, lr {cfg.lr:g} -> {cfg.min_lr:g} (warmup {cfg.warmup}, decay until "
         f"{cfg.decay_iters}{after})")
    if ckpt is not None:
        saved = TrainConfig.from_dict(ckpt.state["config"])
        note = global_batch_note((ckpt.state.get("ranks", 1), saved.grad_accum, saved.batch_size),
                                 (world.size, cfg.grad_accum, cfg.batch_size))
        if note is not None:
            _say(note)
    if cfg.workers is not None and cfg.workers > workers:
        _say(f"workers: --workers {cfg.workers} is more than the {workers} rows of a batch (--batch-size {cfg.batch_size}): "
             f"each batch split over {workers} processes, one row each")
    elif workers > 1:
        _say(f"workers: each batch split over {workers} processes (--workers 1: one process)")
    if ckpt is not None:
        if ckpt.note:
            _say(f"note: {ckpt.note}")
        _say(f"resuming from iter {it} ({ckpt.path})")
    elif cfg.init_from is not None:
        _say(f"fine-tuning {cfg.init_from}")
    _say(f"run: {cfg.out}")


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
# the run folder


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
    saved = TrainConfig.from_dict(ckpt.state["config"])
    changed = [f"{flag(k)}: the run has {getattr(saved, k)!r}, now {getattr(cfg, k)!r}"
               for k in _FROZEN if getattr(cfg, k) != getattr(saved, k)]
    changed += [f"{flag(k)}: the run has {getattr(saved.model, k)!r}, now {getattr(cfg.model, k)!r}"
                for k in _FROZEN_MODEL if getattr(cfg.model, k) != getattr(saved.model, k)]
    if changed:
        raise UsageError(f"cannot resume the run in {cfg.out} with a different model, data split or seed: "
                         + "; ".join(changed))
