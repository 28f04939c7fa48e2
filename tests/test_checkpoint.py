"""gpt.checkpoint: exact round trips, a save killed at any step leaves a loadable run, damage is named."""
import builtins
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import gpt.checkpoint as ck
from gpt.checkpoint import CheckpointError
from gpt.config import GPTConfig
from gpt.errors import UsageError
from gpt.model import GPT
from tinygrad_lite.optim import SGD, AdamW

REPO = Path(__file__).resolve().parents[1]
TINY = dict(vocab_size=23, block_size=8, n_layer=2, n_head=2, n_embd=16)
IDX = np.random.default_rng(0).integers(0, 23, (2, 8))


def _trained(seed=0, dtype=None, steps=3, opt=AdamW, **overrides):
    """A tiny GPT and its optimizer after a few steps (so the optimizer has state)."""
    model = GPT(GPTConfig(**{**TINY, **overrides}), seed=seed, dtype=dtype)
    optimizer = opt(model.parameters(), lr=1e-2, **({"momentum": 0.9} if opt is SGD else {}))
    for _ in range(steps):
        optimizer.zero_grad()
        model.loss(IDX, IDX).backward()
        optimizer.step()
    return model, optimizer


def _weights(model):
    return {name: p.data.copy() for name, p in model.named_parameters()}


def _assert_same_weights(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def _assert_same_optimizer_state(a: dict, b: dict):
    assert a["param_groups"] == b["param_groups"]
    assert sorted(a["state"]) == sorted(b["state"])
    for i in a["state"]:
        assert sorted(a["state"][i]) == sorted(b["state"][i])
        for k, v in a["state"][i].items():
            w = b["state"][i][k]
            if isinstance(v, np.ndarray):
                assert v.dtype == w.dtype and np.array_equal(v, w), (i, k)
            else:
                assert type(v) is type(w) and v == w, (i, k)


def _rewrite(folder: Path, name: str, data: bytes):
    """Replace a file AND its manifest entry: a well-formed checkpoint with bad content (as if hand-made)."""
    (folder / name).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": ck.sha256(folder / name), "bytes": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _error(path, which="latest") -> str:
    with pytest.raises(CheckpointError) as e:
        ck.load(path, which)
    assert "\n" not in str(e.value)
    return str(e.value)


# ---------------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("dtype, overrides", [
    (np.float32, {}),
    (np.float32, dict(bias=False, tie_weights=False, n_inner=24, dropout=0.1, layer_norm_eps=1e-6)),
    (np.float64, dict(tie_weights=False)),
    (np.float32, dict(qkv_bias=False, dropout=0.1)),  # the "LLMs from scratch" GPT-2's layout
    (np.float32, dict(bias=False, qkv_bias=True, tie_weights=False)),
])
def test_round_trip_is_exact(tmp_path, dtype, overrides):
    model, optimizer = _trained(dtype=dtype, **overrides)
    state = {"iter": 3, "losses": [3.25, 2.5, float("nan")], "rng": {"bit_generator": "PCG64", "state": 2 ** 100},
             "nested": {"a": [1, "two", None, True]}}
    folder = ck.save(tmp_path / "run", model, optimizer, state)
    assert folder.parent == tmp_path / "run" and folder.name.startswith("ckpt-0000003-")

    c = ck.load(tmp_path / "run")
    assert c.path == folder and c.config == model.config
    assert json.dumps(c.state) == json.dumps(state)  # NaN and big ints included
    _assert_same_weights(c.weights, _weights(model))
    assert ("lm_head.weight" in c.weights) == (not model.config.tie_weights)  # a tied head is stored once
    _assert_same_optimizer_state(c.optimizer_state, optimizer.state_dict())

    loaded = c.model()
    assert not loaded.training and loaded.transformer.wte.weight.dtype == dtype
    assert (loaded.lm_head.weight is loaded.transformer.wte.weight) == model.config.tie_weights
    model.eval()
    assert np.array_equal(loaded(IDX).data, model(IDX).data)

    # the optimizer resumes exactly: one more step on both gives identical weights (in eval mode: the dropout
    # generators' states are the caller's to keep, in state.json)
    fresh = AdamW(loaded.parameters(), lr=123.0)
    c.load_optimizer(fresh)
    _assert_same_optimizer_state(fresh.state_dict(), optimizer.state_dict())
    for m, opt in ((model, optimizer), (loaded, fresh)):
        opt.zero_grad()
        m.loss(IDX, IDX).backward()
        opt.step()
    _assert_same_weights(_weights(loaded), _weights(model))


