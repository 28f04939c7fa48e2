"""Hugging Face GPT-2 checkpoints: a folder with `config.json` and `model.safetensors`.

    save_pretrained(model, path)        writes both files (each to a temp file, then renamed)
    load_pretrained(path, dtype=None)   -> GPT, in eval mode (as transformers' from_pretrained)

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
import os
import re
import uuid
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from .config import GPTConfig

__all__ = ["save_pretrained", "load_pretrained", "CONFIG_NAME", "WEIGHTS_NAME"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PREFIX = "transformer."
_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")  # HF's causal-mask buffers


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) on a temp file in path's folder, then rename it over `path`.

    The file gets the usual permissions (0666 minus the umask), although safetensors writes 0600."""
    tmp = str(path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def file_mode() -> int:
    """Permissions of a new file under the current umask (mkstemp and safetensors make 0600 files)."""
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return 0o666 & ~mask


def save_pretrained(model, path) -> None:
    """Write `model` (a GPT) to folder `path` as config.json + model.safetensors (HF GPT-2 layout)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    # named_parameters yields a tied Parameter once, under its first name transformer.wte.weight
    tensors = {name: np.ascontiguousarray(p.data) for name, p in model.named_parameters()}
    dtype = model.transformer.wte.weight.dtype
    config = dict(model.config.to_hf_dict(), torch_dtype=str(dtype))
    atomic_write(path / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(path / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _canonical(key: str) -> str:
    """A checkpoint key as our parameter name: `wte.weight` -> `transformer.wte.weight`."""
    if key.startswith(PREFIX) or key.startswith("lm_head."):
        return key
    return PREFIX + key


def load_pretrained(path, dtype=None):
    """A GPT from a Hugging Face GPT-2 folder `path` (config.json + model.safetensors), in eval mode.

    Raises FileNotFoundError for a missing file, and ValueError naming every missing, unexpected or
    mis-shaped key (with the checkpoint's and the config's shapes).
    """
    from .model import GPT  # model.py imports this module lazily too

    path = Path(path)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name} not found: a GPT-2 checkpoint folder holds "
                                    f"{CONFIG_NAME} and {WEIGHTS_NAME}")
    config = GPTConfig.from_hf_dict(json.loads((path / CONFIG_NAME).read_text(encoding="utf-8")))
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

    model = GPT(config, dtype=dtype)
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
