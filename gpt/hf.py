"""Hugging Face GPT-2, both directions: a folder with `config.json` and `model.safetensors`.

    load_pretrained(name_or_path, cls, dtype=None, dropout=None)   -> cls(config) with the weights, eval mode
    resolve_pretrained(name_or_path)          -> the folder to read (a local one, or the hub cache's)
    save_pretrained(model, path)              writes both files (each to a temp file, then renamed)
    config_to_hf(config) / config_from_hf(d)  GPTConfig <-> the dict of a GPT2Config config.json

`name_or_path` is a local folder when that path exists (as in transformers), else one of OpenAI's
GPT-2 checkpoints by name: `gpt2`, `gpt2-medium`, `gpt2-large`, `gpt2-xl` (or `openai-community/gpt2`,
...). Those are fetched with `huggingface_hub` (the optional extra `hub`) into its own cache, so a
model downloaded once (by transformers too) is not downloaded again. The cache and offline switches
are huggingface_hub's (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE), read at each call. When the hub cannot
be reached the cache is used; when it holds nothing either, the error says so.

The tensors are stored under GPT-2's names. Our parameter names are already GPT-2's, and our
Linear weights are (in, out) like GPT-2's Conv1D (c_attn, c_proj, c_fc), so no transposes are
needed. `lm_head.weight` is (V, C) like the token embedding, as in HF's `GPT2LMHeadModel`:
    - tied head: not stored (HF gpt2 files don't store it); accepted on load if equal to wte.
    - untied head: stored as `lm_head.weight`, and required on load.
HF GPT-2 always has the c_attn (q, k, v) bias: a model without it (`qkv_bias=False`) is exported with a
zero bias there, which gives identical logits, so loading the export back gives a model with that bias
(zero at first, trainable; its config has `qkv_bias=None`). A model without any bias (`bias=False`) is
refused. On load, keys may carry the `transformer.` prefix (GPT2LMHeadModel) or not (GPT2Model, the original
`gpt2` upload), and the `h.{i}.attn.bias` / `h.{i}.attn.masked_bias` buffers (causal masks, not
parameters) are ignored. Tensors are read one at a time, so loading needs the model's memory plus
its largest tensor. A bad folder or file (not JSON, a truncated safetensors file, a key or shape the
config does not describe) raises `UsageError` naming the file and what was expected.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from tinygrad_lite import get_default_dtype

from .config import GPTConfig, check_field_names, count_parameters
from .errors import UsageError
from .files import atomic_write
from .memory import Need, require

__all__ = ["save_pretrained", "load_pretrained", "resolve_pretrained", "config_to_hf", "config_from_hf",
           "HUB_MODELS", "CONFIG_NAME", "WEIGHTS_NAME"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FILES = (CONFIG_NAME, WEIGHTS_NAME)
PREFIX = "transformer."
_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")  # HF's causal-mask buffers

# OpenAI's GPT-2 checkpoints on the hub (under openai-community/; the bare names redirect there), and
# the size of their model.safetensors.
HUB_ORG = "openai-community"
HUB_MODELS = {"gpt2": "548 MB", "gpt2-medium": "1.5 GB", "gpt2-large": "3.2 GB", "gpt2-xl": "6.4 GB"}
_FLOATS = ("F16", "F32", "F64")  # safetensors dtypes NumPy holds (not BF16)

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

    HF GPT-2 always has biases, so `bias=False` cannot be expressed and raises; `qkv_bias=False` is
    written as HF's c_attn bias, zero (see `save_pretrained`).
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
        if any(v != drops["resid_pdrop"] for v in drops.values()):
            raise ValueError(
                f"GPTConfig has one dropout but the Hugging Face config has different ones {drops}; "
                f"pass dropout=... to choose"
            )
        kw["dropout"] = drops["resid_pdrop"]
    return GPTConfig(**{**kw, **overrides})


def save_pretrained(model, path) -> None:
    """Write `model` (a GPT) to folder `path` as config.json + model.safetensors (HF GPT-2 layout).

    A model without the q, k, v bias (`qkv_bias=False`) gets a zero `attn.c_attn.bias` in every block,
    since HF GPT-2 always has one: the logits are identical, and loading the folder gives a model with
    that (zero) bias. `bias=False` raises ValueError (config_to_hf).
    """
    config = config_to_hf(model.config)  # raises before anything is written
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    # named_parameters yields a tied Parameter once, under its first name transformer.wte.weight
    tensors = {name: np.ascontiguousarray(p.data) for name, p in model.named_parameters()}
    dtype = model.transformer.wte.weight.dtype
    if not model.config.c_attn_bias:  # x @ W + 0 == x @ W
        C = model.config.n_embd
        tensors.update({f"{PREFIX}h.{i}.attn.c_attn.bias": np.zeros(3 * C, dtype) for i in range(model.config.n_layer)})
    config = dict(config, torch_dtype=str(dtype))
    atomic_write(path / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(path / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _canonical(key: str) -> str:
    """A checkpoint key as our parameter name: `wte.weight` -> `transformer.wte.weight`."""
    if key.startswith(PREFIX) or key.startswith("lm_head."):
        return key
    return PREFIX + key


# ---------------------------------------------------------------------------- finding the folder
def resolve_pretrained(name_or_path) -> Path:
    """The folder holding config.json + model.safetensors for `name_or_path`.

    An existing path is used as it is; otherwise a GPT-2 name is read from huggingface_hub's cache,
    downloaded into it first when missing (and the hub reachable). Raises UsageError otherwise.
    """
    given = str(name_or_path)
    path = Path(given).expanduser()
    if path.exists():
        _check_folder(path, given)
        return path
    model = given.removeprefix(HUB_ORG + "/")
    if model not in HUB_MODELS:
        raise UsageError(f"{given!r} is not a folder (no such path) nor a GPT-2 model on the Hugging Face hub; "
                         f"known names: {', '.join(HUB_MODELS)} (or {HUB_ORG}/<name>), or pass a folder holding "
                         f"{CONFIG_NAME} and {WEIGHTS_NAME}")
    return _from_hub(given, model)


def _check_folder(path: Path, given: str) -> None:
    expected = f"a Hugging Face GPT-2 folder holds {CONFIG_NAME} and {WEIGHTS_NAME}"
    if not path.is_dir():
        raise UsageError(f"{path} is a file, not a folder: {expected}")
    missing = [name for name in FILES if not (path / name).is_file()]
    if not missing:
        return
    hint = ""
    if (path / "latest.json").is_file() or (path / "gpt_config.json").is_file():
        hint = "; it holds a training run or checkpoint: load that with gpt.checkpoint.load(path).model()"
    elif given in HUB_MODELS:
        hint = f"; this local folder hides the hub's {given!r}: pass {HUB_ORG}/{given} to download that"
    raise UsageError(f"{path}: {' and '.join(missing)} not found ({expected}){hint}")


def _env_true(var: str) -> bool:
    return os.environ.get(var, "").upper() in ("1", "ON", "YES", "TRUE")  # huggingface_hub's reading


def _hub_cache() -> str | None:
    """The hub cache the environment names now, or None for huggingface_hub's default.

    huggingface_hub reads these variables once, when imported; reading them here lets a change made
    later in the process (a test's, a notebook's) count, with the same precedence."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.path.expandvars(os.path.expanduser(os.environ[var]))
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expandvars(os.path.expanduser(os.environ["HF_HOME"])), "hub")
    return None


