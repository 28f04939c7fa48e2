# Step 6: the tied embedding's two gradients. transformer.wte.weight W is used twice: as the token
# embedding (rows of W looked up by id) and as the output layer (logits = x @ W.T). Backward adds
# both contributions into W.grad; forward hooks and retain_grad take them apart again.
import sys
from pathlib import Path

import numpy as np

from gpt import GPT, GPTConfig
from tinygrad_lite.graph import render

model = GPT(GPTConfig.from_preset("tiny", n_layer=2), seed=0)
W = model.transformer.wte.weight
assert model.lm_head.weight is W  # one Parameter, two uses
rng = np.random.default_rng(0)
idx, targets = rng.integers(0, 256, (2, 8)), rng.integers(0, 256, (2, 8))

seen = {}  # module outputs, kept by forward hooks, with their gradients


def keep(name):
    def hook(module, inputs, out):
        out.retain_grad()
        seen[name] = out
    return hook


model.transformer.wte.register_forward_hook(keep("tok_emb"))  # (B, T, C) = W[idx]
model.transformer.ln_f.register_forward_hook(keep("x"))        # (B, T, C), the head's input
model.lm_head.register_forward_hook(keep("logits"))            # (B, T, V) = x @ W.T
loss = model.loss(idx, targets)
loss.backward(retain_graph=True)

V, C = W.shape
head = seen["logits"].grad.reshape(-1, V).T @ seen["x"].data.reshape(-1, C)  # dL/dW = dlogits^T x
emb = np.zeros_like(W.data)
np.add.at(emb, idx.ravel(), seen["tok_emb"].grad.reshape(-1, C))           # rows of dL/dtok_emb, by id
print(f"|W.grad| = {np.linalg.norm(W.grad):.4f}: head part {np.linalg.norm(head):.4f}, "
      f"embedding part {np.linalg.norm(emb):.4f} (only in the rows of the {len(np.unique(idx))} ids used)")
assert np.allclose(W.grad, head + emb, rtol=1e-4, atol=1e-7)
out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/examples")  # where the picture goes
out.mkdir(parents=True, exist_ok=True)
print("wrote", render(loss, out / "06_gpt.svg", model=model, max_nodes=60))  # block h.1 collapsed into one box
