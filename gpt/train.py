"""Train a GPT on a text: nanoGPT's loop on tinygrad_lite.

    cfg = TrainConfig(data="shakespeare", out="out/shakespeare", max_iters=2000)
    metrics = train(cfg)      # {"iters", "train_loss", "val_loss", "seconds", "tokens_per_second", ...}

`train()` reads top to bottom: the set-up, the loop, the end. Each iteration sets the learning rate
(linear warmup, then cosine decay to ``min_lr``: tinygrad_lite.optim.cosine_with_warmup), draws a
(B, T) batch, computes the cross-entropy loss and its gradient, clips the gradient norm and takes an
AdamW step. Weight decay applies to the matrices (Linear weights and embeddings: every param with
ndim >= 2), not to biases and LayerNorm params. The losses are evaluated (mean over ``eval_iters``
batches of each split, dropout off, from a generator of their own, so each evaluation sees the same
batches) before the first step, every ``eval_interval`` iterations and at the end; each evaluation
after the first saves a checkpoint of the whole run (the model, the optimizer, and `Progress`:
state.json's iter, losses, evals, best, seconds and the generators' states, with the config, the
tokenizer, the text's identity and the ranks). metrics.json is written at the end.

Where things are handled, in one sentence: MPI ranks, worker processes, gradient accumulation and
dropout's masks all sit behind the one call ``step.forward_backward(x, y)`` (`ParallelStep`,
gpt/distributed.py), and Ctrl-C and SIGTERM wait for the end of the step in ``stops.deferred()``
(gpt/interrupts.py) and are answered by `_save_on_stop` below, which saves the iteration the run has
reached. The rest: the run folder's lock (gpt/run_lock.py) is held by `_locked` for the whole run;
resuming, the data and the model are gpt/train_setup.py's; checkpoints are written by `_save`
(gpt/checkpoint.py), after the run log's lines (gpt/runlog.py); the generators and the states a
checkpoint records are gpt/randomness.py's; evaluation is `evaluate`.

``resume=True`` continues the run in ``out`` and reproduces the losses an uninterrupted run would
have given: the model, the optimizer's moments, the iteration (hence the learning rate) and every
generator are restored; another text than the run's is refused unless ``allow_data_change``. A
non-finite loss, gradient norm or evaluation stops the run with `RunFailed` before the optimizer
step, and saves nothing: the last checkpoint is the last good one.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import tinygrad_lite.functional as F
from tinygrad_lite import no_grad
from tinygrad_lite.optim import AdamW, clip_grad_norm_
from tinygrad_lite.parallel import DataParallel

from . import checkpoint
from .data import TextData
from .distributed import ParallelStep, World, worker_count
from .errors import RunFailed, Terminated
from .files import atomic_write
from .interrupts import CtrlC
from .model import GPT
from .randomness import RunGenerators
from .run_lock import RunLock
from .runlog import RunLog
from .train_config import TrainConfig
from .train_setup import checkpoint_to_resume, data_and_model, load_run, resume, say, summary

__all__ = ["TrainConfig", "train", "evaluate", "param_groups", "load_run", "METRICS_FILE"]

METRICS_FILE = "metrics.json"
RESUME_HINT = "python -m gpt train --resume --out {out}"


def train(cfg: TrainConfig, resume_from: checkpoint.Checkpoint | None = None) -> dict[str, Any]:
    """Run (or, with ``cfg.resume``, continue) training; return the metrics also written to metrics.json.

    ``resume_from``: the run's checkpoint when the caller has already loaded it (``load_run(cfg.out)``). The run
    folder is locked while the run lasts: a second run on it is refused, naming the first."""
    world = World.from_environment()  # one rank, or mpiexec's N: rank 0 alone reads and writes the run folder
    with _locked(cfg, world):
        started = time.perf_counter()
        # the set-up: the run to resume (or a new one), the data, the model, the optimizer, the generators
        ckpt = checkpoint_to_resume(cfg, world, resume_from)
        data, model = world.together(lambda: data_and_model(cfg, ckpt, world.size))  # each rank reads the text
        cfg = dataclasses.replace(cfg, model=model.config)  # the model as built: what the checkpoints record
        optimizer = AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        generators = RunGenerators(model, cfg.seed, parts=world.size * cfg.grad_accum)  # batches, dropout
        if ckpt is not None:
            resume(cfg, ckpt, data, optimizer, generators, world)  # the same text; moments and generators as saved
        progress = Progress.start(ckpt, generators)
        workers = worker_count(cfg.workers, cfg.batch_size, model.config.dropout, world.size)
        if world.is_main:
            summary(cfg, data, model, progress.it, ckpt, world, workers)
        log = RunLog(cfg.out if world.is_main else None, progress.saved_at)  # cut back to the checkpoint's iteration
        run = _Run(cfg, world, data, model, optimizer, log, started)
        T, params, max_norm = model.config.block_size, model.parameters(), cfg.grad_clip or math.inf  # inf: no clip
        meter = _Meter(cfg, world, progress.it)  # tokens per second, on the progress bar
        try:
            with (ParallelStep(model, world, cfg.batch_size, cfg.grad_accum, workers, generators.dropout.values(),
                               required=cfg.workers is not None) as step,
                  CtrlC(always=world.size > 1) as stops, no_overflow_warnings()):
                if step.note:
                    run.say(step.note)
                tokens = step.rows * T  # per step, all ranks together
                _evaluate_if_due(run, progress, step, stops)  # at iteration 0, or the one a stop cut short
                while progress.it < cfg.max_iters:  # the loop
                    with stops.deferred(world):  # Ctrl-C and SIGTERM land after the step, on every rank
                        t0 = time.perf_counter()
                        lr = _set_lr(optimizer, cfg.lr_at(progress.it))
                        x, y = data.get_batch("train", step.rows, T, generators.batches)  # alike on every rank
                        loss = step.forward_backward(x, y)  # the mean loss; every .grad holds its gradient
                        norm = clip_grad_norm_(params, max_norm)  # the norm before clipping
                        _check_finite(run, progress, loss, norm, lr)  # before the step: the weights are intact
                        progress.stepping = True
                        optimizer.step()
                        progress.record_step(loss, generators)
                        seconds = meter.step_done(t0, loss, lr, tokens)  # and the progress bar's tokens/s
                        log.step(lr, norm, seconds, tokens)
                    if progress.it % cfg.eval_interval == 0 and progress.it < cfg.max_iters:
                        _evaluate_and_save(run, progress, cfg.eval_iters, step, stops)
                meter.close()
                if progress.finished_and_saved():  # a finished run resumed: nothing new to evaluate
                    last = progress.evals[-1]
                else:  # the last evaluation always runs
                    last = _evaluate_and_save(run, progress, cfg.final_eval_iters or cfg.eval_iters, step, stops)
        except (KeyboardInterrupt, BrokenPipeError) as stop:  # Ctrl-C, SIGTERM (Terminated), the log's reader left
            meter.close()
            _save_on_stop(run, progress, stop)
            raise
        finally:
            meter.close()
        metrics = _metrics(run, progress, last, step, meter)
        world.on_main(lambda: _write_metrics(Path(cfg.out) / METRICS_FILE, metrics, progress.saved_at))
        return metrics


# ------------------------------------------------------------------------------------------------
# what the loop keeps and shares


@dataclass
class Progress:
    """Where the run is: what its checkpoints record of it (state.json), and what a stop must know."""
    it: int = 0  # optimizer steps taken
    losses: list[float] = field(default_factory=list)  # the training loss of each step
    evals: list[dict] = field(default_factory=list)  # {"iter", "train_loss", "val_loss"} of each evaluation
    best: dict | None = None  # {"iter", "val_loss"} of the best saved checkpoint (--save-best)
    seconds: float = 0.0  # the run's time in the processes before this one
    saved_at: int | None = None  # the iteration of the checkpoint latest.json names; None: none yet
    generators: dict = field(default_factory=dict)  # their states at `it`: what a checkpoint of `it` records
    stepping: bool = False  # in optimizer.step(): the parameters may be half updated, so a stop saves nothing

    @classmethod
    def start(cls, ckpt: checkpoint.Checkpoint | None, generators: RunGenerators) -> "Progress":
        """A new run's progress, or that of the run `ckpt` saved."""
        if ckpt is None:
            return cls(generators=generators.state())
        s = ckpt.state
        return cls(it=s["iter"], losses=s["losses"], evals=s["evals"], best=s["best"], seconds=s["seconds"],
                   saved_at=s["iter"], generators=generators.state())

    def record_step(self, loss: float, generators: RunGenerators) -> None:
        """A step is taken: its loss, the new iteration, and the generators there. Only then does it count."""
        self.losses.append(loss)
        self.it += 1
        self.generators = generators.state()  # (a stop before this line leaves `stepping` set: nothing saved)
        self.stepping = False

    def record_best(self, result: dict[str, float]) -> bool:
        """With --save-best: is the evaluation `result` at `it` the best so far (then it is recorded as such)?"""
        if self.best is None or result["val_loss"] < self.best["val_loss"]:
            self.best = {"iter": self.it, "val_loss": result["val_loss"]}
            return True
        return False

    def finished_and_saved(self) -> bool:
        """The last evaluation and checkpoint are of this iteration already (a finished run resumed)."""
        return bool(self.evals) and self.evals[-1]["iter"] == self.it and self.saved_at == self.it