def test_sgd_state_round_trips_and_optimizer_is_optional(tmp_path):
    model, optimizer = _trained(opt=SGD)
    ck.save(tmp_path / "a", model, optimizer, {"iteration": 12})
    c = ck.load(tmp_path / "a")
    assert c.path.name.startswith("ckpt-0000012-")
    _assert_same_optimizer_state(c.optimizer_state, optimizer.state_dict())

    folder = ck.save(tmp_path / "b", model, None, {})
    assert not (folder / "optimizer.safetensors").exists() and folder.name.startswith("ckpt-0000000-")
    c = ck.load(tmp_path / "b")
    assert c.optimizer_state is None
    with pytest.raises(CheckpointError, match="holds no optimizer.safetensors"):
        c.load_optimizer(optimizer)


def test_model_dtype_can_be_chosen(tmp_path):
    model, _ = _trained()
    ck.save(tmp_path, model, None, {})
    loaded = ck.load(tmp_path).model(dtype=np.float64)
    assert all(p.dtype == np.float64 for p in loaded.parameters())
    np.testing.assert_allclose(loaded(IDX).data, model.eval()(IDX).data, rtol=1e-4, atol=1e-5)


def test_layout_on_disk(tmp_path):
    model, optimizer = _trained()
    folder = ck.save(tmp_path, model, optimizer, {"iter": 250})
    assert sorted(os.listdir(tmp_path)) == [folder.name, "latest.json"]
    assert json.loads((tmp_path / "latest.json").read_text()) == {"checkpoint": folder.name}
    names = ["gpt_config.json", "manifest.json", "model.safetensors", "optimizer.safetensors", "state.json"]
    assert sorted(os.listdir(folder)) == names
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "tinygrad_lite-gpt/3" == ck.FORMAT
    assert manifest["files"] == {n: {"sha256": ck.sha256(folder / n), "bytes": (folder / n).stat().st_size}
                                 for n in names if n != "manifest.json"}
    assert json.loads((folder / "gpt_config.json").read_text()) == model.config.to_dict()
    assert sorted(load_file(folder / "model.safetensors")) == sorted(_weights(model))
    mask = os.umask(0)
    os.umask(mask)
    assert all((folder / n).stat().st_mode & 0o777 == 0o666 & ~mask for n in names)  # not safetensors' 0600
    assert ck.load(folder).path == folder  # a checkpoint folder loads by itself too
    assert ck.is_run(tmp_path) and not ck.is_run(folder) and not ck.is_run(tmp_path / "nothing")


# ---------------------------------------------------------------------------------------------------
# pointers and clean-up


def test_best_is_kept_beside_latest(tmp_path):
    run = tmp_path / "run"
    models = [_trained(seed=s, steps=0)[0] for s in range(4)]
    a = ck.save(run, models[0], None, {"iter": 0}, best=True)
    b = ck.save(run, models[1], None, {"iter": 1})
    c = ck.save(run, models[2], None, {"iter": 2})
    assert sorted(p.name for p in run.iterdir()) == sorted(["best.json", "latest.json", a.name, c.name])  # b gone
    assert ck.load(run, "best").path == a and ck.load(run).path == c
    _assert_same_weights(ck.load(run, "best").weights, _weights(models[0]))
    d = ck.save(run, models[3], None, {"iter": 3}, best=True)
    assert sorted(p.name for p in run.iterdir()) == sorted(["best.json", "latest.json", d.name])
    assert ck.load(run, "best").path == ck.load(run).path == d


