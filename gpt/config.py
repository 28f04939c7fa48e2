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
    qkv_bias            bias of the fused q, k, v projection c_attn; None means the same as `bias` (read
                        it through `c_attn_bias`). False removes that one bias and keeps every other
                        (the "LLMs from scratch" GPT-2); True keeps it even when bias=False.

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

`GPTConfig.from_dict` also reads the spellings of two GPT tutorials (table in `ALIASES`); `to_dict`
writes ours:

    ours         "LLMs from scratch"   course style
    block_size   context_length        max_len
    n_embd       emb_dim               d_model
    n_head       n_heads               n_heads
    n_layer      n_layers              n_layers
    dropout      drop_rate             dropout
    n_inner                            d_ff
    qkv_bias     qkv_bias
    tie_weights                        tie_weights

    GPTConfig.from_dict({"vocab_size": 50257, "context_length": 1024, "emb_dim": 768, "n_heads": 12,
                         "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False})
    # 124,412,160 parameters (GPT-2 less 12 x 2,304 c_attn biases); 163,009,536 with tie_weights=False
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

__all__ = ["GPTConfig", "PRESETS", "ALIASES", "count_parameters", "check_field_names"]

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

# Other spellings of our fields that from_dict accepts: "LLMs from scratch" and the course style.
ALIASES: dict[str, tuple[str, ...]] = {
    "block_size": ("context_length", "max_len"),
    "n_layer": ("n_layers",),
    "n_head": ("n_heads",),
    "n_embd": ("emb_dim", "d_model"),
    "dropout": ("drop_rate",),
    "n_inner": ("d_ff",),
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
    qkv_bias: bool | None = None

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
        if self.qkv_bias is not None and not isinstance(self.qkv_bias, bool):
            raise ValueError(f"GPTConfig.qkv_bias must be a bool, or None for the same as bias, got {self.qkv_bias!r}")

    @property
    def d_ff(self) -> int:
        """MLP hidden width: `n_inner`, or 4 * n_embd when `n_inner` is None."""
        return 4 * self.n_embd if self.n_inner is None else self.n_inner

    @property
    def c_attn_bias(self) -> bool:
        """Whether c_attn (the fused q, k, v projection) has a bias: `qkv_bias`, or `bias` when it is None."""
        return self.bias if self.qkv_bias is None else self.qkv_bias

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
        """Build from `to_dict()` output, or from a tutorial's dict (its spellings are in `ALIASES`).

        Missing fields take their defaults. An unknown key, or two spellings of one field (n_embd and
        emb_dim), raise ValueError naming them and the accepted spellings.
        """
        if not isinstance(d, dict):
            raise TypeError(f"GPTConfig.from_dict expects a dict of fields, got {type(d).__name__}")
        field_of = {name: name for name in _FIELDS}
        field_of.update((alias, name) for name, aliases in ALIASES.items() for alias in aliases)
        unknown = sorted(str(k) for k in d if k not in field_of)
        if unknown:
            raise ValueError(f"unknown GPTConfig.from_dict key{'s' * (len(unknown) > 1)}: {', '.join(unknown)}; "
                             f"accepted keys: {_accepted_spellings()}")
        spellings: dict[str, list[str]] = {}
        for key in d:
            spellings.setdefault(field_of[key], []).append(key)
        clashes = [f"{', '.join(keys[:-1])} and {keys[-1]} {'both' if len(keys) == 2 else 'all'} spell {name}"
                   for name, keys in spellings.items() if len(keys) > 1]
        if clashes:
            raise ValueError(f"GPTConfig.from_dict got more than one spelling of a field: {'; '.join(clashes)}; "
                             f"give each field once (accepted keys: {_accepted_spellings()})")
        return cls(**{field_of[key]: value for key, value in d.items()})


def count_parameters(config: GPTConfig) -> dict[str, int]:
    """Parameter count of the model `config` describes, from the formula alone.

    Keys: "wte", "wpe", one block's parts "block.ln_1", "block.attn.c_attn", "block.attn.c_proj",
    "block.ln_2", "block.mlp.c_fc", "block.mlp.c_proj", their sum "block", all blocks "blocks"
    (n_layer * block), "ln_f", "lm_head" (0 when tied: shared with wte) and "total".
    With C = n_embd, F = d_ff, b = 1 if bias else 0, q = 1 if c_attn has a bias (qkv_bias) else 0,
    a block has 4C^2 + 2CF + 2C + b(4C + F) + 3qC.
    """
    C, F, V, T = config.n_embd, config.d_ff, config.vocab_size, config.block_size
    b = 1 if config.bias else 0

    def linear(n_in: int, n_out: int, bias: int = b) -> int:
        return n_in * n_out + bias * n_out  # weight (in, out) + bias (out,)

    layer_norm = C + b * C  # weight (C,) + bias (C,)
    counts = {
        "wte": V * C,
        "wpe": T * C,
        "block.ln_1": layer_norm,
        "block.attn.c_attn": linear(C, 3 * C, 1 if config.c_attn_bias else 0),  # fused q, k, v
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


def _accepted_spellings() -> str:
    """Every field, with its other spellings: "block_size (or context_length, max_len), ..."."""
    return ", ".join(f"{name} (or {', '.join(ALIASES[name])})" if name in ALIASES else name for name in _FIELDS)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0:
        raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
    return int(value)


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"GPTConfig.{name} must be a real number, got {value!r}")
    return float(value)
