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
# # Step 8: checking second derivatives
#
# `gradgradcheck` (PyTorch's semantics) checks the derivatives of the backward pass itself against
# central differences, in float64: it catches a backward that is right to first order and wrong to
# second, which `gradcheck` cannot see.
#
# `LeakyTanh` below computes the right first derivative, `g * (1 - tanh(x)^2)`, but with `.numpy()`
# it takes `tanh(x)` out of the graph: differentiated again, `tanh(x)` counts as a constant, and the
# second derivative is lost. `gradcheck` passes, `gradgradcheck` catches it.
#
# The code is [`examples/08_gradgradcheck.py`](../examples/08_gradgradcheck.py), as in the README.

# %%
from IPython.display import Code

Code(filename="../examples/08_gradgradcheck.py", language="python")

# %%
# %run ../examples/08_gradgradcheck.py

# %% [markdown]
# Checked: the engine's own tanh passes both checks, and `LeakyTanh` fails only the second.

# %%
print("gradgradcheck(tanh):", gradgradcheck(lambda x: x.tanh(), [x]))
try:
    gradgradcheck(LeakyTanh.apply, [x])
except GradcheckError as e:
    caught = str(e)
print(caught[:120], "...")
assert gradcheck(LeakyTanh.apply, [x]) and caught.startswith("gradcheck: gradient mismatch for input 0 (shape (2, 3, 5))")
