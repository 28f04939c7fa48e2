"""Training checkpoints: the whole state of a run, switched in atomically, verified on load.

A run folder RUN (`train --out`) holds, on disk:

    RUN/latest.json                {"checkpoint": "ckpt-0000250-1a2b3c4d"}: the checkpoint to resume from
    RUN/best.json                  same form, only with --save-best: the checkpoint of the lowest val loss
    RUN/ckpt-<iter:07d>-<8 hex>/   one complete checkpoint (iter from state["iter"] or state["iteration"]):
        model.safetensors          parameters by name (transformer.h.0.attn.c_attn.weight, ...); a tied head
                                   once, as transformer.wte.weight
        optimizer.safetensors      optional: the optimizer's arrays as "state.<param index>.<key>" (exp_avg, ...);
                                   metadata "param_groups" (hyperparameters) and "scalars" ({index: {step: t}}),
                                   each a JSON string: Optimizer.state_dict() split in two
        gpt_config.json            GPTConfig.to_dict(): every field
        state.json                 the training state the caller passed (a JSON object)
        manifest.json              {"format": "tinygrad_lite-gpt/<VERSION>",
                                    "files": {name: {"sha256": hex, "bytes": size}}} for every other file
    RUN/metrics.json               train's (not touched here)
    RUN/.lock                      train's lock while a run writes the folder (gpt/run_lock.py)

A save, in this order (the order is what makes it crash-safe):
    1. write every file into RUN/.tmp-<uuid>/, fsync each, manifest.json last; fsync the folder
    2. rename RUN/.tmp-<uuid> to RUN/ckpt-... (atomic); fsync RUN
    3. switch latest.json (and best.json) to it, each by an atomic rename; fsync RUN
    4. remove every ckpt-* folder no pointer names, and every .tmp-* leftover
A kill before 3 leaves latest.json naming the old checkpoint, after it the new one: complete either way.
A killed save's leftovers are removed before the next one writes. Without a latest.json naming a
folder that exists (lost, see load), no ckpt-* folder is removed.

Loading checks that manifest.json names exactly the files of the folder, and each file's size and
sha256, then parses them; anything wrong is a CheckpointError naming the file and what was expected.

Versions. The manifest's "format" says which version wrote the checkpoint. Loading reads every version
up to VERSION, and refuses a newer one by name; a field an older version did not write (a GPTConfig
field in _SINCE, a TrainConfig field, a key of the training state) takes its default, which must mean
what that version's code did. A change to what a checkpoint holds bumps VERSION, adds a row here and a
fixture written by the last commit before it (tests/fixtures/checkpoints/make_fixtures.py), which
tests/test_checkpoint_versions.py loads and resumes:
    0  6811dd9  no manifest: the run folder holds config.json (Hugging Face), model.safetensors,
                optimizer.safetensors, tokenizer_spec.json and train_state.json (_read_v0, below)
    1  de863af  this layout; GPTConfig gained qkv_bias within it (7c0c8c0), TrainConfig grad_accum and
                dtype (e19df43), workers (0ecc911)
    2  80e5d44  gpt_config.json always has qkv_bias; the training state records its text ("data":
                {"chars", "sha256"}), TrainConfig allow_data_change
    3           TrainConfig's checkpoint_blocks is named recompute_blocks (TrainConfig.from_dict reads both)
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from .config import GPTConfig
from .errors import EXIT_FAILED, UsageError
from .files import atomic_write, file_mode, fsync, sha256
from .model import GPT
from .run_lock import LOCK_FILE

__all__ = ["CheckpointError", "CheckpointWriteError", "Checkpoint", "save", "load", "is_run", "FORMAT", "VERSION"]

VERSION = 3
FORMAT = f"tinygrad_lite-gpt/{VERSION}"
_SINCE = {"qkv_bias": 2}  # GPTConfig fields an older checkpoint may lack -> the first version always writing them
MODEL, OPTIMIZER, CONFIG, STATE, MANIFEST = (
    "model.safetensors", "optimizer.safetensors", "gpt_config.json", "state.json", "manifest.json")
POINTERS = {"latest": "latest.json", "best": "best.json"}
STATE_V0 = "train_state.json"  # a run folder of version 0 (_read_v0)
_CKPT = re.compile(r"ckpt-\d{7,}-[0-9a-f]{8}")
_LEFTOVER = re.compile(r"\.tmp-.*|\.(latest|best)\.json\..*\.tmp")  # a killed save's folder, atomic_write's file


class CheckpointError(UsageError):
    """A missing or damaged checkpoint, or one that cannot be written; the message names the file."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint that could not be written (a full disk, a folder gone): the run failed (exit status 1), and
    the previous checkpoint is untouched. The message names the run folder and the reason."""
    exit_code = EXIT_FAILED


@dataclass
class Checkpoint:
    """One loaded, verified checkpoint folder. weights: name -> array, as model.named_parameters() names them."""
    path: Path
    config: GPTConfig
    weights: dict[str, np.ndarray]
    optimizer_state: dict | None  # Optimizer.state_dict() form, or None when none was saved (or not read)
    state: dict
    note: str = ""  # how it was found, when that is worth saying (latest.json lost: the newest complete one)
    version: int = VERSION  # of the format that wrote it
    warnings: list[str] = dataclasses.field(default_factory=list)  # damage to files load(optimizer=False) skips

    def model(self, dtype=None) -> GPT:
        """A GPT holding these weights, in eval mode; dtype None keeps the dtype they were saved in."""
        where, wte = self.path / MODEL, self.weights.get("transformer.wte.weight")
        if dtype is None and wte is not None:
            dtype = wte.dtype
        model = GPT(self.config, dtype=dtype)
        params = dict(model.named_parameters())
        missing, extra = sorted(set(params) - set(self.weights)), sorted(set(self.weights) - set(params))
        if missing or extra:
            raise CheckpointError(f"{where} does not fit its {CONFIG}: missing tensors {missing}, "
                                  f"unexpected tensors {extra}")
        for name, p in params.items():
            w = self.weights[name]
            if w.shape != p.shape:
                raise CheckpointError(f"{where}: {name} has shape {w.shape}, {CONFIG} expects {p.shape}")
            p.data = w.astype(p.dtype, copy=True)  # a tied head shares this Parameter, so it follows
        return model.eval()

    def check_finite(self) -> None:
        """Raise CheckpointError naming the tensors (weights, optimizer moments) that hold a NaN or an infinity:
        training cannot continue from them."""
        arrays = [(MODEL, name, w) for name, w in self.weights.items()]
        if self.optimizer_state is not None:
            arrays += [(OPTIMIZER, f"state.{i}.{key}", v) for i, s in self.optimizer_state["state"].items()
                       for key, v in s.items() if isinstance(v, np.ndarray)]
        bad = [(file, name) for file, name, a in arrays if a.dtype.kind == "f" and not np.isfinite(a).all()]
        if bad:
            shown = ", ".join(name for _, name in bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
            raise CheckpointError(f"{self.path / bad[0][0]} is not finite (NaN or infinity in {shown}): training "
                                  f"cannot continue from it; {_others(self.path.parent, self.path.name)}")

    def load_optimizer(self, optimizer) -> None:
        """Restore `optimizer` (same param groups and shapes as the saved one) from this checkpoint."""
        if self.optimizer_state is None:
            raise CheckpointError(f"{self.path} holds no {OPTIMIZER}; expected one to resume training from")
        try:
            optimizer.load_state_dict(self.optimizer_state)
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"{self.path / OPTIMIZER} does not fit this optimizer: {_one_line(e)}") from None


# ---------------------------------------------------------------------------------------------------
# saving


def save(run: str | os.PathLike, model: GPT, optimizer, state: dict, best: bool = False) -> Path:
    """Save model, optimizer (or None) and state (a JSON-able dict) as a new checkpoint of `run`; return its folder.

    latest.json (and, with best=True, best.json) then names it. On failure the previous checkpoint is
    untouched and still what latest.json names; a failed write (an OSError, safetensors' error) becomes a
    CheckpointWriteError naming `run`."""
    run = Path(run)
    if run.exists() and not run.is_dir():
        raise CheckpointError(f"{run} is a file; expected a folder to hold the run's checkpoints")
    name = f"ckpt-{_iteration(state):07d}-{uuid.uuid4().hex[:8]}"
    try:
        run.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(run, unnamed=False)  # a killed save's half-written folder: its room, before ours
        tmp = run / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        _write_folder(tmp, model, optimizer, state)  # 1. everything, manifest last
        os.rename(tmp, run / name)  # 2. the complete folder appears under its name at once
        fsync(run)
        _point(run / POINTERS["latest"], name)  # 3. the switch
        if best:
            _point(run / POINTERS["best"], name)
    except BaseException as e:
        _remove_leftovers(run)  # the half-written folder; the pointers decide what stays
        if isinstance(e, (OSError, SafetensorError)):
            raise CheckpointWriteError(f"cannot save a checkpoint in {run}: {_reason(e)}; {_still(run)}") from e
        raise
    _remove_leftovers(run)  # 4.
    return run / name


def _reason(e: Exception) -> str:
    """Why a write failed, in words: "No space left on device (errno 28)" from an OSError or safetensors' error."""
    if isinstance(e, OSError) and e.errno is not None:
        return f"{e.strerror} (errno {e.errno})"
    found = re.search(r"os error (\d+)", str(e))  # safetensors: "I/O error: No space left on device (os error 28)"
    return f"{os.strerror(int(found[1]))} (errno {found[1]})" if found else _one_line(e)


def _still(run: Path) -> str:
    """What a failed save left: the checkpoint latest.json still names, the run's other ones, or nothing."""
    latest = run / POINTERS["latest"]
    if not _lost_pointer(latest):
        return f"{latest} still names {_read_pointer(latest)}, complete"
    if checkpoint_folders(run):
        return f"the checkpoints in {run} stay (--resume takes the newest complete one)"
    return f"no checkpoint was saved in {run}"


def _iteration(state: dict) -> int:
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict (saved as {STATE}), got {type(state).__name__}")
    it = state.get("iteration", state.get("iter", 0))
    if isinstance(it, bool) or not isinstance(it, (int, np.integer)) or it < 0:
        raise ValueError(f"state's iteration must be an int >= 0, got {it!r}")
    return int(it)


def _write_folder(folder: Path, model: GPT, optimizer, state: dict) -> None:
    """Every file of a checkpoint into `folder`, each fsynced, manifest.json last; then fsync the folder."""
    _write_safetensors(folder / MODEL, {name: p.data for name, p in model.named_parameters()})
    if optimizer is not None:
        _write_safetensors(folder / OPTIMIZER, *_split_optimizer_state(optimizer.state_dict()))
    _write_json(folder / CONFIG, model.config.to_dict())
    _write_json(folder / STATE, state)
    files = {p.name: {"sha256": sha256(p), "bytes": p.stat().st_size} for p in sorted(folder.iterdir())}
    _write_json(folder / MANIFEST, {"format": FORMAT, "files": files})
    fsync(folder)


def _split_optimizer_state(sd: dict) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Optimizer.state_dict() -> (arrays "state.<i>.<key>", metadata {"param_groups", "scalars"} as JSON)."""
    arrays, scalars = {}, {}
    for i, param_state in sd["state"].items():
        for key, value in param_state.items():
            if isinstance(value, np.ndarray):
                arrays[f"state.{i}.{key}"] = value
            else:
                scalars.setdefault(str(i), {})[key] = value
    return arrays, {"param_groups": _dumps(sd["param_groups"]), "scalars": _dumps(scalars)}


def _point(pointer: Path, name: str) -> None:
    """Make `pointer` (latest.json / best.json) name checkpoint `name`: one atomic rename (fsynced), then fsync RUN."""
    data = _dumps({"checkpoint": name}).encode()
    atomic_write(pointer, lambda tmp: Path(tmp).write_bytes(data))


def _remove_leftovers(run: Path, unnamed: bool = True) -> None:
    """Remove .tmp-* leftovers and (`unnamed`) every ckpt-* folder no pointer names, once latest.json names one
    that exists: without that, which folders are the run's is unknown (latest.json lost: the newest complete
    one is the run's), so they all stay. Best effort: the next save retries."""
    try:
        entries = sorted(os.listdir(run))
        keep = {_read_pointer(run / p) for p in POINTERS.values() if (run / p).exists()}
        if not unnamed or _lost_pointer(run / POINTERS["latest"]):
            keep = None
    except OSError:
        return
    except CheckpointError:
        keep = None  # a pointer we cannot read: which checkpoint it meant is unknown, so keep them all
    for entry in entries:
        path = run / entry
        try:
            if _LEFTOVER.fullmatch(entry) or (keep is not None and _CKPT.fullmatch(entry) and entry not in keep):
                shutil.rmtree(path) if path.is_dir() else os.remove(path)
        except OSError:
            pass


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=metadata)
    os.chmod(path, file_mode())  # safetensors makes 0600 files
    fsync(path)


