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
# # Step 9: the curvature along the gradient
#
# A Hessian-vector product costs two backward passes and never forms the Hessian: `Hv` is the
# gradient of `g . v`, taken through the backward pass. With `v = g`, the curvature of the loss
# along the gradient is `c = g^T H g / g^T g`. A gradient step of size `lr` changes the loss by about
#
#     -lr |g|^2 + lr^2 / 2  g^T H g
#
# which is most negative at `lr = 1 / c` and back to zero at `lr = 2 / c`: larger steps make the
# loss rise (while the quadratic model holds).
#
# The code is [`examples/09_curvature.py`](../examples/09_curvature.py), as in the README.

# %%
# %matplotlib inline
from IPython.display import Code

Code(filename="../examples/09_curvature.py", language="python")

# %%
# %run ../examples/09_curvature.py

# %% [markdown]
# The picture: the loss after a step `theta - lr g` for step sizes up to `2.5 / c` (one forward pass
# each), against the quadratic model that `g^T H g` predicts. Near `lr = 0` they agree; farther out
# the higher derivatives take over and the loss rises faster than the model says.

# %%
from gpt import plots

c = gHg / gg
lrs = np.linspace(0.0, 2.5 / c, 11)
losses = []
for lr in lrs:
    for p, gi in zip(params, v):
        p.data -= lr * gi.numpy()  # theta - lr g
    losses.append(loss_fn().item())
    for p, gi in zip(params, v):
        p.data += lr * gi.numpy()  # back to theta
plots.curvature_line(lrs, losses, loss.item(), gg, gHg)

# %% [markdown]
# Checked: the numbers printed above, and that the best step of the quadratic model, `lr = 1 / c`,
# really lowers the loss.

# %%
best = losses[4]  # lrs[4] = 1 / c
print(f"loss {loss.item():.5f}  c = {c:.5f}  1/c = {1 / c:.2f}  loss after a step of 1/c: {best:.5f}")
assert f"{loss.item():.5f} {c:.5f} {fd:.5f}" == "2.01361 0.01633 0.01633"
assert abs(lrs[4] - 1 / c) < 1e-9 and f"{best:.5f}" == "1.16555"