@dataclass(frozen=True)
class _Run:
    """What the loop's helpers read and never replace."""
    cfg: TrainConfig  # with the model's GPTConfig as built
    world: World
    data: TextData
    model: GPT
    optimizer: AdamW
    log: RunLog  # RUN/log.jsonl (rank 0's; the other ranks' writes nothing)
    started: float  # time.perf_counter() when this process started the run

    def say(self, message: str) -> None:
        """A line on stderr from rank 0; the other ranks print nothing but errors."""
        if self.world.is_main:
            say(message)


class _Meter:
    """The steps this process takes, their time and tokens per second, shown on a progress bar on stderr (rank 0,
    when it is a terminal and cfg.progress)."""

    def __init__(self, cfg: TrainConfig, world: World, it: int) -> None:
        self.steps, self.seconds, self.tokens = 0, 0.0, 0
        self.bar = tqdm(total=cfg.max_iters, initial=it, disable=None if cfg.progress and world.is_main else True,
                        desc="train", dynamic_ncols=True, file=sys.stderr)

    def step_done(self, t0: float, loss: float, lr: float, tokens: int) -> float:
        """A step that began at time.perf_counter() t0 is done; its seconds."""
        seconds = time.perf_counter() - t0
        self.steps, self.seconds, self.tokens = self.steps + 1, self.seconds + seconds, self.tokens + tokens
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{self.tokens_per_second():,.0f}",
                             refresh=False)
        self.bar.update(1)
        return seconds

    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.steps else 0.0

    def close(self) -> None:
        self.bar.close()