def _from_hub(repo_id: str, model: str) -> Path:
    """Download `repo_id` (config.json + model.safetensors) into the hub cache, or find it there."""
    try:  # its submodules by name: `import huggingface_hub` alone does not load them (2.x loads lazily)
        import huggingface_hub
        from huggingface_hub import constants as hub_constants
        from huggingface_hub.utils import LocalEntryNotFoundError
    except ImportError:
        raise UsageError(f"{repo_id!r} is not a local folder, and fetching it from the Hugging Face hub needs "
                         f"huggingface_hub: pip install -e \".[hub]\" (or pip install huggingface_hub)") from None
    cache = _hub_cache()
    where = cache or hub_constants.HF_HUB_CACHE
    offline = next((var for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if _env_true(var)), None)
    failure = None
    if offline is None:
        try:
            return Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=list(FILES), cache_dir=cache))
        except Exception as e:  # no network, hub down, a proxy, a full disk...: the cache may still hold it
            failure = e
    # "gpt2" and "openai-community/gpt2" are one model, cached under two names (transformers uses the first)
    for name in dict.fromkeys((repo_id, model, f"{HUB_ORG}/{model}")):
        try:
            folder = Path(huggingface_hub.snapshot_download(name, allow_patterns=list(FILES), cache_dir=cache,
                                                            local_files_only=True))
        except Exception:  # not cached (LocalEntryNotFoundError), or only partly
            continue
        if all((folder / f).is_file() for f in FILES):
            return folder
    local = f"or pass a local folder holding {CONFIG_NAME} and {WEIGHTS_NAME}"
    size = HUB_MODELS[model]
    if offline:
        raise UsageError(f"{repo_id!r} is not in the Hugging Face cache ({where}) and {offline} is set, so it "
                         f"cannot be downloaded; unset {offline} on a machine with internet access to download it "
                         f"once ({size}), {local}")
    if isinstance(failure, LocalEntryNotFoundError):  # how the hub reports no connection
        raise UsageError(f"cannot fetch {repo_id!r}: this machine could not reach the Hugging Face hub "
                         f"({_reason(failure.__cause__ or failure)}) and the cache ({where}) does not hold it; "
                         f"connect to the internet to download it once ({size}), {local}")
    raise UsageError(f"cannot fetch {repo_id!r} from the Hugging Face hub into {where}: {_reason(failure)}; {local}")


