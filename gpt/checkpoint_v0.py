"""Reading a run folder of version 0, written by `train` before checkpoints had their own format (commits
6811dd9 to de863af): the run folder itself holds one checkpoint,

    config.json, model.safetensors   the model in the Hugging Face layout (model.save_pretrained)
    optimizer.safetensors            the optimizer, as in later versions
    tokenizer_spec.json              the tokenizer's spec
    train_state.json                 {"iter", "config": a TrainConfig of that time (the model's sizes among its
                                     fields), "losses", "evals", "seconds", "rng", "files": {name: sha256}}

read_v0(run) gives it as a Checkpoint of today's form (state keys, TrainConfig with a GPTConfig), so
`sample` and `train --resume` take it; the resumed run then saves in today's format beside those files.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .checkpoint import STATE_V0, Checkpoint, CheckpointError, _read_json, _read_optimizer
from .errors import UsageError
from .files import sha256
from .model import GPT

__all__ = ["read_v0"]

_MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")  # TrainConfig's then, GPTConfig's now


def read_v0(run: Path) -> Checkpoint:
    """The checkpoint of a version-0 run folder, its files checked against the sha256s train_state.json lists."""
    state = _read_json(run / STATE_V0, "a JSON object (a training state of version 0)")
    files, flat = state.get("files"), state.get("config")
    if not isinstance(files, dict) or not isinstance(flat, dict) or "tokenizer_spec.json" not in files:
        raise CheckpointError(f"{run / STATE_V0} is not a training state: expected the keys files (name -> sha256, "
                              f"tokenizer_spec.json among them) and config")
    for name, digest in sorted(files.items()):
        if not (run / name).is_file() or sha256(run / name) != digest:
            raise CheckpointError(f"{run / name} is damaged (missing, or not the file {STATE_V0} lists); restore "
                                  "it from a backup or train again")
    try:
        model = GPT.from_pretrained(run)  # config.json, model.safetensors
    except UsageError as e:
        raise CheckpointError(str(e)) from None
    config = dataclasses.replace(model.config, dropout=flat.get("dropout", 0.0))  # HF's three dropouts, ours one
    train_config = {k: v for k, v in flat.items() if k not in _MODEL_FIELDS}
    try:
        converted = {"iter": state["iter"], "config": {**train_config, "model": config.to_dict()},
                     "tokenizer": _read_json(run / "tokenizer_spec.json", "a tokenizer spec"),
                     "losses": state["losses"], "evals": state["evals"], "best": None, "seconds": state["seconds"],
                     "rng": state["rng"]}
    except KeyError as e:
        raise CheckpointError(f"{run / STATE_V0} has no {e}; expected a training state of version 0") from None
    weights = {name: p.data for name, p in model.named_parameters()}
    optimizer = _read_optimizer(run / "optimizer.safetensors") if "optimizer.safetensors" in files else None
    return Checkpoint(run, config, weights, optimizer, converted, version=0)
