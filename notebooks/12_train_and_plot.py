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
# # Step 12: train, look at the curves, sample, and look inside
#
# The README's training run is nanoGPT's character-level Shakespeare model (4 blocks, 4 heads,
# `n_embd` 128, 0.8M parameters; the text ships with the package) for 2000 iterations, about a minute
# on 2 cores. Here the same model trains for 40 iterations, enough to watch the loss fall from
# `ln 65 = 4.17` (a uniform guess over the 65 characters) and to draw every curve. Each cell runs a
# command as a terminal would (`python -m gpt train ...`), through `gpt.cli.main`, which returns
# the exit status.
#
# `--workers 1` keeps the run in one process: the default splits each batch over one worker process
# per core, which gives the same steps to rounding, and the numbers this notebook checks are exact.
# `--lr-decay-iters 60` sets the learning-rate schedule of a 60-iteration run, which the run
# finishes after a resume, below.

# %%
# %matplotlib inline
from pathlib import Path

from IPython.display import Image

from gpt.cli import main

RUN = "../out/notebooks/shakespeare"
Path(RUN).parent.mkdir(parents=True, exist_ok=True)
assert main(["train", "--out", RUN, "--overwrite", "--max-iters", "40", "--lr-decay-iters", "60",
             "--eval-interval", "20", "--eval-iters", "4", "--workers", "1"]) == 0

# %% [markdown]
# The run folder holds the latest checkpoint (`ckpt-*`, named by `latest.json`), `metrics.json`
# (written at the end) and `log.jsonl`: a line per evaluation with the train and val loss, the
# learning rate, the gradient norm before clipping (whole, and per layer) of the step before it, and
# the tokens per second since the previous evaluation. Each line is on disk before the checkpoint of
# its iteration; a run resumed after a crash cuts the log back to its checkpoint, so no line is lost
# or written twice. At iteration 0 no step has run yet: those fields are `null` (`None`).

# %%
from gpt.runlog import read_log

log = read_log(RUN)
for line in log:
    print({k: v for k, v in line.items() if k != "layer_grad_norms"})

# %% [markdown]
# Checked: the losses of each evaluation, to the 4 decimals the run printed. The run is
# deterministic on the CPU: the same seed gives the same batches and the same steps.

# %%
losses = [f"{line['train_loss']:.4f}/{line['val_loss']:.4f}" for line in log]
print(losses)
assert [line["iter"] for line in log] == [0, 20, 40]
assert losses == ["4.1867/4.1846", "2.9309/2.9141", "2.7525/2.7152"]

# %% [markdown]
# `python -m gpt plot --out RUN` draws the curves into `RUN/curves.png` (`--file` for another path,
# .png, .svg or .pdf): the loss of every step behind the evaluations, the learning rate (warmup,
# then the cosine decay), the gradient norm before clipping (`--grad-clip` is 1), the speed, and the
# gradient norm of each layer.

# %%
assert main(["plot", "--out", RUN]) == 0
Image(filename=f"{RUN}/curves.png")

# %% [markdown]
# The same pictures one at a time, from Python (`gpt.plots`, each a matplotlib Figure): the loss
# curves, and the gradient norm per layer: the token embedding `wte`, which is also the output
# layer, gets the largest gradient, the final layer norm `ln_f` the smallest.

# %%
import json

from gpt import plots

step_losses = json.loads(Path(RUN, "metrics.json").read_text())["losses"]  # the loss of every step
plots.loss_curves(log, step_losses)

# %%
plots.layer_grad_norms(log)

# %% [markdown]
# ## Resume
#
# `--resume` continues the run from its latest checkpoint, with the options it was started with
# (the model, the optimizer's moments, the learning-rate schedule, the random generators; not
# `--workers`, which belongs to the machine, so it is given again): 20 more iterations give the
# steps a 60-iteration run would have taken, and the log gains their lines.

# %%
assert main(["train", "--out", RUN, "--resume", "--max-iters", "60", "--workers", "1"]) == 0
log = read_log(RUN)
print([(line["iter"], round(line["val_loss"], 4)) for line in log])
assert [line["iter"] for line in log] == [0, 20, 40, 60]  # each evaluation once
assert f"{log[-1]['val_loss']:.4f}" == "2.6649"

# %% [markdown]
# ## Sample
#
# `python -m gpt sample` continues a prompt from the run's checkpoint. After 60 iterations the model
# has learned the look of the text (short words between spaces, punctuation, line breaks), not yet
# its words; the README's 2000 iterations get much further.

# %%
assert main(["sample", "--ckpt", RUN, "--prompt", "ROMEO:", "--max-new-tokens", "120", "--temperature", "0.8",
             "--top-k", "40", "--seed", "1"]) == 0

# %% [markdown]
# The same from Python, and checked: the checkpoint holds the model and the tokenizer's spec.

# %%
import numpy as np

from gpt import checkpoint
from gpt.tokenizer import tokenizer_from_spec

ckpt = checkpoint.load(RUN)
model, tok = ckpt.model(), tokenizer_from_spec(ckpt.state["tokenizer"])
prompt = np.array([tok.encode("ROMEO:")])
text = tok.decode(model.generate(prompt, 120, temperature=0.8, top_k=40, seed=1)[0].tolist())
print(text)
assert text.startswith("ROMEO:\n&o shards millereos th VOLer mon")  # as the command printed

# %% [markdown]
# ## Attention
#
# What each head of each block looks at, for a prompt: row `t` of a heatmap is how position `t`
# spreads its attention over the positions up to it (each row sums to 1; the future is masked).
# `gpt.report.attention` recomputes the weights from each block's queries and keys.

# %%
from gpt.report import attention

prompt = "ROMEO:\nWhat say you?"
att = attention(model, np.array([tok.encode(prompt)]))  # (L, B, H, T, T)
plots.attention_maps(att[:, 0], tokens=list(prompt))

# %% [markdown]
# Checked: every row is a distribution over the past.

# %%
assert att.shape == (4, 1, 4, len(prompt), len(prompt))
assert np.allclose(att.sum(-1), 1) and not np.triu(att, k=1).any()
