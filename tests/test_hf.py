"""Hugging Face GPT-2 checkpoints: save_pretrained / from_pretrained round trips, key variants, errors,
and GPT-2 by name through a Hugging Face cache the tests build (no test here touches the network)."""
import json
import socket
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import gpt.hf as checkpoint
from crosscheck import need
from gpt import GPT, GPTConfig
from gpt.errors import UsageError
from gpt.hf import config_from_hf, config_to_hf

TINY = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)


def tiny(**kw) -> GPTConfig:
    return GPTConfig(**{**TINY, **kw})


def random_model(seed=0, **kw) -> GPT:
    """A model whose every parameter (biases, LayerNorms too) is random, so nothing loads by luck."""
    model = GPT(tiny(**kw), seed=seed)
    rng = np.random.default_rng(seed + 100)
    for p in model.parameters():
        p.data[...] = rng.normal(0, 0.3, p.shape)
    return model


IDX = np.array([[1, 5, 2, 9, 0, 3], [10, 4, 4, 7, 8, 6]])


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test of this module runs with the network refused and huggingface_hub's variables unset."""
    def refuse(*args, **kwargs):
        raise OSError("network is off in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for var in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


def write_folder(path, tensors: dict, config: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("tie", [True, False])
def test_round_trip_gives_identical_logits(tmp_path, tie):
    model = random_model(tie_weights=tie)
    model.save_pretrained(tmp_path)
    loaded = GPT.from_pretrained(tmp_path)
    assert loaded.config == model.config
    assert not loaded.training  # eval mode, as transformers' from_pretrained
    np.testing.assert_array_equal(loaded(IDX).data, model(IDX).data)
    assert (loaded.lm_head.weight is loaded.transformer.wte.weight) == tie
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]  # no temp files


def test_saved_layout_is_hf_gpt2(tmp_path):
    GPT(tiny(), seed=0).save_pretrained(tmp_path / "tied")
    GPT(tiny(tie_weights=False), seed=0).save_pretrained(tmp_path / "untied")
    tied = load_file(str(tmp_path / "tied" / "model.safetensors"))
    untied = load_file(str(tmp_path / "untied" / "model.safetensors"))
    assert "lm_head.weight" not in tied  # HF gpt2 files don't store the tied head
    assert untied["lm_head.weight"].shape == (11, 16)  # HF lm_head is nn.Linear: (V, C)
    assert tied["transformer.wte.weight"].shape == (11, 16)
    assert tied["transformer.h.1.attn.c_attn.weight"].shape == (16, 48)  # Conv1D: (in, out)
    assert tied["transformer.h.1.mlp.c_proj.weight"].shape == (64, 16)
    assert len(tied) == 2 + 2 * 12 + 2 and all(v.dtype == np.float32 for v in tied.values())
    cfg = json.loads((tmp_path / "tied" / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"]
    assert (cfg["vocab_size"], cfg["n_positions"], cfg["n_embd"], cfg["n_layer"], cfg["n_head"]) == (11, 8, 16, 2, 2)
    assert cfg["tie_word_embeddings"] is True
    assert json.loads((tmp_path / "untied" / "config.json").read_text())["tie_word_embeddings"] is False


@pytest.mark.parametrize("tie", [True, False])
def test_without_qkv_bias_exports_a_zero_c_attn_bias(tmp_path, tie):
    """HF GPT-2 always has the c_attn bias: qkv_bias=False is written as zeros, the same logits."""
    model = random_model(tie_weights=tie, qkv_bias=False)
    assert model.transformer.h[0].attn.c_attn.bias is None
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    for i in range(2):
        bias = saved[f"transformer.h.{i}.attn.c_attn.bias"]
        assert bias.shape == (48,) and bias.dtype == np.float32 and not bias.any()
        assert saved[f"transformer.h.{i}.attn.c_proj.bias"].any()  # the other biases are the model's own
    loaded = GPT.from_pretrained(tmp_path)
    assert loaded.config == tiny(tie_weights=tie)  # qkv_bias None (same as bias): a model with the (zero) bias
    assert not loaded.transformer.h[0].attn.c_attn.bias.data.any()
    np.testing.assert_array_equal(loaded(IDX).data, model.eval()(IDX).data)


def test_without_any_bias_export_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match=r"GPTConfig.bias=False cannot be written as a Hugging Face GPT2Config"):
        random_model(bias=False, qkv_bias=True).save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_loads_original_gpt2_layout_without_prefix_and_with_buffers(tmp_path):
    """The original `gpt2` upload: GPT2Model keys (no `transformer.`), attn.bias/masked_bias buffers."""
    model = random_model()
    tensors = {k[len("transformer."):]: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    for i in range(2):
        tensors[f"h.{i}.attn.bias"] = np.tril(np.ones((8, 8), np.float32))[None, None]
        tensors[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    write_folder(tmp_path, tensors, config_to_hf(model.config))
    np.testing.assert_array_equal(GPT.from_pretrained(tmp_path)(IDX).data, model.eval()(IDX).data)


def test_tied_checkpoint_may_store_an_equal_lm_head(tmp_path):
    model = random_model()
    sd = dict(model.state_dict())  # holds lm_head.weight == wte
    write_folder(tmp_path / "ok", sd, config_to_hf(model.config))
    np.testing.assert_array_equal(GPT.from_pretrained(tmp_path / "ok")(IDX).data, model(IDX).data)
    sd["lm_head.weight"] = sd["lm_head.weight"] + 1
    write_folder(tmp_path / "bad", sd, config_to_hf(model.config))
    with pytest.raises(ValueError, match="lm_head.weight .* differs from transformer.wte.weight"):
        GPT.from_pretrained(tmp_path / "bad")


def test_load_as_float64(tmp_path):
    model = random_model()
    model.save_pretrained(tmp_path)
    m64 = GPT.from_pretrained(tmp_path, dtype=np.float64)
    assert all(p.dtype == np.float64 for p in m64.parameters())
    np.testing.assert_array_equal(m64.transformer.wte.weight.data, model.transformer.wte.weight.data)
    np.testing.assert_allclose(m64(IDX).data, model(IDX).data, rtol=1e-4, atol=1e-5)


def test_misshaped_tensor_names_key_and_both_shapes(tmp_path):
    model = random_model()
    sd = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    sd["transformer.h.1.mlp.c_fc.weight"] = np.zeros((64, 16), np.float32)  # transposed by mistake
    write_folder(tmp_path, sd, config_to_hf(model.config))
    with pytest.raises(ValueError, match=r"transformer\.h\.1\.mlp\.c_fc\.weight: checkpoint \(64, 16\) "
                                         r"vs config \(16, 64\)"):
        GPT.from_pretrained(tmp_path)


def test_wrong_vocab_names_the_embedding(tmp_path):
    model = random_model()
    sd = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    write_folder(tmp_path, sd, dict(config_to_hf(model.config), vocab_size=50257))
    with pytest.raises(ValueError, match=r"transformer\.wte\.weight: checkpoint \(11, 16\) vs config "
                                         r"\(50257, 16\).*vocab_size=50257"):
        GPT.from_pretrained(tmp_path)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    model = random_model(tie_weights=False)
    sd = dict(model.state_dict())
    del sd["transformer.h.0.ln_2.bias"], sd["lm_head.weight"]
    sd["transformer.h.0.mlp.extra"] = np.zeros(3, np.float32)
    write_folder(tmp_path, sd, config_to_hf(model.config))
    with pytest.raises(ValueError) as err:
        GPT.from_pretrained(tmp_path)
    msg = str(err.value)
    assert "missing keys: transformer.h.0.ln_2.bias, lm_head.weight" in msg
    assert "unexpected keys: transformer.h.0.mlp.extra" in msg


def test_missing_files(tmp_path):
    with pytest.raises(UsageError, match=r"config.json and model.safetensors not found \(a Hugging Face GPT-2"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config_to_hf(tiny())))
    with pytest.raises(UsageError, match=f"{tmp_path}: model.safetensors not found"):
        GPT.from_pretrained(tmp_path)


def test_crash_while_saving_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    old = random_model(seed=1)
    old.save_pretrained(tmp_path)

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        random_model(seed=2).save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    np.testing.assert_array_equal(GPT.from_pretrained(tmp_path)(IDX).data, old(IDX).data)


# ---------------------------------------------------------------------- transformers interop
@pytest.fixture(scope="module")
def hf():
    need("torch")
    return need("transformers")


@pytest.mark.crosscheck
@pytest.mark.parametrize("tie, qkv_bias", [(True, None), (False, None), (True, False), (False, False)])
def test_saved_model_opens_in_transformers(tmp_path, hf, tie, qkv_bias):
    import torch
    model = random_model(tie_weights=tie, qkv_bias=qkv_bias)  # qkv_bias=False: a zero c_attn bias in the file
    model.save_pretrained(tmp_path)
    theirs, info = hf.GPT2LMHeadModel.from_pretrained(str(tmp_path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]  # no tensor left to transformers' init
    theirs.eval()
    with torch.no_grad():
        logits = theirs(torch.tensor(IDX)).logits.numpy()
    np.testing.assert_allclose(logits, model(IDX).data, rtol=1e-4, atol=1e-4)


@pytest.mark.crosscheck
@pytest.mark.parametrize("tie", [True, False])
def test_transformers_saved_model_loads_here(tmp_path, hf, tie):
    import torch
    torch.manual_seed(0)
    cfg = hf.GPT2Config(vocab_size=11, n_positions=8, n_embd=16, n_layer=2, n_head=2, tie_word_embeddings=tie,
                        bos_token_id=0, eos_token_id=0)
    theirs = hf.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # HF's init leaves biases 0 and LayerNorms 1: randomise so every tensor matters
        for p in theirs.parameters():
            p.normal_(0, 0.3)
        logits = theirs(torch.tensor(IDX)).logits.numpy()
    theirs.save_pretrained(str(tmp_path))
    ours = GPT.from_pretrained(tmp_path)
    assert ours.config.tie_weights == tie and ours.config.n_layer == 2
    np.testing.assert_allclose(ours(IDX).data, logits, rtol=1e-4, atol=1e-4)


def test_saved_files_have_ordinary_permissions(tmp_path):
    import os
    GPT(tiny(), seed=0).save_pretrained(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


# ---------------------------------------------------------------------- errors: bad folders and files
def test_a_file_is_not_a_folder(tmp_path):
    random_model().save_pretrained(tmp_path)
    with pytest.raises(UsageError, match=r"model.safetensors is a file, not a folder: a Hugging Face GPT-2 "
                                         r"folder holds config.json and model.safetensors"):
        GPT.from_pretrained(tmp_path / "model.safetensors")


def test_a_training_run_is_named_as_such(tmp_path):
    (tmp_path / "latest.json").write_text('{"checkpoint": "ckpt-0000001-00000000"}')
    with pytest.raises(UsageError, match=r"not found .* training run or checkpoint: load that with gpt.checkpoint"):
        GPT.from_pretrained(tmp_path)


def truncate(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def set_config(text):
    return lambda folder: (folder / "config.json").write_text(text)


@pytest.mark.parametrize("damage, file, expected", [
    (truncate, "model.safetensors", r"not a readable safetensors file \(.*incomplete metadata.*\); expected the "
                                    r"weights of config.json's model: re-download or re-save it"),
    (lambda f: (f / "model.safetensors").write_bytes(b""), "model.safetensors", "not a readable safetensors file"),
    (lambda f: (f / "model.safetensors").write_bytes(b"x" * 100), "model.safetensors", "header too large"),
    (set_config("{not json"), "config.json", r"cannot read it as JSON \(.*line 1.*\); expected a Hugging Face "
                                             r"GPT-2 config.json"),
    (lambda f: (f / "config.json").write_bytes(b"\xff\xfe"), "config.json", "cannot read it as JSON"),
    (set_config("[1, 2]"), "config.json", r"expected a JSON object \(a Hugging Face GPT-2 config\), got an array"),
    (set_config('"gpt2"'), "config.json", "expected a JSON object .* got a string"),
    (set_config('{"model_type": "llama"}'), "config.json", "expected a Hugging Face config with model_type 'gpt2'"),
    (set_config('{"n_embd": 16, "n_head": 3}'), "config.json", "n_embd must be divisible by n_head"),
    (set_config('{"resid_pdrop": [1], "embd_pdrop": [1], "attn_pdrop": [1]}'), "config.json",
     r"dropout must be a real number, got \[1\]"),
])
def test_damaged_files_give_usage_errors_naming_the_file(tmp_path, damage, file, expected):
    random_model().save_pretrained(tmp_path)
    damage(tmp_path)
    with pytest.raises(UsageError, match=expected) as err:
        GPT.from_pretrained(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / file}: ") and "\n" not in str(err.value)


def test_integer_tensor_is_refused_naming_it(tmp_path):
    model = random_model()
    sd = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    sd["transformer.wte.weight"] = np.zeros((11, 16), np.int32)
    write_folder(tmp_path, sd, config_to_hf(model.config))
    with pytest.raises(UsageError, match=r"transformer.wte.weight has dtype I32, expected one of F16, F32, F64"):
        GPT.from_pretrained(tmp_path)


def test_dropout_replaces_the_checkpoints(tmp_path):
    model = random_model()
    sd = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    write_folder(tmp_path, sd, dict(config_to_hf(model.config), resid_pdrop=0.1, attn_pdrop=0.0))
    with pytest.raises(UsageError, match="one dropout .* pass dropout="):
        GPT.from_pretrained(tmp_path)
    loaded = GPT.from_pretrained(tmp_path, dropout=0.2)
    assert loaded.config.dropout == 0.2
    np.testing.assert_array_equal(loaded(IDX).data, model(IDX).data)  # eval mode: dropout off


# ---------------------------------------------------------------------- GPT-2 by name, through the hub cache
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(cache, repo_id, model, files=("config.json", "model.safetensors")):
    """Put `model` in `cache` under `repo_id` as huggingface_hub lays out a download: the files in
    blobs/ (named by their sha256), links to them in snapshots/<commit>/, and refs/main naming the commit."""
    import hashlib
    import os
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    staged = repo / "staged"
    model.save_pretrained(staged)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for name in files:
        blob = repo / "blobs" / hashlib.sha256((staged / name).read_bytes()).hexdigest()
        (staged / name).rename(blob)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    for leftover in staged.iterdir():
        leftover.unlink()
    staged.rmdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """huggingface_hub present, the network refused (calls counted), an empty folder as current directory."""
    hub = pytest.importorskip("huggingface_hub")
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network is off in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)  # read at import: only our env counts
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return SimpleNamespace(scan_cache_dir=hub.scan_cache_dir, network_calls=calls)


@pytest.mark.parametrize("env, cache", [("HF_HOME", "home/hub"), ("HF_HUB_CACHE", "cache"),
                                        ("HUGGINGFACE_HUB_CACHE", "cache")])
def test_gpt2_by_name_from_the_hub_cache_offline(tmp_path, monkeypatch, hub, env, cache):
    model = random_model()
    hub_cache(tmp_path / cache, "gpt2", model)
    assert {r.repo_id for r in hub.scan_cache_dir(tmp_path / cache).repos} == {"gpt2"}  # a layout hub reads
    monkeypatch.setenv(env, str(tmp_path / cache.removesuffix("/hub")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("gpt2", "openai-community/gpt2"):  # one model, cached under either name
        loaded = GPT.from_pretrained(name)
        assert loaded.config == model.config and not loaded.training
        np.testing.assert_array_equal(loaded(IDX).data, model(IDX).data)
    assert hub.network_calls == []


def test_gpt2_by_name_when_the_hub_is_unreachable_uses_the_cache(tmp_path, monkeypatch, hub):
    model = random_model(tie_weights=False)
    hub_cache(tmp_path / "hub", "openai-community/gpt2", model)  # as a download of the full name leaves it
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    loaded = GPT.from_pretrained("gpt2", dtype=np.float64)
    assert hub.network_calls  # it tried the hub first
    np.testing.assert_allclose(loaded(IDX).data, model(IDX).data, rtol=1e-4, atol=1e-5)


def test_not_cached_and_offline(tmp_path, monkeypatch, hub):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_cache(tmp_path / "hub", "gpt2", random_model(), files=("config.json",))  # a download cut short
    for name in ("gpt2", "gpt2-xl"):
        with pytest.raises(UsageError) as err:
            GPT.from_pretrained(name)
        assert str(err.value) == (
            f"{name!r} is not in the Hugging Face cache ({tmp_path / 'hub'}) and HF_HUB_OFFLINE is set, so it "
            f"cannot be downloaded; unset HF_HUB_OFFLINE on a machine with internet access to download it once "
            f"({'548 MB' if name == 'gpt2' else '6.4 GB'}), or pass a local folder holding config.json and "
            f"model.safetensors")
    assert hub.network_calls == []


def test_not_cached_and_no_network(tmp_path, monkeypatch, hub):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UsageError) as err:
        GPT.from_pretrained("gpt2-medium")
    assert str(err.value) == (
        f"cannot fetch 'gpt2-medium': this machine could not reach the Hugging Face hub (ConnectError: network "
        f"is off in tests) and the cache ({tmp_path}) does not hold it; connect to the internet to download it "
        f"once (1.5 GB), or pass a local folder holding config.json and model.safetensors")
    assert hub.network_calls


def test_without_huggingface_hub_a_name_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as err:
        GPT.from_pretrained("gpt2")
    assert str(err.value) == ("'gpt2' is not a local folder, and fetching it from the Hugging Face hub needs "
                              "huggingface_hub: pip install -e \".[hub]\" (or pip install huggingface_hub)")
    model = random_model()
    model.save_pretrained(tmp_path / "mine")  # a local folder needs no huggingface_hub
    np.testing.assert_array_equal(GPT.from_pretrained("mine")(IDX).data, model(IDX).data)


def test_unknown_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("gpt3", "openai-community/gpt3", "distilgpt2"):
        with pytest.raises(UsageError) as err:
            GPT.from_pretrained(name)
        assert str(err.value) == (
            f"{name!r} is not a folder (no such path) nor a GPT-2 model on the Hugging Face hub; known names: "
            f"gpt2, gpt2-medium, gpt2-large, gpt2-xl (or openai-community/<name>), or pass a folder holding "
            f"config.json and model.safetensors")


def test_a_local_folder_of_that_name_comes_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = random_model()
    model.save_pretrained(tmp_path / "gpt2")
    np.testing.assert_array_equal(GPT.from_pretrained("gpt2")(IDX).data, model(IDX).data)
    (tmp_path / "gpt2" / "model.safetensors").unlink()
    with pytest.raises(UsageError, match="model.safetensors not found .*; this local folder hides the hub's "
                                         "'gpt2': pass openai-community/gpt2 to download that"):
        GPT.from_pretrained("gpt2")