def _reason(e: BaseException) -> str:
    """`Type: first line of the message`, short enough for one error line."""
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first[:200]}"


# ---------------------------------------------------------------------------- reading it
def _read_config(file: Path, **overrides: Any) -> GPTConfig:
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON
        raise UsageError(f"{file}: cannot read it as JSON ({e}); expected a Hugging Face GPT-2 config.json") from None
    if not isinstance(d, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(d), "a number")
        raise UsageError(f"{file}: expected a JSON object (a Hugging Face GPT-2 config), got {kind}")
    try:
        return config_from_hf(d, **overrides)
    except (ValueError, TypeError) as e:  # an option we cannot reproduce, a size GPTConfig refuses
        raise UsageError(f"{file}: {e}") from None


def load_pretrained(name_or_path, cls, dtype=None, dropout: float | None = None):
    """A `cls` (gpt.GPT) from a Hugging Face GPT-2 folder or hub name (see module docstring), in eval mode.

    `dropout` replaces the config's (HF GPT-2 says 0.1), as nanoGPT's `init_from` allows for fine-tuning.
    Raises UsageError naming the file: a missing file, JSON that is not a GPT-2 config, a damaged
    safetensors file, and every missing, unexpected or mis-shaped key (with both shapes).
    """
    path = resolve_pretrained(name_or_path)
    overrides = {} if dropout is None else {"dropout": dropout}
    config = _read_config(path / CONFIG_NAME, **overrides)
    itemsize = np.dtype(dtype if dtype is not None else get_default_dtype()).itemsize
    require(Need({"its parameters": count_parameters(config)["total"] * itemsize}), f"the model {path / CONFIG_NAME} "
            f"describes", "is its config.json right?")  # before the model is built
    file = path / WEIGHTS_NAME
    try:
        with safe_open(str(file), framework="numpy") as f:
            return _load_weights(f, cls(config, dtype=dtype), file, path / CONFIG_NAME)
    except (SafetensorError, OSError) as e:  # truncated, not safetensors, unreadable
        raise UsageError(f"{file}: not a readable safetensors file ({e}); expected the weights of "
                         f"{CONFIG_NAME}'s model: re-download or re-save it") from None


def _load_weights(f, model, file: Path, config_file: Path):
    """Copy the tensors of the open safetensors file `f` into `model`, one at a time, after checking them all."""
    config = model.config
    keys = {}  # our parameter name -> the file's key
    for key in f.keys():
        bare = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if _BUFFER.match(bare):
            continue
        name = _canonical(key)
        if name in keys:
            raise UsageError(f"{file}: key {key!r} appears both with and without the '{PREFIX}' prefix")
        keys[name] = key
    shapes = {name: tuple(f.get_slice(key).get_shape()) for name, key in keys.items()}
    params = dict(model.named_parameters())  # a tied head appears once, as transformer.wte.weight
    wte = PREFIX + "wte.weight"
    if config.tie_weights and "lm_head.weight" in keys:
        head = f.get_tensor(keys.pop("lm_head.weight"))
        if wte in keys and (head.shape != shapes[wte] or not np.array_equal(head, f.get_tensor(keys[wte]))):
            raise UsageError(f"{file}: {CONFIG_NAME} ties lm_head to wte (tie_word_embeddings=true), but the "
                             f"checkpoint's lm_head.weight {head.shape} differs from transformer.wte.weight "
                             f"{shapes[wte]}; set tie_word_embeddings=false to load an untied head")

    where = f"{file} (config: {config_file})"
    missing = [k for k in params if k not in keys]
    unexpected = [k for k in keys if k not in params]
    misshaped = [f"{k}: checkpoint {shapes[k]} vs config {params[k].shape}"
                 for k in keys if k in params and shapes[k] != params[k].shape]
    problems = []
    if misshaped:
        problems.append("mis-shaped tensors: " + "; ".join(misshaped))
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    if problems:
        hint = (f" ({CONFIG_NAME} says vocab_size={config.vocab_size}, n_positions={config.block_size}, "
                f"n_embd={config.n_embd}, n_layer={config.n_layer})")
        raise UsageError(f"cannot load {where}: " + " | ".join(problems) + hint)
    for k, key in keys.items():
        kind = f.get_slice(key).get_dtype()
        if kind not in _FLOATS:
            raise UsageError(f"cannot load {where}: {k} has dtype {kind}, expected one of {', '.join(_FLOATS)}"
                             + (" (NumPy has no bfloat16: save it as float32)" if kind == "BF16" else ""))
    for k, key in keys.items():
        np.copyto(params[k].data, f.get_tensor(key), casting="same_kind")  # cast to the model's dtype
    return model.eval()