def test_next_save_removes_leftovers_and_nothing_else(tmp_path):
    model, _ = _trained(steps=0)
    first = ck.save(tmp_path, model, None, {"iter": 1})
    (tmp_path / ".tmp-0123abcd").mkdir()
    (tmp_path / ".tmp-0123abcd" / "model.safetensors").write_bytes(b"half")
    (tmp_path / "ckpt-0000009-deadbeef").mkdir()  # renamed into place, but the pointer never switched
    (tmp_path / ".latest.json.0123abcd.tmp").write_text("{")  # atomic_write's file, killed before its rename
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "notes").mkdir()
    second = ck.save(tmp_path, model, None, {"iter": 2})
    assert sorted(os.listdir(tmp_path)) == sorted(["latest.json", "metrics.json", "notes", second.name])
    assert not first.exists()


def test_an_unreadable_pointer_keeps_every_checkpoint(tmp_path):
    model, _ = _trained(steps=0)
    a = ck.save(tmp_path, model, None, {"iter": 1}, best=True)
    (tmp_path / "best.json").write_text("not json")
    (tmp_path / ".tmp-0123abcd").mkdir()
    b = ck.save(tmp_path, model, None, {"iter": 2})
    c = ck.save(tmp_path, model, None, {"iter": 3})
    assert a.exists() and b.exists() and c.exists()  # which one best.json meant is unknown: keep them all
    assert not (tmp_path / ".tmp-0123abcd").exists()


