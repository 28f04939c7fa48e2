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
# # Step 1: a scalar, its graph and its gradient
#
# Every operation on a `Tensor` that requires a gradient records a node of a graph: the op, its
# inputs, and what its forward pass saved for the backward pass. `backward()` visits the nodes from
# the output back to the leaves and adds up each tensor's gradient contributions.
#
# Here `y = x * x + 2 * x`, so `dy/dx = 2x + 2`, which is 8 at `x = 3`. `x` is used three times (twice
# in `x * x`, once in `2 * x`): its gradient is the sum of three contributions, 3 + 3 + 2.
#
# The code is [`examples/01_scalar.py`](../examples/01_scalar.py), the same file the README shows;
# the first cell shows it, the second runs it. Its picture goes to `out/notebooks/`.

# %%
from IPython.display import SVG, Code

Code(filename="../examples/01_scalar.py", language="python")

# %%
# %run ../examples/01_scalar.py ../out/notebooks

# %% [markdown]
# The graph `render` drew: an SVG when Graphviz's `dot` program is installed (`apt-get install
# graphviz`), otherwise the `.dot` text, and then we show the README's copy of the picture instead.

# %%
from pathlib import Path

drawn = Path("../out/notebooks/01_scalar.svg")
SVG(filename=drawn if drawn.exists() else "../docs/01_scalar.svg")

# %% [markdown]
# The three contributions, one backward pass each: `x * x` gives `x` twice (once as each input of
# the product), and `2 * x` gives 2. The notebook checks the numbers it prints: a change in the
# engine that changes them fails CI.

# %%
from tinygrad_lite import Tensor

parts = []
for f in (lambda x: x * x, lambda x: 2 * x):
    x = Tensor(3.0, requires_grad=True)
    f(x).backward()
    parts.append(float(x.grad))
print("d(x*x)/dx =", parts[0], " d(2x)/dx =", parts[1], " sum =", sum(parts))
assert parts == [6.0, 2.0] and sum(parts) == 8.0