def _write_json(path: Path, obj: Any) -> None:
    _write_bytes(path, _dumps(obj, indent=1).encode())


def _write_bytes(path: str | Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _dumps(obj: Any, indent: int | None = None) -> str:
    def plain(o):  # NumPy scalars (a float32 lr, an int64 step) as Python numbers
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f"{type(o).__name__} is not JSON-serialisable (a checkpoint holds JSON and arrays only)")
    return json.dumps(obj, indent=indent, default=plain)


# ---------------------------------------------------------------------------------------------------
# loading


def is_run(path: str | os.PathLike) -> bool:
    """Does `path` hold a training run: a latest.json, a ckpt-* folder with its manifest (latest.json lost), or
    the train_state.json of version 0?"""
    path = Path(path)
    return (path / POINTERS["latest"]).is_file() or bool(checkpoint_folders(path)) or (path / STATE_V0).is_file()


def checkpoint_folders(run: str | os.PathLike) -> list[Path]:
    """The ckpt-* folders of `run` that hold a manifest, newest first (by iteration, then by time written)."""
    try:
        found = [p for p in Path(run).iterdir() if _CKPT.fullmatch(p.name) and (p / MANIFEST).is_file()]
    except OSError:
        return []
    return sorted(found, key=lambda p: (int(p.name.split("-")[1]), (p / MANIFEST).stat().st_mtime_ns), reverse=True)


