# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Step 5: one GPT-2 block
#
# A block is `x + attn(ln_1(x))` followed by `+ mlp(ln_2(.))`: layer norm, causal self-attention
# and a residual add, then layer norm, a two-layer MLP with GELU and a second residual add.
# `Module.register_forward_hook` watches each sub-module's output go by; `render(..., model=model)`
# names the parameters by their module path, and with `retain_grads` every op in the picture shows
# the norm of its gradient.
#
# The code is [`examples/05_block.py`](../examples/05_block.py), as in the README.

# %%
from IPython.display import Code, Image

Code(filename="../examples/05_block.py", language="python")

# %%
# %run ../examples/05_block.py ../out/notebooks

# %% [markdown]
# The block's graph (drawn by `render` with Graphviz's `dot`; without it, the README's copy). Each
# box is an op or a parameter; the number under an op is the norm of its gradient.

# %%
from pathlib import Path

drawn = Path("../out/notebooks/05_block.png")
Image(filename=drawn if drawn.exists() else "../docs/05_block.png")

# %% [markdown]
# Checked: the numbers the forward hook printed for the whole block, and the shapes of two
# gradients. The residual adds keep the output's scale near the input's (std 1): the attention and
# MLP outputs are small at GPT-2's init, their `c_proj` weights scaled by `1 / sqrt(2 n_layer)`.

# %%
print(f"block output: mean {y.data.mean():+.4f}  std {y.data.std():.4f}")
assert f"{y.data.mean():+.4f} {y.data.std():.4f}" == "-0.0283 1.0022"
assert x.grad.shape == (2, 8, 128) and block.attn.c_attn.weight.grad.shape == (128, 384)
