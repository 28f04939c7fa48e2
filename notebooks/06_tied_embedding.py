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
# # Step 6: the tied embedding's two gradients
#
# GPT-2 uses the token embedding matrix `W` (V x C) twice: to look up the input rows (`W[idx]`) and,
# transposed, as the output layer (`logits = x @ W.T`). It is one Parameter, so backward adds both
# contributions into its one `.grad`:
#
# - the head's part, `dL/dW = dlogits^T x`, touches every row;
# - the embedding's part adds `dL/dtok_emb` into the rows of the ids that were looked up, only those.
#
# Forward hooks with `retain_grad` capture the two paths, and the example rebuilds each part by hand.
#
# The code is [`examples/06_tied_embedding.py`](../examples/06_tied_embedding.py), as in the README.

# %%
from IPython.display import SVG, Code

Code(filename="../examples/06_tied_embedding.py", language="python")

# %%
# %run ../examples/06_tied_embedding.py ../out/notebooks

# %% [markdown]
# The graph of a two-block GPT, the second block collapsed into one box (`max_nodes`): the tied
# matrix feeds both the `embedding` at the top and the `transpose` of the head at the bottom.

# %%
from pathlib import Path

drawn = Path("../out/notebooks/06_gpt.svg")
SVG(filename=drawn if drawn.exists() else "../docs/06_gpt.svg")

# %% [markdown]
# Checked: the norms printed above, and where the embedding's part lives: in the rows of the ids
# of the batch, and nowhere else.

# %%
used = np.unique(idx)
print(f"|W.grad| {np.linalg.norm(W.grad):.4f}  head {np.linalg.norm(head):.4f}  embedding {np.linalg.norm(emb):.4f}")
assert f"{np.linalg.norm(W.grad):.4f} {np.linalg.norm(head):.4f} {np.linalg.norm(emb):.4f}" == "3.3953 2.8052 1.9699"
assert len(used) == 16 and not emb[np.setdiff1d(np.arange(256), used)].any() and emb[used].any(axis=1).all()
