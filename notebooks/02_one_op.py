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
# # Step 2: one op, forward and backward
#
# An op is a `tinygrad_lite.Function`, as in PyTorch's `torch.autograd.Function`: a `forward` on
# NumPy arrays that keeps what it needs with `ctx.save_for_backward`, and a `backward` that turns the
# upstream gradient `g = dL/d(out)` into one gradient per input, reading the saved values back as
# Tensors from `ctx.saved_tensors`. `Softplus.apply(x)` runs it and records the node. Every built-in
# op is written this way.
#
# - For `a * b` the backward is `g * b` for `a` and `g * a` for `b`.
# - For `softplus(x) = log(1 + e^x)` it is `g * sigmoid(x)`.
#
# Because the backward is written in Tensor ops, it can itself be differentiated
# (`backward(create_graph=True)`), and `gradcheck` compares it with central differences, in float64,
# for every entry of the Jacobian.
#
# The code is [`examples/02_one_op.py`](../examples/02_one_op.py), as in the README.

# %%
from IPython.display import Code

Code(filename="../examples/02_one_op.py", language="python")

# %%
# %run ../examples/02_one_op.py

# %% [markdown]
# The numbers printed above, checked (CI runs this notebook: a change in the engine that changes
# them fails it). The second derivative of softplus is `sigmoid(z) (1 - sigmoid(z))`: 0.25 at `z = 0`,
# where softplus bends the most.

# %%
print("a.grad", a.grad, " b.grad", b.grad, " d2", d2.numpy())
assert a.grad.tolist() == [2.0, -5.0, 12.0] and b.grad.tolist() == [0.5, -2.0, 6.0]
assert [f"{v:.6f}" for v in d2.numpy()] == ["0.196612", "0.250000", "0.104994"]

# %% [markdown]
# Try it: change the backward of `Softplus` to return `g * x.tanh()` and run the cells again:
# `gradcheck` raises `GradcheckError`, naming the input, the entry and both values.
