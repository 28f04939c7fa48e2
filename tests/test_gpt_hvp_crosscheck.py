"""Second-order products through a whole GPT against PyTorch: the Hessian-vector product of the loss of
a tiny GPT (2 layers, n_embd 32, tied weights) at random weights, and a Jacobian-vector product of its
logits, equal torch.autograd.functional.hvp and torch.func.jvp on the same weights (float64)."""
from __future__ import annotations

import contextlib

import math

import numpy as np
import pytest

import tinygrad_lite.autograd.functional as AF
import tinygrad_lite.functional as F
from gpt import GPT, GPTConfig
from tinygrad_lite import Tensor, fast

from crosscheck import need

pytestmark = pytest.mark.crosscheck
torch = need("torch")
TF = torch.nn.functional

CFG = GPTConfig(vocab_size=23, block_size=8, n_layer=2, n_head=2, n_embd=32, tie_weights=True)


def _model_and_batch():
    model = GPT(CFG, seed=0, dtype=np.float64)
    rng = np.random.default_rng(1)
    for name, p in model.named_parameters():  # random weights, not the init (LayerNorm weights around 1)
        p.data[...] = rng.standard_normal(p.shape) * 0.3 + (1.0 if ".ln_" in name and name.endswith("weight") else 0.0)
    idx, targets = rng.integers(0, CFG.vocab_size, (2, 6)), rng.integers(0, CFG.vocab_size, (2, 6))
    return model, idx, targets


def _swapped(model, names, tensors, fn):
    """Run fn() with the model's parameters `names` replaced by `tensors` (a tied one in every place)."""
    by_id = {id(p): t for (n, p), t in zip([(n, dict(model.named_parameters())[n]) for n in names], tensors)}
    saved = []
    for _, module in model.named_modules():
        for attr, value in list(vars(module).items()):
            if id(value) in by_id:
                saved.append((module, attr, value))
                setattr(module, attr, by_id[id(value)])
    try:
        return fn()
    finally:
        for module, attr, value in saved:
            setattr(module, attr, value)


def _torch_logits(params: dict, idx):
    """The same GPT-2 in PyTorch, from a dict name -> tensor (Linear weights (in, out), tied head)."""
    C, H = CFG.n_embd, CFG.n_head
    B, T = idx.shape
    x = params["transformer.wte.weight"][idx] + params["transformer.wpe.weight"][:T]
    mask = torch.triu(torch.full((T, T), -math.inf, dtype=torch.float64), 1)
    for i in range(CFG.n_layer):
        h = f"transformer.h.{i}."
        a = TF.layer_norm(x, (C,), params[h + "ln_1.weight"], params[h + "ln_1.bias"], 1e-5)
        q, k, v = (a @ params[h + "attn.c_attn.weight"] + params[h + "attn.c_attn.bias"]).split(C, dim=2)
        q, k, v = (t.reshape(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C // H) + mask, -1) @ v
        y = att.transpose(1, 2).reshape(B, T, C)
        x = x + y @ params[h + "attn.c_proj.weight"] + params[h + "attn.c_proj.bias"]
        a = TF.layer_norm(x, (C,), params[h + "ln_2.weight"], params[h + "ln_2.bias"], 1e-5)
        m = TF.gelu(a @ params[h + "mlp.c_fc.weight"] + params[h + "mlp.c_fc.bias"], approximate="tanh")
        x = x + m @ params[h + "mlp.c_proj.weight"] + params[h + "mlp.c_proj.bias"]
    x = TF.layer_norm(x, (C,), params["transformer.ln_f.weight"], params["transformer.ln_f.bias"], 1e-5)
    return x @ params["transformer.wte.weight"].T  # the tied head


@pytest.mark.parametrize("mode", ["fast", "math-first"])
def test_hvp_of_a_tiny_gpt_loss_equals_pytorchs(mode):
    model, idx, targets = _model_and_batch()
    names = [n for n, _ in model.named_parameters()]  # the tied matrix once
    params = [p for _, p in model.named_parameters()]
    assert "lm_head.weight" not in names and model.lm_head.weight is model.transformer.wte.weight
    rng = np.random.default_rng(7)
    vs = [rng.standard_normal(p.shape) for p in params]

    def loss(*ps):
        return _swapped(model, names, ps, lambda: F.cross_entropy(model(idx), targets))

    with (contextlib.nullcontext() if mode == "math-first" else fast.enabled()):
        value, hv = AF.hvp(loss, tuple(params), tuple(Tensor(v, dtype=np.float64) for v in vs))

    tp = [torch.tensor(p.data) for p in params]
    t_idx, t_tgt = torch.tensor(idx), torch.tensor(targets)

    def t_loss(*ps):
        return TF.cross_entropy(_torch_logits(dict(zip(names, ps)), t_idx).reshape(-1, CFG.vocab_size), t_tgt.reshape(-1))

    t_value, t_hv = torch.autograd.functional.hvp(t_loss, tuple(tp), tuple(torch.tensor(v) for v in vs))
    assert value.item() == pytest.approx(t_value.item(), rel=1e-12)
    scale = max(float(np.abs(h.numpy()).max()) for h in t_hv)
    for name, a, b in zip(names, hv, t_hv):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-11 * scale, err_msg=name)


def test_jvp_of_tiny_gpt_logits_equals_torch_func_jvp():
    model, idx, _ = _model_and_batch()
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    rng = np.random.default_rng(8)
    ts = [rng.standard_normal(p.shape) for p in params]
    out, jv = AF.jvp(lambda *ps: _swapped(model, names, ps, lambda: model(idx)), tuple(params),
                     tuple(Tensor(t, dtype=np.float64) for t in ts))
    t_out, t_jv = torch.func.jvp(lambda *ps: _torch_logits(dict(zip(names, ps)), torch.tensor(idx)),
                                 tuple(torch.tensor(p.data) for p in params), tuple(torch.tensor(t) for t in ts))
    np.testing.assert_allclose(out.numpy(), t_out.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jv.numpy(), t_jv.numpy(), rtol=1e-9, atol=1e-11 * float(np.abs(t_jv.numpy()).max()))
