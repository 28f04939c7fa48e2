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
# # Step 3: hooks and `retain_grad`
#
# `register_hook(fn)` calls `fn` with a tensor's gradient during the backward pass; a returned value
# replaces the gradient (here: clipping it to [-0.1, 0.1]). `retain_grad()` keeps the gradient of a
# tensor that is not a leaf, which backward otherwise frees once it has used it. `register_hook`
# returns a handle whose `remove()` undoes the registration.
#
# The code is [`examples/03_hooks.py`](../examples/03_hooks.py), as in the README.

# %%
from IPython.display import Code

Code(filename="../examples/03_hooks.py", language="python")

# %%
# %run ../examples/03_hooks.py

# %% [markdown]
# Checked: `h = x @ w` with `x = [1, 1]` gives `h = [1.5, 1]`, so `dy/dh = 1 - tanh(h)^2`; each
# row of `w` sees that gradient (`dL/dw = x^T dL/dh`), which the hook clipped to 0.1.

# %%
print("dy/dh =", h.grad.ravel(), " 1 - tanh(h)^2 =", 1 - np.tanh(h.numpy()).ravel() ** 2)
assert [f"{v:.6f}" for v in h.grad.ravel()] == ["0.180707", "0.419974"]
assert [f"{v:.6f}" for v in w.grad.ravel()] == ["0.180707", "0.419974"] * 2  # the hook removed
