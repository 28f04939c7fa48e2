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
# # Step 7: second derivatives, a Hessian and its eigenvalues
#
# Every op's backward is written in Tensor ops, so a backward pass can itself be recorded
# (`create_graph=True`) and differentiated again. `tinygrad_lite.autograd.functional` has the usual
# products with PyTorch's names and conventions: `vjp`, `jvp`, `vhp`, `hvp`, `jacobian`, `hessian`.
#
# `f(x, y) = x^2 y + y^3 - 3 x y` has a zero gradient at (0, 0) and at (1.5, sqrt(0.75)). The
# Hessian's eigenvalues tell them apart: both positive, `f` curves up in every direction (a minimum);
# one of each sign, up along one eigenvector and down along the other (a saddle point).
#
# The code is [`examples/07_hessian.py`](../examples/07_hessian.py), as in the README.

# %%
# %matplotlib inline
from IPython.display import Code

Code(filename="../examples/07_hessian.py", language="python")

# %%
# %run ../examples/07_hessian.py

# %% [markdown]
# The picture: the contours of `f`, the two points, and through each the eigenvectors of its
# Hessian, blue where `f` curves up along it, red where it curves down, labelled with the eigenvalue.
# At the saddle, `f` falls along the diagonal `x = y` (`-3 x y` wins) and rises across it. `f` is
# evaluated on the grid by the same function `f`, on a Tensor holding the two grids.

# %%
from gpt import plots

points = [(0.0, 0.0), (1.5, np.sqrt(0.75))]
hessians = [hessian(f, Tensor(point, requires_grad=True, dtype=np.float64)).numpy() for point in points]
plots.hessian_contours(lambda X, Y: f(Tensor(np.stack([X, Y]), dtype=np.float64)).numpy(), points, hessians)

# %% [markdown]
# Checked: the eigenvalues printed above, (-3, 3) at the saddle and (sqrt 3, 3 sqrt 3) at the minimum.

# %%
eigenvalues = [np.linalg.eigvalsh(H) for H in hessians]
print(eigenvalues)
assert [f"{v:.4f}" for v in np.ravel(eigenvalues)] == ["-3.0000", "3.0000", "1.7321", "5.1962"]
