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
# # Step 4: anomaly mode
#
# `sqrt(0) = 0` is fine, but its derivative `1 / (2 sqrt(x))` is infinite there, and the infinity
# flows silently into `x.grad`. Inside `with detect_anomaly():` every forward output and backward
# gradient is checked, and the first NaN or Inf raises `AnomalyError` naming the op, its input shapes
# and the line that created it. Off, it costs nothing: it watches the engine only while the block is
# open. `detect_anomaly(forward=False)` checks only the gradients, for code that makes infinities on
# purpose (`masked_fill(mask, -inf)` before a softmax).
#
# The code is [`examples/04_anomaly.py`](../examples/04_anomaly.py), as in the README.

# %%
from IPython.display import Code

Code(filename="../examples/04_anomaly.py", language="python")

# %%
# %run ../examples/04_anomaly.py

# %% [markdown]
# The same in a cell of this notebook: the message now names the line of the cell that made the
# infinity.

# %%
import numpy as np

from tinygrad_lite import AnomalyError, Tensor, detect_anomaly

x = Tensor([0.0, 1.0, 4.0], requires_grad=True)
with detect_anomaly():
    try:
        x.sqrt().sum().backward()  # the line the message names
    except AnomalyError as e:
        message = str(e)
print(message)
assert message.startswith("Inf in the backward of op 'sqrt': the gradient for input 0 (shape (3,), float32) "
                          "has 1 non-finite of 3 entries")
assert "x.sqrt().sum().backward()  # the line the message names" in message

# %% [markdown]
# Without anomaly mode the gradient is `[inf, 0.5, 0.25]`: `1 / (2 sqrt(x))` at 0, 1 and 4.

# %%
x.grad = None
x.sqrt().sum().backward()
print("x.grad =", x.grad)
assert x.grad.tolist() == [np.inf, 0.5, 0.25]