def load(path: str | os.PathLike, which: str = "latest", optimizer: bool = True) -> Checkpoint:
    """Load a verified checkpoint: `path` is a run folder (its latest.json or best.json) or a ckpt-* folder.

    optimizer=False (to sample or inspect): optimizer.safetensors is not read, and damage to it is not an
    error but a line in Checkpoint.warnings."""
    if which not in POINTERS:
        raise ValueError(f"which must be 'latest' or 'best', got {which!r}")
    path = Path(path)
    expected = "expected a training run folder (train --out) or one of its ckpt-* folders"
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; {expected}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file; {expected}")
    if (path / MANIFEST).exists():
        return _read_folder(path, optimizer)
    pointer = path / POINTERS[which]
    lost = _lost_pointer(pointer) if which == "latest" else None
    if lost and checkpoint_folders(path):
        return _newest_complete(path, lost, optimizer)
    if lost and (path / STATE_V0).is_file():  # version 0: the run folder is its one checkpoint
        return _read_v0(path)
    if not pointer.exists():
        if which == "best" and is_run(path):
            raise CheckpointError(f"{pointer} does not exist: the run was trained without --save-best; "
                                  "load its latest checkpoint instead")
        hf = " (it holds config.json: a Hugging Face folder, which GPT.from_pretrained reads)" \
            if (path / "config.json").exists() else ""
        raise CheckpointError(f"{pointer} does not exist{hf}; {expected}")
    name = _read_pointer(pointer)
    if not (path / name).is_dir():
        raise CheckpointError(f"{pointer} names {name}, but {path / name} does not exist; {_others(path, name)}")
    return _read_folder(path / name, optimizer)


