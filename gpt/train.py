"""Train a GPT on a text file: nanoGPT's loop on tinygrad_lite.

    cfg = TrainConfig(data="input.txt", out="out-shakespeare", max_iters=2000)
    metrics = train(cfg)      # {"iters", "train_loss", "val_loss", "seconds", "tokens_per_second", ...}

Each iteration: set the learning rate (linear warmup, then cosine decay to ``min_lr``), draw a random
(B, T) batch, forward, cross-entropy loss, backward, clip the gradient norm, AdamW step. Weight decay
applies to the matrices (Linear weights and embeddings: every param with ndim >= 2) and not to
biases and LayerNorm params. Every ``eval_interval`` iterations and at the end, the mean loss over
``eval_iters`` batches of each split is measured (dropout off) and a checkpoint is written.

The output folder holds, written atomically (into a temporary folder, then renamed into place with
``train_state.json`` last):

    config.json, model.safetensors    the model, Hugging Face layout (``model.save_pretrained``)
    optimizer.safetensors             AdamW moments; param groups and step counts in its metadata
    tokenizer_spec.json               ``tokenizer_spec`` of the tokenizer
    train_state.json                  iteration, TrainConfig, RNG states, losses, sha256 of the files
    metrics.json                      final summary (written when training finishes)

``resume=True`` continues from that folder and reproduces the losses an uninterrupted run would
have given: the model, optimizer moments, iteration (hence learning rate) and every RNG are restored.
Evaluation draws its batches from its own generator, seeded afresh at each evaluation, so it never
changes the training batches and each evaluation sees the same batches.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

import tinygrad_lite.functional as F
from gpt.files import atomic_write, file_mode
from gpt.config import GPTConfig
from gpt.data import TextData
from gpt.model import GPT
from tinygrad_lite import no_grad
from tinygrad_lite.optim import AdamW, clip_grad_norm_, cosine_with_warmup

__all__ = ["TrainConfig", "train", "evaluate", "param_groups", "load_train_state", "CHECKPOINT_FILES"]

STATE_FILE = "train_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
TOKENIZER_FILE = "tokenizer_spec.json"  # not tokenizer.json: that name is HF's tokenizer format
METRICS_FILE = "metrics.json"
CHECKPOINT_FILES = ("config.json", "model.safetensors", OPTIMIZER_FILE, TOKENIZER_FILE, STATE_FILE)

# fields that fix the model or the data it sees: a resumed run must keep them
_FROZEN_ON_RESUME = ("tokenizer", "val_fraction", "n_layer", "n_head", "n_embd", "block_size")


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults: nanoGPT's CPU run on character-level Shakespeare."""

    data: str = ""  # UTF-8 text file
    out: str = "out"  # output folder (checkpoint, metrics.json)
    tokenizer: str = "char"  # "char" or "gpt2"
    val_fraction: float = 0.1  # last fraction of the tokens held out for validation
    # model
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64  # context length T
    dropout: float = 0.0
    # optimisation
    batch_size: int = 12  # B
    max_iters: int = 2000
    lr: float = 1e-3  # peak learning rate, reached after warmup
    min_lr: float = 1e-4  # learning rate at the end of the cosine decay
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # iteration where the cosine reaches min_lr; None: max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    # evaluation and bookkeeping
    eval_interval: int = 250
    eval_iters: int = 20  # batches per split at each evaluation
    final_eval_iters: int | None = None  # batches per split at the last evaluation; None: eval_iters
    seed: int = 1337  # model init, batches, dropout
    resume: bool = False  # continue the run saved in `out`
    progress: bool = True  # tqdm progress bar on stderr
    checkpoint_blocks: bool = False  # activation checkpointing: rerun each block's forward in backward (less memory)

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "eval_interval", "eval_iters"):
            _check(name, getattr(self, name), int, lambda v: v >= 1, ">= 1")
        for name in ("max_iters", "warmup_iters"):
            _check(name, getattr(self, name), int, lambda v: v >= 0, ">= 0")
        for name in ("lr_decay_iters", "final_eval_iters"):
            if getattr(self, name) is not None:
                _check(name, getattr(self, name), int, lambda v: v >= 1, ">= 1 (or None)")
        for name in ("lr", "min_lr", "weight_decay", "grad_clip"):
            _check(name, getattr(self, name), float, lambda v: v >= 0.0, ">= 0")
        for name in ("beta1", "beta2", "dropout"):
            _check(name, getattr(self, name), float, lambda v: 0.0 <= v < 1.0, "in [0, 1)")
        _check("val_fraction", self.val_fraction, float, lambda v: 0.0 < v < 1.0, "in (0, 1)")
        _check("seed", self.seed, int, lambda v: v >= 0, ">= 0")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.tokenizer not in ("char", "gpt2"):
            raise ValueError(f"tokenizer must be 'char' or 'gpt2', got {self.tokenizer!r}")
        if self.warmup_iters > self.decay_iters:
            raise ValueError(f"warmup_iters ({self.warmup_iters}) must not exceed lr_decay_iters "
                             f"({self.decay_iters})")

    @property
    def decay_iters(self) -> int:
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters

    def lr_at(self, it: int) -> float:
        """Learning rate of iteration ``it`` (0-based): warmup, cosine to min_lr, then min_lr."""
        return cosine_with_warmup(it, self.lr, self.min_lr, self.warmup_iters, self.decay_iters)


