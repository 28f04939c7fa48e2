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
# # Step 11: the whole model from the command line
#
# Two commands look at a whole GPT. Each cell runs one as a terminal would, through
# `gpt.cli.main`, which takes the command's arguments and returns its exit status (0 ok, 1 the check
# failed, 2 a usage error).
#
# `python -m gpt inspect` runs one batch of random token ids through a model with a forward hook on
# every module and prints, per parameter, the norms of the weight and of its gradient and their
# ratio, and per module output the mean and std of the activation and of its gradient.
# `--plot PATH` also draws them (with matplotlib: `pip install -e ".[plot]"`).

# %%
from pathlib import Path

from IPython.display import Image

from gpt.cli import main

Path("../out/notebooks").mkdir(parents=True, exist_ok=True)  # where this notebook's pictures go
assert main(["inspect", "--preset", "tiny", "--plot", "../out/notebooks/inspect_tiny.png"]) == 0

# %% [markdown]
# The picture: the std of each module's output stays near 1 through the residual stream after each
# layer norm, the std of the gradient reaching each output, and `|grad| / |weight|` per parameter (an
# SGD step of learning rate `lr` changes a weight by about `lr` times this ratio). At GPT-2's init
# the loss is close to `ln 256`, a uniform guess over the 256 tokens.

# %%
Image(filename="../out/notebooks/inspect_tiny.png")

# %% [markdown]
# The same numbers from Python: `gpt.report.collect` is what the command runs, `gpt.plots` draws
# them (`plots.inspect_stats(report)`). Checked against the table above.

# %%
import numpy as np

from gpt import GPT, GPTConfig
from gpt.report import collect

model = GPT(GPTConfig.from_preset("tiny"), seed=0)
ids = np.random.default_rng(0).integers(0, 256, (4, 65))  # the command's batch: seed 0, B=4, T=64 (+1 target)
report = collect(model.eval(), ids[:, :-1], ids[:, 1:])
wte = report.params[0]
print(f"loss {report.loss:.4f}; {wte.name}: |weight| {wte.weight_norm:.3e}, |grad| {wte.grad_norm:.3e}")
assert f"{report.loss:.4f} {wte.weight_norm:.3e} {wte.grad_norm:.3e}" == "5.5492 3.616e+00 8.763e-01"

# %% [markdown]
# `python -m gpt gradcheck` checks every parameter's gradient of a whole float64 model against
# central differences (batch B=2, T=8): two random projections per parameter, and entry by entry for
# the small ones. Its exit status is 1 if any parameter fails, so the cell checks it passed.

# %%
assert main(["gradcheck", "--preset", "tiny"]) == 0
