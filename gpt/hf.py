"""Hugging Face GPT-2, both directions: a folder with `config.json` and `model.safetensors`.

    save_pretrained(model, path)              writes both files (each to a temp file, then renamed)
    load_pretrained(path, cls, dtype=None)    -> cls(config) with the weights, in eval mode
    config_to_hf(config) / config_from_hf(d)  GPTConfig <-> the dict of a GPT2Config config.json

The tensors are stored under GPT-2's names. Our parameter names are already GPT-2's, and our
Linear weights are (in, out) like GPT-2's Conv1D (c_attn, c_proj, c_fc), so no transposes are
needed. `lm_head.weight` is (V, C) like the token embedding, as in HF's `GPT2LMHeadModel`:
    - tied head: not stored (HF gpt2 files don't store it); accepted on load if equal to wte.
    - untied head: stored as `lm_head.weight`, and required on load.
On load, keys may carry the `transformer.` prefix (GPT2LMHeadModel) or not (GPT2Model, the original
`gpt2` upload), and the `h.{i}.attn.bias` / `h.{i}.attn.masked_bias` buffers (causal masks, not
parameters) are ignored.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from .config import GPTConfig, check_field_names
from .files import atomic_write

__all__ = ["save_pretrained", "load_pretrained", "config_to_hf", "config_from_hf", "CONFIG_NAME", "WEIGHTS_NAME"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PREFIX = "transformer."
_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")  # HF's causal-mask buffers

# Hugging Face GPT2Config options whose non-default value our model cannot reproduce.
_HF_UNSUPPORTED = {
    "scale_attn_weights": True,  # our attention always scales by 1/sqrt(head size)
    "scale_attn_by_inverse_layer_idx": False,
    "add_cross_attention": False,
}
# Activations equal to our tanh-approximated GELU.
_HF_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")


def config_to_hf(config: GPTConfig) -> dict[str, Any]:
    """The fields of a Hugging Face `GPT2Config` `config.json` describing this model.

    HF GPT-2 always has biases, so `bias=False` cannot be expressed and raises.
    """
    self = config
    if not self.bias:
        raise ValueError("GPTConfig.bias=False cannot be written as a Hugging Face GPT2Config (HF GPT-2 always "
                         "has Linear and LayerNorm biases); a training checkpoint (gpt.checkpoint) holds any GPTConfig")
    # GPT-2's <|endoftext|> id is only meaningful with the GPT-2 vocabulary.
    eot = 50256 if self.vocab_size == 50257 else None
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",  # tanh-approximated GELU
        "vocab_size": self.vocab_size,
        "n_positions": self.block_size,
        "n_ctx": self.block_size,
        "n_embd": self.n_embd,
        "n_layer": self.n_layer,
        "n_head": self.n_head,
        "n_inner": self.n_inner,
        "layer_norm_epsilon": self.layer_norm_eps,
        "resid_pdrop": self.dropout,
        "embd_pdrop": self.dropout,
        "attn_pdrop": self.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": self.tie_weights,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "use_cache": True,
    }


def config_from_hf(d: dict[str, Any], **overrides: Any) -> GPTConfig:
    """Build from a Hugging Face GPT-2 `config.json` dict; `overrides` replace fields.

    Unknown HF keys are ignored; HF defaults apply to missing ones (`n_inner: null` means
    4 * n_embd). The three HF dropouts must agree unless `dropout=` is overridden.
    Options our model cannot reproduce (another activation, unscaled attention, ...) raise.
    """
    check_field_names(overrides, "config_from_hf override")
    model_type = d.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise ValueError(f"expected a Hugging Face config with model_type 'gpt2', got {model_type!r}")
    act = d.get("activation_function", "gelu_new")
    if act not in _HF_TANH_GELU:
        raise ValueError(
            f"unsupported activation_function {act!r}: this GPT uses the tanh-approximated GELU "
            f"(one of {', '.join(map(repr, _HF_TANH_GELU))})"
        )
    for key, supported in _HF_UNSUPPORTED.items():
        if key in d and d[key] != supported:
            raise ValueError(f"unsupported Hugging Face option {key}={d[key]!r}; expected {supported!r}")
    kw: dict[str, Any] = {
        "vocab_size": d.get("vocab_size", 50257),
        "block_size": d.get("n_positions", d.get("n_ctx", 1024)),
        "n_layer": d.get("n_layer", 12),
        "n_head": d.get("n_head", 12),
        "n_embd": d.get("n_embd", 768),
        "n_inner": d.get("n_inner"),
        "layer_norm_eps": d.get("layer_norm_epsilon", 1e-5),
        "tie_weights": d.get("tie_word_embeddings", True),
        "bias": True,
    }
    if "dropout" not in overrides:
        drops = {k: d.get(k, 0.1) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
        if len(set(drops.values())) != 1:
            raise ValueError(
                f"GPTConfig has one dropout but the Hugging Face config has different ones {drops}; "
                f"pass dropout=... to choose"
            )
        kw["dropout"] = drops["resid_pdrop"]
    return GPTConfig(**{**kw, **overrides})


def save_pretrained(model, path) -> None:
    """Write `model` (a GPT) to folder `path` as config.json + model.safetensors (HF GPT-2 layout)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    # named_parameters yields a tied Parameter once, under its first name transformer.wte.weight
    tensors = {name: np.ascontiguousarray(p.data) for name, p in model.named_parameters()}
    dtype = model.transformer.wte.weight.dtype
    config = dict(config_to_hf(model.config), torch_dtype=str(dtype))
    atomic_write(path / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(path / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _canonical(key: str) -> str:
    """A checkpoint key as our parameter name: `wte.weight` -> `transformer.wte.weight`."""
    if key.startswith(PREFIX) or key.startswith("lm_head."):
        return key
    return PREFIX + key


def load_pretrained(path, cls, dtype=None):
    """A `cls` (gpt.GPT) from a Hugging Face GPT-2 folder `path` (config.json + model.safetensors), in eval mode.

    Raises FileNotFoundError for a missing file, and ValueError naming every missing, unexpected or
    mis-shaped key (with the checkpoint's and the config's shapes).
    """
    path = Path(path)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name} not found: a GPT-2 checkpoint folder holds "
                                    f"{CONFIG_NAME} and {WEIGHTS_NAME}")
    config = config_from_hf(json.loads((path / CONFIG_NAME).read_text(encoding="utf-8")))
    raw = load_file(str(path / WEIGHTS_NAME))
    state = {}
    for key, value in raw.items():
        bare = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if _BUFFER.match(bare):
            continue
        name = _canonical(key)
        if name in state:
            raise ValueError(f"{path / WEIGHTS_NAME}: key {key!r} appears both with and without the "
                             f"'{PREFIX}' prefix")
        state[name] = value

    model = cls(config, dtype=dtype)
    params = dict(model.named_parameters())  # a tied head appears once, as transformer.wte.weight
    wte = state.get(PREFIX + "wte.weight")
    if config.tie_weights and "lm_head.weight" in state:
        head = state.pop("lm_head.weight")
        if wte is not None and (head.shape != wte.shape or not np.array_equal(head, wte)):
            raise ValueError(f"{path}: config.json ties lm_head to wte (tie_word_embeddings=true), but the "
                             f"checkpoint's lm_head.weight {head.shape} differs from transformer.wte.weight "
                             f"{wte.shape}; set tie_word_embeddings=false to load an untied head")

    where = f"{path / WEIGHTS_NAME} (config: {path / CONFIG_NAME})"
    missing = [k for k in params if k not in state]
    unexpected = [k for k in state if k not in params]
    misshaped = [f"{k}: checkpoint {tuple(v.shape)} vs config {params[k].shape}"
                 for k, v in state.items() if k in params and tuple(v.shape) != params[k].shape]
    problems = []
    if misshaped:
        problems.append("mis-shaped tensors: " + "; ".join(misshaped))
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    if problems:
        hint = (f" (config.json says vocab_size={config.vocab_size}, n_positions={config.block_size}, "
                f"n_embd={config.n_embd}, n_layer={config.n_layer})")
        raise ValueError(f"cannot load {where}: " + " | ".join(problems) + hint)
    for k, p in params.items():
        value = state[k]
        if value.dtype.kind != "f":
            raise ValueError(f"cannot load {where}: {k} has dtype {value.dtype}, expected floating point")
        np.copyto(p.data, value, casting="same_kind")  # cast to the model's dtype
    return model.eval()