def latest_name(run: str | os.PathLike) -> str | None:
    """The checkpoint folder `run`'s latest.json names, None if it names none that exists."""
    pointer = Path(run) / POINTERS["latest"]
    return None if _lost_pointer(pointer) else _read_pointer(pointer)


def _lost_pointer(pointer: Path) -> str | None:
    """Why `pointer` leads to no checkpoint folder (missing, unreadable, naming a folder that is gone), or None."""
    if not pointer.exists():
        return f"{pointer} is missing"
    try:
        name = _read_pointer(pointer)
    except CheckpointError as e:
        return str(e)
    return None if (pointer.parent / name).is_dir() else f"{pointer} names {name}, which does not exist"


def _newest_complete(run: Path, lost: str, optimizer: bool = True) -> Checkpoint:
    """The newest ckpt-* folder of `run` that verifies against its manifest, its note saying why and which."""
    skipped = []
    for folder in checkpoint_folders(run):
        try:
            ckpt = _read_folder(folder, optimizer)
        except CheckpointError as e:
            skipped.append(_one_line(e).split("; ")[0])  # "RUN/ckpt-.../model.safetensors is damaged (...)"
            continue
        ckpt.note = f"{lost}: using the newest complete checkpoint, {folder.name}" + \
            "".join(f"; skipped: {why}" for why in skipped)
        return ckpt
    raise CheckpointError(f"{lost}, and no checkpoint of {run} is complete: {'; '.join(skipped)}; restore the "
                          "files from a backup or train again")


