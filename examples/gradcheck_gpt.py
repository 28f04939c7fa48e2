"""Finite-difference check of a whole tiny GPT's gradients in float64.

Compares backprop with central differences (L(w + eps) - L(w - eps)) / (2 eps) for the loss with
respect to every parameter: full Jacobian for the tied embedding, random projections for the rest.

    python examples/gradcheck_gpt.py
"""
import time

import numpy as np

from gpt import GPT, GPTConfig
from tinygrad_lite import gradcheck

config = GPTConfig(vocab_size=11, block_size=5, n_layer=2, n_head=2, n_embd=16)
model = GPT(config, seed=0, dtype=np.float64)
rng = np.random.default_rng(0)
for p in model.parameters():  # larger than GPT-2's init, so every nonlinearity is really exercised
    p.data += rng.normal(0.0, 0.3, p.shape)
idx, targets = rng.integers(0, 11, (2, 5)), rng.integers(0, 11, (2, 5))

params = dict(model.named_parameters())
for name, p in params.items():
    p.name = name  # gradcheck names failing inputs by .name
print(f"{model.num_parameters():,} parameters, idx {idx.shape}")


def loss_fn(*_params):  # the model reads its parameters in place; gradcheck perturbs them there
    return model.loss(idx, targets)


t0 = time.perf_counter()
wte = params["transformer.wte.weight"]
gradcheck(loss_fn, [wte], atol=1e-7, rtol=1e-5)
print(f"full check of transformer.wte.weight {wte.shape} (tied with lm_head): ok")
rest = [p for n, p in params.items() if p is not wte]
gradcheck(loss_fn, rest, atol=1e-7, rtol=1e-5, projections=True)
print(f"fast check of the other {len(rest)} parameters: ok ({time.perf_counter() - t0:.1f} s)")
