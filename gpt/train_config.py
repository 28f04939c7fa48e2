"""TrainConfig: the settings of a training run, each named like its flag (``lr`` is ``--lr``), checked when made.

    cfg = TrainConfig(data="shakespeare", out="out/shakespeare", max_iters=2000)
    cfg.lr_at(it)          # the learning rate of iteration it: warmup, then cosine to min_lr
    cfg.to_dict()          # what a checkpoint records (state.json's config); TrainConfig.from_dict reads it back

A bad value is a UsageError naming the flag and what was expected.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import InitVar, dataclass, field
from typing import Any

from tinygrad_lite.optim import cosine_with_warmup

from .config import GPTConfig
from .data import SHAKESPEARE, data_source
from .errors import UsageError, flag

__all__ = ["TrainConfig"]


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