def _read_pointer(pointer: Path) -> str:
    d = _read_json(pointer, '{"checkpoint": "ckpt-<iter>-<hex>"}')
    name = d.get("checkpoint")
    if set(d) != {"checkpoint"} or not isinstance(name, str) or not _CKPT.fullmatch(name):
        raise CheckpointError(f"{pointer} holds {json.dumps(d)[:200]}; expected " '{"checkpoint": "ckpt-<iter>-<hex>"}')
    return name


def _read_folder(folder: Path, optimizer: bool = True) -> Checkpoint:
    files, version, warnings = _verify(folder, optional=() if optimizer else (OPTIMIZER,))
    config = _read_config(folder / CONFIG, version)
    state = _read_json(folder / STATE, "a JSON object (the training state)")
    weights = _read_safetensors(folder / MODEL)[0]
    optimizer_state = _read_optimizer(folder / OPTIMIZER) if OPTIMIZER in files and optimizer else None
    return Checkpoint(folder, config, weights, optimizer_state, state, version=version, warnings=warnings)


def _verify(folder: Path, optional: tuple[str, ...] = ()) -> tuple[dict[str, dict], int, list[str]]:
    """Check manifest.json against the folder: the same files, each of the recorded size and sha256; return
    the files, the format's version, and warnings: damage to an `optional` file is a warning line, not raised."""
    manifest = _read_json(folder / MANIFEST, f'{{"format": "{FORMAT}", "files": {{name: {{"sha256", "bytes"}}}}}}')
    files, version = manifest.get("files"), _version(folder / MANIFEST, manifest.get("format"))
    if not version or not isinstance(files, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str) and isinstance(e.get("bytes"), int)
            for e in files.values()):
        raise CheckpointError(f"{folder / MANIFEST} is not a {FORMAT} manifest; expected "
                              '{"format": ..., "files": {name: {"sha256": hex, "bytes": size}}}')
    for name in (MODEL, CONFIG, STATE):
        if name not in files:
            raise CheckpointError(f"{folder / MANIFEST} does not list {name}; every checkpoint has one")
    on_disk = {p.name for p in folder.iterdir()} - {MANIFEST}
    extra = sorted(on_disk - set(files))
    if extra:
        raise CheckpointError(f"{folder / extra[0]} is not listed in {folder / MANIFEST}; expected only "
                              f"{', '.join(sorted(files))} (remove the extra file)")
    warnings = []
    for name, entry in sorted(files.items()):
        problem = _file_problem(folder / name, entry)
        if problem is not None and name in optional:
            warnings.append(f"{folder / name} is damaged ({problem}); not needed here, so it was skipped")
        elif problem is not None:
            raise _damaged(folder / name, problem)
    return files, version, warnings


