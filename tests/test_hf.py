"""Hugging Face GPT-2 checkpoints: save_pretrained / from_pretrained round trips, key variants, errors."""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import gpt.hf as checkpoint
from crosscheck import need
from gpt import GPT, GPTConfig
from gpt.hf import config_from_hf, config_to_hf
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
    with pytest.raises(FileNotFoundError, match="config.json"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config_to_hf(tiny())))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
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
@pytest.mark.parametrize("tie", [True, False])
def test_saved_model_opens_in_transformers(tmp_path, hf, tie):
    import torch
    model = random_model(tie_weights=tie)
    model.save_pretrained(tmp_path)
    theirs = hf.GPT2LMHeadModel.from_pretrained(str(tmp_path)).eval()
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
