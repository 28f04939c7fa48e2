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
# # Step 10: the graph of a backward pass
#
# With `create_graph=True` the gradient is an ordinary Tensor made by ops, so `render` draws it, and
# it can be differentiated again. Here `y = sum(tanh(x) * w)`: `dy/dx = (1 - tanh(x)^2) * w * g`,
# where `g` is the upstream gradient, the constant that seeds the backward pass.
#
# The code is [`examples/10_backward_graph.py`](../examples/10_backward_graph.py), as in the README.

# %%
from IPython.display import SVG, Code

Code(filename="../examples/10_backward_graph.py", language="python")

# %%
# %run ../examples/10_backward_graph.py ../out/notebooks

# %% [markdown]
# The graph of the backward pass (drawn with Graphviz's `dot`; without it, the README's copy):
# `tanh`, `mul` and `sub` made by the backward of `tanh` and of `mul`.

# %%
from pathlib import Path

drawn = Path("../out/notebooks/10_backward_graph.svg")
SVG(filename=drawn if drawn.exists() else "../docs/10_backward_graph.svg")

# %% [markdown]
# Checked: the numbers printed above.

# %%
print("dy/dx", dx.numpy(), " d2y/dx2", d2.numpy())
assert [f"{v:.4f}" for v in dx.numpy()] == ["1.1797", "0.8399", "-0.0353"]
assert [f"{v:.4f}" for v in d2.numpy()] == ["-1.0903", "1.2794", "0.0681"]