def _file_problem(path: Path, entry: dict) -> str | None:
    """What is wrong with a checkpoint file against its manifest entry (missing, size, sha256), or None."""
    if not path.exists():
        return "missing"
    try:
        size, digest = path.stat().st_size, sha256(path)
    except OSError as e:
        return _one_line(e)
    if size != entry["bytes"]:
        return f"{size} bytes, expected {entry['bytes']}"
    if digest != entry["sha256"]:
        return f"sha256 mismatch: expected {entry['sha256'][:16]}..., got {digest[:16]}..."
    return None


def _version(manifest: Path, fmt: Any) -> int | None:
    """The version of format `fmt` ("tinygrad_lite-gpt/N": N), None if it is not ours; a newer one is refused."""
    found = re.fullmatch(r"tinygrad_lite-gpt/([1-9]\d*)", fmt) if isinstance(fmt, str) else None
    if found and int(found[1]) > VERSION:
        raise CheckpointError(f"{manifest} says {fmt}: written by a newer version of this project, which this one "
                              f"(reading up to {FORMAT}) cannot load; update the project to load it")
    return int(found[1]) if found else None


def _damaged(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path} is damaged ({what}); {_others(path.parent.parent, path.parent.name)}")


def _others(run: Path, name: str) -> str:
    """What to do instead: the run's other checkpoint folders, if any."""
    others = sorted(p.name for p in run.glob("ckpt-*") if p.name != name and (p / MANIFEST).exists())
    if others:
        return (f"the run's other checkpoints (load one by its folder): {', '.join(str(run / o) for o in others)} "
                f"(with {run / name} moved away, train --resume continues from the newest complete one)")
    return "the run has no other checkpoint; restore the file from a backup or train again"


def _read_json(path: Path, expected: str) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not readable JSON ({_one_line(e)}); expected {expected}") from None
    if not isinstance(obj, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(obj), "a number")
        raise CheckpointError(f"{path} holds {kind}, expected {expected}")
    return obj


def _read_config(path: Path, version: int) -> GPTConfig:
    """gpt_config.json: every GPTConfig field its version writes (a later one takes its default), no other key."""
    fields = [f.name for f in dataclasses.fields(GPTConfig)]
    d = _read_json(path, f"a JSON object with the GPTConfig fields {', '.join(fields)}")
    missing = [f for f in fields if f not in d and _SINCE.get(f, 1) <= version]
    problems = [f"{what} keys {', '.join(keys)}" for what, keys in
                (("missing", missing), ("unknown", sorted(set(d) - set(fields)))) if keys]
    if problems:
        raise CheckpointError(f"{path} has {'; '.join(problems)}; expected exactly the GPTConfig fields "
                              f"{', '.join(fields)}")
    try:
        return GPTConfig.from_dict(d)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path} holds an invalid GPTConfig: {_one_line(e)}") from None


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    try:
        with safe_open(str(path), framework="numpy") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, (f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({_one_line(e)})") from None


def _read_optimizer(path: Path) -> dict:
    """optimizer.safetensors -> Optimizer.state_dict() form (inverse of _split_optimizer_state)."""
    arrays, meta = _read_safetensors(path)
    try:
        groups = json.loads(meta["param_groups"])
        state = {int(i): dict(s) for i, s in json.loads(meta["scalars"]).items()}
        for g in groups:  # JSON has no tuples: betas come back as lists
            g.update({k: tuple(v) for k, v in g.items() if k != "params" and isinstance(v, list)})
        for key, array in arrays.items():
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = array
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path} is not an optimizer state ({type(e).__name__}: {_one_line(e)}); expected "
                              'arrays "state.<i>.<key>" and metadata "param_groups" and "scalars"') from None
    return {"state": state, "param_groups": groups}