# ---------------------------------------------------------------------------------------------------
# a save that fails or is killed at each step


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so only `finally`/`except BaseException` see it."""


# everything a save does to the disk (Path.mkdir calls os.mkdir; shutil.rmtree calls os.unlink/os.rmdir)
DISK_STEPS = [(os, "mkdir"), (os, "rename"), (os, "replace"), (os, "remove"), (os, "unlink"), (os, "rmdir"),
              (os, "chmod"), (os, "fsync"), (shutil, "rmtree"), (ck, "save_file"), (ck, "open")]


def _inject(mp: pytest.MonkeyPatch, k: int, error: type) -> list[str]:
    """The k-th disk step of gpt.checkpoint raises `error`. A Killed freezes the disk: every later step
    raises too, so no clean-up code can run, as after a real SIGKILL. Returns the names of the steps seen."""
    seen = []

    def wrap(name, fn):
        def step(*args, **kwargs):
            seen.append(name)
            if len(seen) - 1 == k or (error is Killed and len(seen) - 1 > k):
                raise error(f"injected failure at step {k} ({name})")
            return fn(*args, **kwargs)
        return step

    for module, name in DISK_STEPS:
        mp.setattr(module, name, wrap(name, getattr(module, name, None) or getattr(builtins, name)), raising=False)
    return seen


@pytest.mark.parametrize("error", [OSError, RuntimeError, KeyboardInterrupt, Killed])
def test_a_save_failing_at_any_step_leaves_a_complete_checkpoint(tmp_path, error):
    template = tmp_path / "template"
    models = [_trained(seed=s, steps=1) for s in range(4)]
    a = ck.save(template, *models[0], {"iter": 1}, best=True)
    b = ck.save(template, *models[1], {"iter": 2})
    files_before = {p.relative_to(template): p.read_bytes() for p in template.rglob("*") if p.is_file()}
    new_model, new_opt = models[2]

    k = 0
    while True:
        run = tmp_path / f"run{k}"
        shutil.copytree(template, run)
        with pytest.MonkeyPatch.context() as mp:
            seen = _inject(mp, k, error)
            try:
                ck.save(run, new_model, new_opt, {"iter": 3}, best=True)
                failed = None
            except BaseException as e:  # noqa: B036 -- what a failed save raises is part of the test
                failed = e
        if len(seen) <= k:  # the save finished before step k: every step has had its failure
            assert failed is None
            break
        if failed is not None:  # OSError becomes CheckpointError naming the run; the rest pass through as is
            assert isinstance(failed, CheckpointError if error is OSError else error), (k, seen[k], failed)
            if error is OSError:
                assert str(run) in str(failed)
        else:  # a failure that was absorbed (in the clean-up; mkdir of an existing run): the save took place
            assert ck.load(run).state["iter"] == ck.load(run, "best").state["iter"] == 3, (k, seen[k])

        # latest and best each name a complete, verified checkpoint, old or new, the old one byte for byte
        latest, best = ck.load(run), ck.load(run, "best")
        assert latest.state["iter"] in (2, 3) and best.state["iter"] in (1, 3), (k, seen[k])
        for c, (old, old_model) in ((latest, (b, models[1][0])), (best, (a, models[0][0]))):
            if c.state["iter"] == 3:
                _assert_same_weights(c.weights, _weights(new_model))
                _assert_same_optimizer_state(c.optimizer_state, new_opt.state_dict())
            else:
                assert c.path.name == old.name
                _assert_same_weights(c.weights, _weights(old_model))
                assert all((run / rel).read_bytes() == data for rel, data in files_before.items()
                           if rel.parts[0] == old.name)
        assert best.state["iter"] == 1 or latest.state["iter"] == 3  # latest switches first

        # the next save leaves the pointers' checkpoints and nothing else
        last = ck.save(run, *models[3], {"iter": 4})
        kept = {last.name, ck.load(run, "best").path.name}
        assert sorted(os.listdir(run)) == sorted(["latest.json", "best.json", *kept]), (k, seen[k])
        k += 1

    assert k > 20 and {"mkdir", "save_file", "open", "fsync", "rename", "replace", "rmtree"} <= set(seen), seen


KILL_LOOP = """
import sys
from gpt import checkpoint as ck
from gpt.config import GPTConfig
from gpt.model import GPT
from tinygrad_lite.optim import AdamW
cfg = GPTConfig(**{tiny})
models = [GPT(cfg, seed=s) for s in range(3)]
optimizers = [AdamW(m.parameters()) for m in models]
for i in range(10 ** 9):
    ck.save(sys.argv[1], models[i % 3], optimizers[i % 3], {{"iter": i, "seed": i % 3}}, best=i % 5 == 0)
    if i < 3:
        print(i, flush=True)  # (only a few: a full pipe would stop the loop outside a save)
