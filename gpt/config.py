"""GPT-2 model configuration: sizes, presets, Hugging Face `config.json` conversion, parameter count.

`GPTConfig` holds the hyperparameters of a GPT-2 style model (names follow nanoGPT / GPT-2); each
field is validated here, once. Hugging Face's config.json form is in gpt/hf.py.

    vocab_size      V   number of token ids
    block_size      T   longest sequence (number of learned positions)
    n_layer         L   transformer blocks
    n_head          H   attention heads per block
    n_embd          C   residual stream width (C % H == 0; head size C // H)
    n_inner         F   MLP hidden width; None means 4 * C (read it through `d_ff`)
    dropout             one probability for embedding, attention and residual dropout
    bias                Linear and LayerNorm biases (False removes all of them, as nanoGPT does)
    tie_weights         lm_head shares the token-embedding matrix wte
    layer_norm_eps      LayerNorm epsilon

Presets (`GPTConfig.from_preset(name, **overrides)`, table in `PRESETS`):

    name         V      T     L   H    C     F      params (tied)
    gpt2         50257  1024  12  12   768   3072     124,439,808
    gpt2-16l     50257  1024  16  12   768   3072     152,791,296   (GPT-2 small, 16 layers)
    gpt2-medium  50257  1024  24  16  1024   4096     354,823,168
    gpt2-large   50257  1024  36  20  1280   5120     774,030,080
    gpt2-xl      50257  1024  48  25  1600   6400   1,557,611,200
    tiny           256   256   4   4   128    512         858,880
    small         1000   256   6   8   256   1024       5,060,608
    medium        5000   512  12   8   512   2048      40,651,776
    base         10000  1024  12  12   768   3072      93,522,432

The block sizes of the small presets are our choice: 256 for `tiny`/`small` (quick CPU runs on
character-level text), 512 for `medium`, and GPT-2's own 1024 for `base`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

__all__ = ["GPTConfig", "PRESETS", "count_parameters", "check_field_names"]

_GPT2 = dict(vocab_size=50257, block_size=1024)

PRESETS: dict[str, dict[str, Any]] = {
    "gpt2": dict(_GPT2, n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(_GPT2, n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(_GPT2, n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(_GPT2, n_layer=48, n_head=25, n_embd=1600),
    "gpt2-16l": dict(_GPT2, n_layer=16, n_head=12, n_embd=768),
    # small presets for training from scratch; MLP width is the default 4 * n_embd
    "tiny": dict(vocab_size=256, block_size=256, n_layer=4, n_head=4, n_embd=128),
    "small": dict(vocab_size=1000, block_size=256, n_layer=6, n_head=8, n_embd=256),
    "medium": dict(vocab_size=5000, block_size=512, n_layer=12, n_head=8, n_embd=512),
    "base": dict(vocab_size=10000, block_size=1024, n_layer=12, n_head=12, n_embd=768),
}

@dataclass
class GPTConfig:
    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True
    layer_norm_eps: float = 1e-5
    n_inner: int | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            setattr(self, name, _positive_int(name, getattr(self, name)))
        if self.n_inner is not None:
            self.n_inner = _positive_int("n_inner", self.n_inner)
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"GPTConfig.n_embd must be divisible by n_head, got n_embd={self.n_embd}, "
                f"n_head={self.n_head} (remainder {self.n_embd % self.n_head})"
            )
        self.dropout = _real("dropout", self.dropout)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must satisfy 0 <= dropout < 1, got {self.dropout!r}")
        self.layer_norm_eps = _real("layer_norm_eps", self.layer_norm_eps)
        if not (self.layer_norm_eps > 0.0 and math.isfinite(self.layer_norm_eps)):
            raise ValueError(
                f"GPTConfig.layer_norm_eps must be a finite number > 0, got {self.layer_norm_eps!r}"
            )
        for name in ("bias", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GPTConfig.{name} must be a bool, got {getattr(self, name)!r}")

    @property
    def d_ff(self) -> int:
        """MLP hidden width: `n_inner`, or 4 * n_embd when `n_inner` is None."""
        return 4 * self.n_embd if self.n_inner is None else self.n_inner

    @property
    def head_dim(self) -> int:
        """Size of one attention head: n_embd // n_head."""
        return self.n_embd // self.n_head

    # ---- presets ----

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """The preset `name` (see `PRESETS`), with any field replaced by `overrides`."""
        if name not in PRESETS:
            raise ValueError(f"unknown GPTConfig preset {name!r}; known presets: {', '.join(PRESETS)}")
        check_field_names(overrides, f"override for preset {name!r}")
        return cls(**{**PRESETS[name], **overrides})

    # ---- our own JSON form ----

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-serialisable dict (inverse of `from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Build from `to_dict()` output; missing fields take their defaults, unknown ones raise."""
        check_field_names(d, "GPTConfig.from_dict key")
        return cls(**d)


def count_parameters(config: GPTConfig) -> dict[str, int]:
    """Parameter count of the model `config` describes, from the formula alone.

    Keys: "wte", "wpe", one block's parts "block.ln_1", "block.attn.c_attn", "block.attn.c_proj",
    "block.ln_2", "block.mlp.c_fc", "block.mlp.c_proj", their sum "block", all blocks "blocks"
    (n_layer * block), "ln_f", "lm_head" (0 when tied: shared with wte) and "total".
    With C = n_embd, F = d_ff, b = 1 if bias else 0, a block has 4C^2 + 2CF + 2C + b(7C + F).
    """
    C, F, V, T = config.n_embd, config.d_ff, config.vocab_size, config.block_size
    b = 1 if config.bias else 0

    def linear(n_in: int, n_out: int) -> int:
        return n_in * n_out + b * n_out  # weight (in, out) + bias (out,)

    layer_norm = C + b * C  # weight (C,) + bias (C,)
    counts = {
        "wte": V * C,
        "wpe": T * C,
        "block.ln_1": layer_norm,
        "block.attn.c_attn": linear(C, 3 * C),  # fused q, k, v
        "block.attn.c_proj": linear(C, C),
        "block.ln_2": layer_norm,
        "block.mlp.c_fc": linear(C, F),
        "block.mlp.c_proj": linear(F, C),
    }
    counts["block"] = sum(v for k, v in counts.items() if k.startswith("block."))
    counts["blocks"] = config.n_layer * counts["block"]
    counts["ln_f"] = layer_norm
    counts["lm_head"] = 0 if config.tie_weights else V * C  # GPT-2's lm_head has no bias
    counts["total"] = counts["wte"] + counts["wpe"] + counts["blocks"] + counts["ln_f"] + counts["lm_head"]
    return counts


# ---- validation helpers ----

_FIELDS = tuple(f.name for f in dataclasses.fields(GPTConfig))


def check_field_names(d: dict[str, Any], what: str) -> None:
    unknown = sorted(set(d) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(unknown)}; GPTConfig fields are {', '.join(_FIELDS)}")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0:
        raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
    return int(value)


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"GPTConfig.{name} must be a real number, got {value!r}")
    return float(value)