# Version 0: a run folder written by `train` before checkpoints had their own format (commits 6811dd9 to de863af)
# holds one checkpoint itself: config.json and model.safetensors (the Hugging Face layout), optimizer.safetensors,
# tokenizer_spec.json, and train_state.json ({"iter", "config": a TrainConfig of that time with the model's sizes
# among its fields, "losses", "evals", "seconds", "rng", "files": {name: sha256}}). _read_v0 gives it in today's
# form, so that `sample` and `train --resume` take it; the resumed run then saves in today's format beside it.
_MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")  # TrainConfig's then, GPTConfig's now


def _read_v0(run: Path) -> Checkpoint:
    """The checkpoint of a version-0 run folder (above), its files checked against the sha256s train_state.json lists."""
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


def _one_line(x: Any) -> str:
    return " ".join(str(x).split())


# ------------------------------------------------------------------ a run folder
def prepare_run(out: str | os.PathLike, overwrite: bool, name: str = "the run folder") -> None:
    """Make `out` a writable folder for a new run: refuse a file, an existing run (unless overwrite: then its
    files are removed) and a folder of other files (unless overwrite); `name` is how messages call it (--out)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{name} {out} is a file; expected a folder for the run (a new or empty one)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):  # can we write there?
            pass
    except (FileExistsError, NotADirectoryError):
        under = next((p for p in out.parents if p.exists() and not p.is_dir()), out.parent)
        raise UsageError(f"{name} {out}: {under} is a file, so no folder can be made under it") from None
    except OSError as e:
        raise UsageError(f"{name} {out} cannot be written: {e.strerror or e}") from None
    if (out / MANIFEST).exists():  # a run's checkpoint: files written among its own would damage it
        raise UsageError(in_checkpoint(out, name))
    if is_run(out):
        lost = _lost_pointer(out / POINTERS["latest"])
        if lost and not overwrite:  # never suggest --overwrite, which would delete complete checkpoints
            raise UsageError(f"{name} {out} holds the checkpoints of a training run, but {lost}; give --resume to "
                             f"continue from the newest complete one, or another --out")
        if not overwrite:
            raise UsageError(f"{name} {out} already holds a training run; give --resume to continue it, --overwrite "
                             f"to replace it, or another --out")
        remove_run(out)
    others = sorted(n for n in os.listdir(out) if not n.startswith(".tmp-") and n != LOCK_FILE)
    if others and not overwrite:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise UsageError(f"{name} {out} is not empty ({shown}) and holds no training run; give a new or empty folder, "
                         f"or --overwrite to write the run among those files")


def in_checkpoint(out: Path, name: str = "--out") -> str:
    """The error for a ckpt-* folder given where a run folder is expected."""
    return (f"{name} {out} is one checkpoint of the run in {out.parent} (it holds {MANIFEST}), not a run folder; give "
            f"{name} {out.parent} (with --resume to continue that run), or another {name}")


_RUN_FILES = re.compile(r"(latest|best|metrics)\.json|ckpt-\d+-[0-9a-f]+|\.tmp-.*")


def remove_run(out: str | os.PathLike) -> None:
    """Delete a run's own files (pointers, ckpt-* folders, metrics.json, leftovers); anything else stays."""
    out = Path(out)
    for name in sorted(os.listdir(out), key=lambda n: not n.endswith(".json")):  # pointers first
        path = out / name
        if _RUN_FILES.fullmatch(name):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