@contextmanager
def _locked(cfg: TrainConfig, world: World):
    """The run folder's lock (gpt/run_lock.py) for the block: rank 0, the one rank that writes the folder, holds it.
    A folder another run holds is a UsageError naming its PID."""
    lock = RunLock(cfg.out)
    note = world.on_main(lambda: lock.acquire(create=not cfg.resume))
    try:
        if note and world.is_main:
            say(f"note: {note}")
        yield
    finally:
        lock.release()


@contextmanager
def no_overflow_warnings():
    """Overflow and nan end the run with an error (checked each step): no NumPy warnings on the way, in any thread."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"(overflow|invalid value|divide by zero) encountered", RuntimeWarning)
        yield


def param_groups(model: GPT, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: matrices (ndim >= 2: Linear weights, embeddings) decay; biases and LayerNorms don't."""
    params = model.parameters()  # the tied wte / lm_head matrix once
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def _set_lr(optimizer: AdamW, lr: float) -> float:
    """Every param group's learning rate := lr (the schedule's, TrainConfig.lr_at); returns it."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


# ------------------------------------------------------------------------------------------------
# evaluation


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


def _evaluate_if_due(run: _Run, progress: Progress, step: ParallelStep, stops: CtrlC) -> None:
    """Before the first step of this process: the loss at initialisation (iteration 0, nothing to save), or the
    evaluation and checkpoint a stop cut short (at an evaluation's iteration, not evaluated yet)."""
    it, cfg = progress.it, run.cfg
    if it >= cfg.max_iters or (progress.evals and progress.evals[-1]["iter"] == it):
        return
    if it == 0:
        _evaluate(run, progress, cfg.eval_iters, step, stops)
    elif it % cfg.eval_interval == 0:
        _evaluate_and_save(run, progress, cfg.eval_iters, step, stops)


def _evaluate(run: _Run, progress: Progress, n_batches: int, step: ParallelStep, stops: CtrlC) -> dict[str, float]:
    """Evaluate at `progress.it` on batches of the global batch's size; record it in the progress and the log, and
    say it. RunFailed when a loss is not finite, or the ranks' replicas differ."""
    world, cfg = run.world, run.cfg
    world.check_replicas(step.params)  # every rank must still hold the same model
    with stops.deferred(world) if world.size > 1 else nullcontext():  # the ranks agree after it, as after a step
        losses = evaluate(run.model, run.data, step.rows, cfg.model.block_size, n_batches, cfg.seed,
                          cfg.progress and world.is_main, world, step.data_parallel)
    result = {"iter": progress.it, **losses}
    bad = [k for k in ("train_loss", "val_loss") if not math.isfinite(result[k])]
    if bad:
        raise _diverged(run, progress, progress.it, f"the evaluation gives {bad[0].replace('_', ' ')} {result[bad[0]]}")
    progress.evals.append(result)
    run.log.evaluation(result, run.model)  # with the last step's lr, gradient norms and tokens/s
    run.say(f"iter {progress.it}: train loss {result['train_loss']:.4f}, val loss {result['val_loss']:.4f}")
    return result


def _evaluate_and_save(run: _Run, progress: Progress, n_batches: int, step: ParallelStep,
                       stops: CtrlC) -> dict[str, float]:
    """An evaluation, then the checkpoint of this iteration (also best.json's with --save-best, when best)."""
    result = _evaluate(run, progress, n_batches, step, stops)
    _save(run, progress, best=run.cfg.save_best and progress.record_best(result))
    return result


# ------------------------------------------------------------------------------------------------
# checkpoints, stops and the end


def _save(run: _Run, progress: Progress, best: bool = False, alone: bool = False) -> None:
    """The checkpoint of `progress.it` (gpt/checkpoint.py), written by rank 0 once the log's lines up to it are on
    disk; an error reaches every rank, unless `alone` (after a stop the other ranks may be anywhere)."""
    state = {"iter": progress.it, "config": run.cfg.to_dict(), "tokenizer": run.data.tokenizer_spec(),
             "data": run.data.identity, "losses": progress.losses, "evals": progress.evals, "best": progress.best,
             "seconds": progress.seconds + time.perf_counter() - run.started, "rng": progress.generators,
             "ranks": run.world.size}

    def write() -> None:
        run.log.flush()  # the log's lines up to `it` are on disk before the checkpoint that covers them
        checkpoint.save(Path(run.cfg.out), run.model, run.optimizer, state, best=best)
    if not alone:
        run.world.on_main(write)
    elif run.world.is_main:  # no collective
        write()
    progress.saved_at = progress.it


def _check_finite(run: _Run, progress: Progress, loss: float, norm: float, lr: float) -> None:
    """RunFailed (the run diverged) unless the step's loss and gradient norm are finite."""
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise _diverged(run, progress, progress.it + 1, f"loss is {loss}, gradient norm {norm} (lr {lr:.3g})")


def _diverged(run: _Run, progress: Progress, at: int, what: str) -> RunFailed:
    """The error that ends a run whose loss is no longer finite; the checkpoint saved before is the last good one."""
    last = (f"the last good checkpoint (iteration {progress.saved_at}) is in {run.cfg.out}"
            if progress.saved_at is not None else "no checkpoint was saved")
    return run.world.alike(RunFailed(f"training diverged at iteration {at}: {what}; {last} (try a lower --lr or "
                                     f"more --warmup-iters)"))  # every rank sees the same mean loss


def _save_on_stop(run: _Run, progress: Progress, stop: BaseException) -> None:
    """Ctrl-C, SIGTERM or a closed log pipe: save the iteration the run has reached (unless its checkpoint is
    saved) and say how to continue. A step cut short counts for nothing: `progress` is still at the iteration
    before it, generators included, so the resumed run draws its batch again."""
    how = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
    if progress.stepping:  # only when KeyboardInterrupt is raised without SIGINT (another thread, a test)
        where = f"iteration {progress.saved_at} in {run.cfg.out}" if progress.saved_at is not None else "none"
        run.say(f"{how} inside an optimizer step: nothing saved (the last checkpoint: {where})")
        return
    if progress.saved_at != progress.it:  # best: a stop between an evaluation and its checkpoint
        best = progress.best is not None and progress.best["iter"] == progress.it
        _save(run, progress, best=run.cfg.save_best and best, alone=True)
    if not isinstance(stop, BrokenPipeError):  # (no one reads stderr any more)
        run.say(f"{how}: iteration {progress.it} saved in {run.cfg.out}; continue with: "
                f"{RESUME_HINT.format(out=run.cfg.out)}")


def _metrics(run: _Run, progress: Progress, last: dict, step: ParallelStep, meter: _Meter) -> dict[str, Any]:
    """What train() returns and metrics.json holds."""
    done = meter.steps
    return {"iters": progress.it, "train_loss": last["train_loss"], "val_loss": last["val_loss"],
            "seconds": progress.seconds + time.perf_counter() - run.started,
            "tokens_per_second": meter.tokens_per_second(), "tokens_per_iter": step.rows * run.cfg.model.block_size,
            "num_parameters": run.model.num_parameters(), "best": progress.best, "evals": progress.evals,
            "losses": progress.losses, "config": run.cfg.to_dict(), "ranks": run.world.size, "workers": step.workers,
            "allreduce_seconds_per_iter": run.world.allreduce_seconds / done if done else 0.0}


def _write_metrics(path: Path, metrics: dict, saved_at: int) -> None:
    """metrics.json, atomically; a failed write is RunFailed naming it (the last checkpoint is complete)."""
    text = json.dumps(metrics, indent=1)
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    except OSError as e:
        raise RunFailed(f"cannot write {path}: {e.strerror or e}; the run's checkpoint of iteration {saved_at} in "
                        f"{path.parent} is complete") from None