"""


def test_sigkill_during_a_save_loop_leaves_a_loadable_run(tmp_path):
    run = tmp_path / "run"
    script = KILL_LOOP.format(tiny=TINY)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    expected = {s: _weights(GPT(GPTConfig(**TINY), seed=s)) for s in range(3)}
    rng = np.random.default_rng(0)
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", script, str(run)], env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert [proc.stdout.readline() for _ in range(3)] == ["0\n", "1\n", "2\n"]  # saving, in a loop
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        for which in ("latest", "best"):
            c = ck.load(run, which)  # verified against its manifest
            _assert_same_weights(c.weights, expected[c.state["seed"]])
    model, optimizer = _trained(steps=1)
    last = ck.save(run, model, optimizer, {"iter": 0})
    assert sorted(os.listdir(run)) == sorted({"latest.json", "best.json", last.name, ck.load(run, "best").path.name})


# ---------------------------------------------------------------------------------------------------
# damaged files are named


def _safetensors_data_offset(path: Path) -> int:
    return 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]  # u64 header length, the JSON header, the data


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "state.json", "gpt_config.json"])
def test_a_flipped_byte_is_named(tmp_path, name):
    model, optimizer = _trained()
    other = ck.save(tmp_path, model, optimizer, {"iter": 1}, best=True)
    folder = ck.save(tmp_path, model, optimizer, {"iter": 2})
    path = folder / name
    data = bytearray(path.read_bytes())
    at = _safetensors_data_offset(path) + 5 if name.endswith(".safetensors") else 3
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    if name.endswith(".safetensors"):  # in the tensor data, so safetensors itself reads it without complaint
        assert load_file(path).keys() == load_file(other / name).keys()
    msg = _error(tmp_path)
    assert f"{path} is damaged (sha256 mismatch" in msg
    assert str(other) in msg  # what to do: the run's other checkpoint
    assert ck.load(tmp_path, "best").path == other  # the rest of the run is fine


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "state.json"])
def test_a_truncated_or_missing_file_is_named(tmp_path, name):
    model, optimizer = _trained()
    folder = ck.save(tmp_path, model, optimizer, {"iter": 1})
    size = (folder / name).stat().st_size
    (folder / name).write_bytes((folder / name).read_bytes()[: size // 2])
    msg = _error(tmp_path)
    assert f"{folder / name} is damaged ({size // 2} bytes, expected {size})" in msg
    assert "no other checkpoint" in msg
    (folder / name).unlink()
    assert f"{folder / name} is damaged (missing)" in _error(tmp_path)


def test_manifest_problems_are_named(tmp_path):
    model, _ = _trained(steps=0)
    folder = ck.save(tmp_path, model, None, {})
    (folder / "notes.txt").write_text("hi")
    assert f"{folder / 'notes.txt'} is not listed in {folder / 'manifest.json'}" in _error(tmp_path)
    (folder / "notes.txt").unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps(dict(manifest, format="other/9")))
    assert f"{folder / 'manifest.json'} is not a tinygrad_lite-gpt/3 manifest" in _error(tmp_path)
    (folder / "manifest.json").write_text("{")
    assert f"{folder / 'manifest.json'} is not readable JSON" in _error(tmp_path)


# ---------------------------------------------------------------------------------------------------
# bad input: one line naming the file and what was expected


def test_bad_files_inside_a_checkpoint(tmp_path):
    model, optimizer = _trained()
    folder = ck.save(tmp_path, model, optimizer, {"iter": 1})
    good = {n: (folder / n).read_bytes() for n in os.listdir(folder)}

    def case(name, data, *expected):
        _rewrite(folder, name, data)
        msg = _error(tmp_path)
        for text in expected:
            assert text in msg, (msg, text)
        for n, d in good.items():
            (folder / n).write_bytes(d)

    config = model.config.to_dict()
    case("gpt_config.json", b"[1, 2]", f"{folder / 'gpt_config.json'} holds an array, expected a JSON object "
         "with the GPTConfig fields vocab_size")
    case("gpt_config.json", json.dumps(dict(config, colour="red")).encode(), "gpt_config.json has unknown keys colour")
    case("gpt_config.json", json.dumps({k: v for k, v in config.items() if k != "n_head"}).encode(),
         "gpt_config.json has missing keys n_head; expected exactly the GPTConfig fields")
    case("gpt_config.json", json.dumps(dict(config, n_head=3)).encode(), "gpt_config.json holds an invalid GPTConfig",
         "divisible")
    case("gpt_config.json", json.dumps({k: v for k, v in config.items() if k != "qkv_bias"}).encode(),
         "gpt_config.json has missing keys qkv_bias; expected exactly the GPTConfig fields")
    case("gpt_config.json", json.dumps(dict(config, qkv_bias="yes")).encode(), "holds an invalid GPTConfig",
         "qkv_bias must be a bool, or None")
    # our own names only: a tutorial's spelling is for GPTConfig.from_dict, not for a checkpoint
    case("gpt_config.json", json.dumps({("emb_dim" if k == "n_embd" else k): v for k, v in config.items()}).encode(),
         "gpt_config.json has missing keys n_embd; unknown keys emb_dim; expected exactly the GPTConfig fields")
    case("state.json", b'{"iter": 1,', f"{folder / 'state.json'} is not readable JSON", "expected a JSON object")
    case("state.json", b'"iter"', "state.json holds a string, expected a JSON object")
    size = len(good["model.safetensors"])
    case("model.safetensors", good["model.safetensors"][: size - 7], f"{folder / 'model.safetensors'} is not a "
         "readable safetensors file")
    case("model.safetensors", b"\x00" * 3, "model.safetensors is not a readable safetensors file")
    case("optimizer.safetensors", good["model.safetensors"], "optimizer.safetensors is not an optimizer state",
         "param_groups")


def test_weights_that_do_not_fit_the_config(tmp_path):
    model, optimizer = _trained()
    folder = ck.save(tmp_path, model, optimizer, {})
    _rewrite(folder, "gpt_config.json", json.dumps(dict(model.config.to_dict(), n_layer=3)).encode())
    with pytest.raises(CheckpointError, match=r"model.safetensors does not fit its gpt_config.json: missing "
                                              r"tensors \['transformer.h.2"):
        ck.load(tmp_path).model()
    _rewrite(folder, "gpt_config.json", json.dumps(dict(model.config.to_dict(), vocab_size=24)).encode())
    with pytest.raises(CheckpointError, match=r"transformer.wte.weight has shape \(23, 16\), gpt_config.json "
                                              r"expects \(24, 16\)"):
        ck.load(tmp_path).model()
    other = AdamW(GPT(GPTConfig(**dict(TINY, n_layer=1))).parameters())
    with pytest.raises(CheckpointError, match="optimizer.safetensors does not fit this optimizer"):
        ck.load(tmp_path).load_optimizer(other)


def test_bad_run_folders(tmp_path):
    assert issubclass(CheckpointError, UsageError) and issubclass(CheckpointError, ValueError)
    missing = tmp_path / "nope"
    assert _error(missing) == (f"{missing} does not exist; expected a training run folder (train --out) or one "
                               "of its ckpt-* folders")
    (tmp_path / "file").write_text("x")
    assert _error(tmp_path / "file").startswith(f"{tmp_path / 'file'} is a file; expected a training run folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _error(empty).startswith(f"{empty / 'latest.json'} does not exist; expected a training run folder")
    (empty / "config.json").write_text("{}")
    assert "a Hugging Face folder, which GPT.from_pretrained reads" in _error(empty)

    run = tmp_path / "run"
    model, _ = _trained(steps=0)
    folder = ck.save(run, model, None, {})
    assert f"{run / 'best.json'} does not exist: the run was trained without --save-best" in _error(run, "best")
    shutil.rmtree(folder)
    assert _error(run).startswith(f"{run / 'latest.json'} names {folder.name}, but {folder} does not exist")
    for bad in ("[]", "{", '{"checkpoint": "../elsewhere"}', '{"checkpoint": "ckpt-0000001-abcdef01", "x": 1}'):
        (run / "latest.json").write_text(bad)
        assert str(run / "latest.json") in _error(run)
    with pytest.raises(ValueError, match="which must be 'latest' or 'best'"):
        ck.load(run, "newest")


def test_bad_places_to_save(tmp_path):
    model, _ = _trained(steps=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'file'} is a file; expected a folder"):
        ck.save(tmp_path / "file", model, None, {})
    with pytest.raises(CheckpointError, match=f"cannot save a checkpoint in {tmp_path / 'file' / 'run'}"):
        ck.save(tmp_path / "file" / "run", model, None, {})
    with pytest.raises(TypeError, match="ndarray is not JSON-serialisable"):
        ck.save(tmp_path / "run", model, None, {"x": np.zeros(2)})
    assert os.listdir(tmp_path / "run") == []  # nothing left behind
    with pytest.raises(ValueError, match="iteration must be an int >= 0"):
        ck.save(tmp_path / "run", model, None, {"iter": -1})
