"""GPT model: shapes, names, init, tying, gradients (float64 gradcheck), causality, KV cache, bad input."""
import math

import numpy as np
import pytest

import tinygrad_lite.functional as F
from gpt import GPT, GPTConfig, KVCache
from gpt.config import count_parameters
from tinygrad_lite import Tensor, gradcheck, no_grad

TINY = dict(vocab_size=11, block_size=5, n_layer=2, n_head=2, n_embd=16)


def tiny(**kw) -> GPTConfig:
    return GPTConfig(**{**TINY, **kw})


def randomize(model: GPT, seed: int = 0, scale: float = 0.4) -> GPT:
    """Replace every parameter by non-trivial random values (LayerNorm weights near 1) so that
    every nonlinearity is exercised and no gradient vanishes by symmetry."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        noise = rng.normal(0.0, scale, p.shape)
        p.data[...] = 1.0 + noise if (".ln_" in name and name.endswith("weight")) else noise
    return model


def ids(shape, vocab=11, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, shape)


# ---------------------------------------------------------------------- independent NumPy reference
def reference_logits(model: GPT, idx: np.ndarray) -> np.ndarray:
    """GPT-2 forward written directly in NumPy float64 from the parameters (no tinygrad_lite ops)."""
    c = model.config
    P = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    P.update({k.replace(".weight", ".bias"): 0.0 for k in list(P) if k.replace(".weight", ".bias") not in P})

    def ln(x, pre):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + c.layer_norm_eps) * P[pre + ".weight"] + P[pre + ".bias"]

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    B, T = idx.shape
    H, D = c.n_head, c.n_embd // c.n_head
    x = P["transformer.wte.weight"][idx] + P["transformer.wpe.weight"][:T]
    for i in range(c.n_layer):
        pre = f"transformer.h.{i}."
        h = ln(x, pre + "ln_1") @ P[pre + "attn.c_attn.weight"] + P[pre + "attn.c_attn.bias"]
        q, k, v = (h[..., j * c.n_embd:(j + 1) * c.n_embd].reshape(B, T, H, D).transpose(0, 2, 1, 3)
                   for j in range(3))
        att = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D)
        att = np.where(np.tril(np.ones((T, T), bool)), att, -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, c.n_embd)
        x = x + y @ P[pre + "attn.c_proj.weight"] + P[pre + "attn.c_proj.bias"]
        h = gelu(ln(x, pre + "ln_2") @ P[pre + "mlp.c_fc.weight"] + P[pre + "mlp.c_fc.bias"])
        x = x + h @ P[pre + "mlp.c_proj.weight"] + P[pre + "mlp.c_proj.bias"]
    return ln(x, "transformer.ln_f") @ P["lm_head.weight"].T


@pytest.mark.parametrize("tie, kw", [(True, {}), (False, {}), (True, dict(qkv_bias=False)),
                                     (False, dict(bias=False, qkv_bias=True))])
def test_forward_matches_numpy_reference(tie, kw):
    model = randomize(GPT(tiny(tie_weights=tie, **kw), dtype=np.float64), seed=3)
    idx = ids((3, 5), seed=1)
    np.testing.assert_allclose(model(idx).data, reference_logits(model, idx), rtol=1e-10, atol=1e-10)


def test_shapes_and_dtypes():
    model = GPT(tiny(), seed=0)
    logits = model(ids((3, 4)))
    assert isinstance(logits, Tensor) and logits.shape == (3, 4, 11) and logits.dtype == np.float32
    assert all(p.dtype == np.float32 for p in model.parameters())
    m64 = GPT(tiny(), seed=0, dtype=np.float64)
    assert m64(Tensor(ids((1, 5)))).dtype == np.float64  # an integer Tensor works too
    assert all(p.dtype == np.float64 for p in m64.parameters())


def test_parameter_names_are_gpt2s():
    names = [n for n, _ in GPT(tiny(n_layer=1, tie_weights=False)).named_parameters()]
    block = [f"transformer.h.0.{m}.{w}" for m in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2",
                                                  "mlp.c_fc", "mlp.c_proj") for w in ("weight", "bias")]
    assert names == ["transformer.wte.weight", "transformer.wpe.weight", *block,
                     "transformer.ln_f.weight", "transformer.ln_f.bias", "lm_head.weight"]
    sd = GPT(tiny(n_layer=1)).state_dict()
    assert sd["transformer.h.0.attn.c_attn.weight"].shape == (16, 48)  # (in, out) like GPT-2's Conv1D
    assert sd["transformer.h.0.mlp.c_proj.weight"].shape == (64, 16)
    assert sd["lm_head.weight"].shape == (11, 16)  # (V, C) like wte


@pytest.mark.parametrize("kw, biases", [
    (dict(), ["ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"]),
    (dict(qkv_bias=False), ["ln_1", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"]),  # exactly c_attn's goes
    (dict(bias=False), []),
    (dict(bias=False, qkv_bias=True), ["attn.c_attn"]),
])
def test_qkv_bias_decides_the_c_attn_bias_alone(kw, biases):
    model = GPT(tiny(n_layer=1, **kw))
    names = [n for n, _ in model.named_parameters() if n.endswith(".bias")]
    ln_f = ["transformer.ln_f.bias"] if model.config.bias else []
    assert names == [f"transformer.h.0.{m}.bias" for m in biases] + ln_f
    assert (model.transformer.h[0].attn.c_attn.bias is None) == ("attn.c_attn" not in biases)


def test_tied_head_is_the_same_parameter():
    model = GPT(tiny(), seed=0)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert sum(p is model.transformer.wte.weight for p in model.parameters()) == 1
    untied = GPT(tiny(tie_weights=False), seed=0)
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    assert len(untied.parameters()) == len(model.parameters()) + 1


def test_init_statistics_and_seeding():
    cfg = GPTConfig(vocab_size=2000, block_size=64, n_layer=4, n_head=4, n_embd=128, tie_weights=False)
    model = GPT(cfg, seed=7)
    p = dict(model.named_parameters())
    std = lambda name: float(p[name].data.std())  # noqa: E731
    for name in ("transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight",
                 "transformer.h.1.attn.c_attn.weight", "transformer.h.3.mlp.c_fc.weight"):
        assert abs(std(name) - 0.02) < 0.002, name
    for name in ("transformer.h.0.attn.c_proj.weight", "transformer.h.2.mlp.c_proj.weight"):
        assert abs(std(name) - 0.02 / math.sqrt(2 * 4)) < 0.0008, name
    for name, q in p.items():
        if name.endswith("bias"):
            assert not q.data.any(), name
        elif ".ln_" in name:
            assert (q.data == 1).all(), name
        else:
            assert abs(float(q.data.mean())) < 0.002, name
    same, other = GPT(cfg, seed=7), GPT(cfg, seed=8)
    for (n, a), b, c in zip(model.named_parameters(), same.parameters(), other.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
        if n.endswith("weight") and ".ln_" not in n:
            assert not np.array_equal(a.data, c.data), n
    m64 = GPT(cfg, seed=7, dtype=np.float64)  # the same draws, cast
    np.testing.assert_array_equal(m64.transformer.wte.weight.data, model.transformer.wte.weight.data)


# ---------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("preset,tie,expected", [("gpt2", True, 124_439_808), ("gpt2", False, 163_037_184),
                                                 ("gpt2-16l", True, 152_791_296)])
def test_num_parameters_of_gpt2(monkeypatch, preset, tie, expected):
    monkeypatch.setattr(GPT, "_init_weights", lambda self, rng, dtype: None)  # uninitialised: no RAM touched
    model = GPT(GPTConfig.from_preset(preset, tie_weights=tie))
    assert model.num_parameters() == expected
    wpe = 1024 * 768
    wte = 0 if tie else 50257 * 768
    assert model.num_parameters(exclude_embeddings=True) == expected - wpe - wte


# "LLMs from scratch": GPT_CONFIG_124M, whose model has no q/k/v bias (124,412,160 tied, 163,009,536 untied)
LLMS_FROM_SCRATCH_124M = {"vocab_size": 50257, "context_length": 1024, "emb_dim": 768, "n_heads": 12,
                          "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False}


@pytest.mark.parametrize("tie, expected", [(True, 124_412_160), (False, 163_009_536)])
def test_num_parameters_of_llms_from_scratch_gpt2(monkeypatch, tie, expected):
    monkeypatch.setattr(GPT, "_init_weights", lambda self, rng, dtype: None)  # uninitialised: no RAM touched
    config = GPTConfig.from_dict({**LLMS_FROM_SCRATCH_124M, "tie_weights": tie})
    model = GPT(config)
    assert model.num_parameters() == expected == count_parameters(config)["total"]
    rows = dict(model.parameter_breakdown())
    assert rows["transformer.h.0.attn.c_attn"] == 768 * 3 * 768  # the difference from GPT-2: no 3C bias
    assert rows["transformer.h.0.attn.c_proj"] == 768 * 768 + 768  # every other bias kept
    gpt2 = GPT(GPTConfig.from_preset("gpt2", tie_weights=tie))
    assert gpt2.num_parameters() - expected == 12 * 3 * 768


@pytest.mark.parametrize("kw", [dict(), dict(tie_weights=False), dict(bias=False), dict(n_inner=24, n_layer=3),
                                dict(qkv_bias=False), dict(bias=False, qkv_bias=True)])
def test_parameter_breakdown_agrees_with_config_formula(kw):
    model = GPT(tiny(**kw))
    rows = dict(model.parameter_breakdown())
    counts = count_parameters(model.config)
    assert sum(rows.values()) == model.num_parameters() == counts["total"]
    assert rows["transformer.wte"] == counts["wte"] and rows["transformer.wpe"] == counts["wpe"]
    assert rows.get("lm_head", 0) == counts["lm_head"]
    for i in range(model.config.n_layer):
        for part in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"):
            assert rows[f"transformer.h.{i}.{part}"] == counts[f"block.{part}"]
    assert rows["transformer.ln_f"] == counts["ln_f"]


# ---------------------------------------------------------------------- gradients
def test_gradcheck_whole_tiny_gpt():
    """float64 finite differences of the loss w.r.t. every parameter: full Jacobian for the tied
    embedding, the position embedding and ln_f, fast (random projection) mode for the rest."""
    model = randomize(GPT(tiny(), dtype=np.float64), seed=1)
    idx, targets = ids((2, 5), seed=2), ids((2, 5), seed=3)
    named = dict(model.named_parameters())
    for n, p in named.items():
        p.name = n
    fn = lambda *params: model.loss(idx, targets)  # noqa: E731  (reads the parameters in place)
    full = [named[n] for n in ("transformer.wte.weight", "transformer.wpe.weight",
                               "transformer.ln_f.weight", "transformer.ln_f.bias")]
    assert gradcheck(fn, full, eps=1e-6, atol=1e-7, rtol=1e-5)
    rest = [p for n, p in named.items() if p not in full]
    assert gradcheck(fn, rest, eps=1e-6, atol=1e-7, rtol=1e-5, projections=True, seed=0)
    assert gradcheck(fn, rest, eps=1e-6, atol=1e-7, rtol=1e-5, projections=True, seed=1)


def test_gradcheck_untied_head_and_logits_output():
    model = randomize(GPT(tiny(tie_weights=False, n_layer=1), dtype=np.float64), seed=4)
    idx = ids((2, 4), seed=5)
    params = model.parameters()
    v = np.random.default_rng(6).normal(size=(2, 4, 11))  # a random, signed upstream gradient
    assert gradcheck(lambda *ps: model(idx), params, projections=True, grad_outputs=v, atol=1e-7, rtol=1e-5)
    assert gradcheck(lambda *ps: model(idx), [model.lm_head.weight], atol=1e-7, rtol=1e-5)


def test_tied_gradient_is_sum_of_embedding_and_head_paths():
    tied = randomize(GPT(tiny(), dtype=np.float64), seed=5)
    untied = GPT(tiny(tie_weights=False), dtype=np.float64)
    for name, p in untied.named_parameters():  # the same values, the head a separate copy
        src = "transformer.wte.weight" if name == "lm_head.weight" else name
        p.data[...] = tied.state_dict()[src]
    idx, targets = ids((2, 5), seed=6), ids((2, 5), seed=7)
    tied.loss(idx, targets).backward()
    untied.loss(idx, targets).backward()
    emb, head = untied.transformer.wte.weight.grad, untied.lm_head.weight.grad
    assert np.abs(emb).max() > 1e-3 and np.abs(head).max() > 1e-3  # both paths really contribute
    np.testing.assert_allclose(tied.transformer.wte.weight.grad, emb + head, rtol=1e-12, atol=1e-14)


def test_loss_helper_and_init_loss_near_uniform():
    model = GPT(GPTConfig(vocab_size=500, block_size=16, n_layer=2, n_head=2, n_embd=32), seed=0)
    idx, targets = ids((4, 16), vocab=500, seed=1), ids((4, 16), vocab=500, seed=2)
    loss = model.loss(idx, targets)
    assert loss.item() == F.cross_entropy(model(idx), targets).item()
    assert abs(loss.item() - math.log(500)) < 0.1  # small init: near-uniform predictions


# ---------------------------------------------------------------------- causality, batch independence
def test_changing_token_t_never_changes_earlier_logits():
    model = randomize(GPT(tiny(block_size=8), dtype=np.float64), seed=2)
    idx = ids((2, 8), seed=8)
    base = model(idx).data
    for t in range(8):
        changed = idx.copy()
        changed[:, t] = (changed[:, t] + 1 + np.arange(2)) % 11
        out = model(changed).data
        np.testing.assert_array_equal(out[:, :t], base[:, :t])  # exactly: no leak at all
        assert np.abs(out[:, t:] - base[:, t:]).max(axis=-1).min() > 1e-6  # every later position moves


def test_batch_rows_are_independent():
    model = GPT(tiny(), seed=0)
    idx = ids((3, 5), seed=9)
    full = model(idx).data
    for b in range(3):
        np.testing.assert_allclose(model(idx[b:b + 1]).data[0], full[b], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- dropout, train/eval
def test_dropout_only_in_training_and_seeded():
    cfg = tiny(dropout=0.3)
    idx = ids((2, 5), seed=10)
    a, b = GPT(cfg, seed=1), GPT(cfg, seed=1)
    out_a1, out_a2, out_b1 = a(idx).data, a(idx).data, b(idx).data
    assert not np.allclose(out_a1, out_a2)  # fresh masks every call
    np.testing.assert_array_equal(out_a1, out_b1)  # the same seed gives the same masks
    plain = GPT(tiny(), seed=1)
    a.eval()
    np.testing.assert_array_equal(a(idx).data, plain(idx).data)
    a.train()
    assert not np.allclose(a(idx).data, plain(idx).data)


# ---------------------------------------------------------------------- KV cache
def test_kv_cache_matches_full_forward():
    cfg = tiny(block_size=8)
    model = randomize(GPT(cfg, dtype=np.float64), seed=3)
    idx = ids((2, 8), seed=11)
    full = model(idx).data
    cache = KVCache(cfg, batch_size=2, dtype=np.float64)
    with no_grad():
        parts = [model(idx[:, :3], cache=cache).data]
        for t in range(3, 8):
            parts.append(model(idx[:, t:t + 1], cache=cache).data)
    assert cache.pos == 8
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, rtol=1e-12, atol=1e-12)
    cache.reset()
    with no_grad():
        np.testing.assert_allclose(model(idx[:, :2], cache=cache).data, full[:, :2], rtol=1e-12)


def test_kv_cache_errors():
    cfg = tiny(block_size=4)
    model = GPT(cfg, seed=0)
    cache = KVCache(cfg, batch_size=1)
    with pytest.raises(RuntimeError, match="no_grad"):
        model(ids((1, 2)), cache=cache)
    with no_grad():
        model(ids((1, 3)), cache=cache)
        with pytest.raises(ValueError, match="block_size=4"):
            model(ids((1, 2)), cache=cache)
        with pytest.raises(ValueError, match="batch 1"):
            model(ids((2, 1)), cache=KVCache(cfg, batch_size=1))
        with pytest.raises(ValueError, match="holds 2 positions"):
            model(ids((1, 3)), cache=KVCache(cfg, batch_size=1, max_len=2))


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("idx,exc,pattern", [
    (np.array([[1, 2, 11]]), ValueError, r"token id 11 at position \(batch 0, t 2\).*\[0, vocab_size=11\)"),
    (np.array([[1, -1, 2]]), ValueError, r"token id -1 at position \(batch 0, t 1\)"),
    (np.array([[1.0, 2.0]]), TypeError, r"integers, got dtype float64"),
    (Tensor(np.array([[1.0, 2.0]])), TypeError, r"integers, got dtype float32"),
    (np.array([[True, False]]), TypeError, r"integers, got dtype bool"),
    (np.zeros((1, 6), dtype=np.int64), ValueError, r"length 6 exceeds block_size=5"),
    (np.array([1, 2, 3]), ValueError, r"shape \(B, T\), got shape \(3,\).*idx\[None\]"),
    (np.zeros((1, 2, 3), dtype=np.int64), ValueError, r"shape \(B, T\), got shape \(1, 2, 3\)"),
    (np.zeros((1, 0), dtype=np.int64), ValueError, r"at least one token"),
])
def test_bad_input_raises_clear_error(idx, exc, pattern):
    with pytest.raises(exc, match=pattern):
        GPT(tiny(), seed=0)(idx)


def test_list_input_is_accepted():
    model = GPT(tiny(), seed=0)
    np.testing.assert_array_equal(model([[1, 2, 3]]).data, model(np.array([[1, 2, 3]])).data)