def _check(name: str, value: Any, kind: type, ok, expected: str) -> None:
    good_type = (isinstance(value, (int, float)) if kind is float else isinstance(value, int))
    if isinstance(value, bool) or not good_type or not ok(value):
        raise ValueError(f"TrainConfig.{name} must be {'a number' if kind is float else 'an int'} {expected}, "
                         f"got {value!r}")


# ------------------------------------------------------------------------------------------------
# the training loop


def param_groups(model: GPT, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: matrices (ndim >= 2: Linear weights, embeddings) decay; biases and LayerNorms don't."""
    params = model.parameters()  # the tied wte / lm_head matrix once
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


@no_grad()
def evaluate(model: GPT, data: TextData, batch_size: int, block_size: int, iters: int, seed: int) -> dict[str, float]:
    """Mean loss over ``iters`` batches of each split, dropout off; batches from ``default_rng([seed, 2])``."""
    was_training = model.training
    model.eval()
    rng = np.random.default_rng([seed, 2])  # the same batches at every evaluation
    out = {}
    for split in ("train", "val"):
        total = 0.0
        for _ in range(iters):
            x, y = data.get_batch(split, batch_size, block_size, rng)
            total += F.cross_entropy(model(x), y).item()
        out[f"{split}_loss"] = total / iters
    model.train(was_training)
    return out


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or, with ``cfg.resume``, continue) training; return the metrics also written to metrics.json."""
    t_start = time.perf_counter()
    out = Path(cfg.out)
    state = load_train_state(out) if cfg.resume else None
    if state is not None:
        _check_resumable(cfg, TrainConfig(**state["config"]))
    tokenizer = state["tokenizer"] if state is not None else cfg.tokenizer
    data = TextData.from_file(cfg.data, tokenizer, cfg.val_fraction)
    data.check_block_size(cfg.block_size)

    model_config = GPTConfig(vocab_size=data.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer,
                             n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout)
    model = GPT(model_config, seed=cfg.seed, dtype=np.float32)
    model.checkpoint_blocks = cfg.checkpoint_blocks
    optimizer = AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    rng = np.random.default_rng(cfg.seed)  # training batches
    it, losses, evals, seconds = 0, [], [], 0.0
    if state is not None:
        _restore(out, state, model, optimizer, rng)
        it, losses, evals, seconds = state["iter"], state["losses"], state["evals"], state["seconds"]
        for group, wd in zip(optimizer.param_groups, (cfg.weight_decay, 0.0)):  # hyperparameters from cfg
            group.update(weight_decay=wd, betas=(cfg.beta1, cfg.beta2))
    out.mkdir(parents=True, exist_ok=True)

    def evaluate_and_save(n_batches: int) -> dict[str, float]:
        result = {"iter": it, **evaluate(model, data, cfg.batch_size, cfg.block_size, n_batches, cfg.seed)}
        evals.append(result)
        tqdm.write(f"iter {it}: train loss {result['train_loss']:.4f}, val loss {result['val_loss']:.4f}",
                   file=sys.stderr)
        train_state = {"iter": it, "config": dataclasses.asdict(cfg), "losses": losses, "evals": evals,
                       "seconds": seconds + time.perf_counter() - t_start, "rng": _rng_states(model, rng)}
        save_checkpoint(out, model, optimizer, data.tokenizer_spec(), train_state)
        return result

    model.train()
    params = model.parameters()
    tokens_per_iter = cfg.batch_size * cfg.block_size
    start_iter, train_seconds = it, 0.0
    bar = tqdm(total=cfg.max_iters, initial=it, disable=not cfg.progress, desc="train", dynamic_ncols=True)
    while it < cfg.max_iters:
        t0 = time.perf_counter()
        lr = cfg.lr_at(it)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = data.get_batch("train", cfg.batch_size, cfg.block_size, rng)  # (B, T), (B, T)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        if cfg.grad_clip > 0.0:
            clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"training diverged: loss is {losses[-1]} at iteration {it} (lr {lr:.3g}); "
                                     "try a lower lr or more warmup")
        it += 1
        train_seconds += time.perf_counter() - t0
        tok_s = (it - start_iter) * tokens_per_iter / train_seconds
        bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:,.0f}", refresh=False)
        bar.update(1)
        if it % cfg.eval_interval == 0 and it < cfg.max_iters:
            evaluate_and_save(cfg.eval_iters)
    bar.close()
    if it == start_iter and evals and evals[-1]["iter"] == it:
        last = evals[-1]  # resumed a finished run: nothing new to evaluate
    else:
        last = evaluate_and_save(cfg.final_eval_iters or cfg.eval_iters)  # the last evaluation always runs
    done = it - start_iter
    metrics = {"iters": it, "train_loss": last["train_loss"], "val_loss": last["val_loss"],
               "seconds": seconds + time.perf_counter() - t_start,
               "tokens_per_second": done * tokens_per_iter / train_seconds if done else 0.0,
               "tokens_per_iter": tokens_per_iter, "num_parameters": model.num_parameters(),
               "evals": evals, "losses": losses, "config": dataclasses.asdict(cfg)}
    atomic_write(out / METRICS_FILE, lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=1)))
    return metrics


def _check_resumable(cfg: TrainConfig, saved: TrainConfig) -> None:
    changed = [f"{k}: checkpoint {getattr(saved, k)!r}, now {getattr(cfg, k)!r}"
               for k in _FROZEN_ON_RESUME if getattr(cfg, k) != getattr(saved, k)]
    if changed:
        raise ValueError(f"cannot resume the run in {cfg.out!r} with a different model or data split: "
                         + "; ".join(changed))


# ------------------------------------------------------------------------------------------------
# RNG states (training batches, and dropout's generators if the model keeps any)


def _dropout_rngs(model: GPT) -> dict[str, np.random.Generator]:
    """name -> each distinct np.random.Generator a module of the model holds as ``rng``."""
    found, seen = {}, set()
    for name, module in model.named_modules():
        rng = getattr(module, "rng", None)
        if isinstance(rng, np.random.Generator) and id(rng) not in seen:
            seen.add(id(rng))
            found[name] = rng
    return found


def _rng_states(model: GPT, rng: np.random.Generator) -> dict[str, Any]:
    return {"batches": rng.bit_generator.state,
            "dropout": {name: g.bit_generator.state for name, g in _dropout_rngs(model).items()}}


def _set_rng_states(model: GPT, rng: np.random.Generator, states: dict[str, Any]) -> None:
    rng.bit_generator.state = states["batches"]
    own = _dropout_rngs(model)
    if set(own) != set(states["dropout"]):
        raise ValueError(f"checkpoint has dropout generators {sorted(states['dropout'])}, the model "
                         f"{sorted(own)}")
    for name, g in own.items():
        g.bit_generator.state = states["dropout"][name]


# ------------------------------------------------------------------------------------------------
# checkpoints


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_optimizer(optimizer: AdamW, path: str | os.PathLike) -> None:
    """Optimizer state as safetensors: arrays ``state.{i}.{key}``; groups and scalars as JSON metadata."""
    sd = optimizer.state_dict()
    arrays, scalars = {}, {}
    for i, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, np.ndarray):
                arrays[f"state.{i}.{k}"] = v
            else:
                scalars.setdefault(str(i), {})[k] = v
    save_file(arrays, path, metadata={"param_groups": json.dumps(sd["param_groups"]), "scalars": json.dumps(scalars)})


def load_optimizer(optimizer: AdamW, path: str | os.PathLike) -> None:
    """Inverse of ``save_optimizer``."""
    from safetensors import safe_open

    with safe_open(os.fspath(path), framework="numpy") as f:
        meta = f.metadata() or {}
    if "param_groups" not in meta or "scalars" not in meta:
        raise ValueError(f"{path} is not an optimizer checkpoint (no param_groups/scalars metadata)")
    groups = json.loads(meta["param_groups"])
    for g in groups:
        g["betas"] = tuple(g["betas"])
    state: dict[int, dict[str, Any]] = {int(i): dict(s) for i, s in json.loads(meta["scalars"]).items()}
    for key, arr in load_file(path).items():
        _, i, k = key.split(".", 2)
        state.setdefault(int(i), {})[k] = arr
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(out: Path, model: GPT, optimizer: AdamW, tokenizer_spec: dict, train_state: dict) -> None:
    """Write the whole checkpoint into ``out/.tmp-*``, then move each file into ``out``, state last.

    A failure while writing leaves the previous checkpoint untouched; ``train_state.json`` records the
    sha256 of the other files, so a checkpoint whose files come from different saves is detected.
    """
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out))
    try:
        model.save_pretrained(tmp)
        save_optimizer(optimizer, tmp / OPTIMIZER_FILE)
        (tmp / TOKENIZER_FILE).write_text(json.dumps(tokenizer_spec))
        names = sorted(p.name for p in tmp.iterdir())
        state = dict(train_state, files={name: _sha256(tmp / name) for name in names})
        (tmp / STATE_FILE).write_text(json.dumps(state))
        for name in names + [STATE_FILE]:
            os.chmod(tmp / name, file_mode())
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_train_state(out: str | os.PathLike) -> dict[str, Any]:
    """The training state saved in ``out`` plus its tokenizer spec, after checking the files belong together."""
    out = Path(out)
    path = out / STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"cannot resume: {path} does not exist (no checkpoint in {str(out)!r})")
    state = json.loads(path.read_text())
    for name, digest in state["files"].items():
        if not (out / name).exists() or _sha256(out / name) != digest:
            raise ValueError(f"checkpoint in {str(out)!r} is inconsistent: {name} is missing or was not written "
                             f"by the same save as {STATE_FILE}")
    state["tokenizer"] = json.loads((out / TOKENIZER_FILE).read_text())
    return state


def _restore(out: Path, state: dict, model: GPT, optimizer: AdamW, rng: np.random.Generator) -> None:
    saved = GPT.from_pretrained(out, dtype=np.float32)
    model.load_state_dict(saved.state_dict())
    load_optimizer(optimizer, out / OPTIMIZER_FILE)
    _set_rng_states(model, rng, state["rng"])
