# Step 5: one GPT-2 block. Forward hooks report each sub-module's output; backward fills every
# weight's .grad; render draws the block, with each node's gradient norm (into the folder given as
# the first argument, default out/examples).
import sys
from pathlib import Path

import numpy as np

from gpt import GPT, GPTConfig
from tinygrad_lite import Tensor
from tinygrad_lite.graph import render, retain_grads

model = GPT(GPTConfig.from_preset("tiny"), seed=0)  # 4 blocks, n_embd 128, 4 heads
block = model.transformer.h[0]
x = Tensor(np.random.default_rng(0).normal(size=(2, 8, 128)), requires_grad=True)  # (B, T, C)
x.name = "x"


def show(module, inputs, out):  # a forward hook: called after module.forward
    print(f"{type(module).__name__:20} -> {out.shape}  mean {out.data.mean():+.4f}  std {out.data.std():.4f}")


hooks = [m.register_forward_hook(show) for m in (block.ln_1, block.attn, block.ln_2, block.mlp, block)]
y = block(x)                    # x + attn(ln_1(x)), then + mlp(ln_2(x))
for hook in hooks:
    hook.remove()

retain_grads(y)                 # keep every op's gradient, for the picture
y.sum().backward(retain_graph=True)
print("x.grad", x.grad.shape, " attn.c_attn.weight.grad", block.attn.c_attn.weight.grad.shape)
out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/examples")
out.mkdir(parents=True, exist_ok=True)
for name in ("05_block.svg", "05_block.png"):
    path = render(y, out / name, model=model, title="one GPT-2 block: x + attn(ln_1(x)), then + mlp(ln_2(.))")
    print("wrote", path)
    if path.suffix == ".dot":  # no Graphviz: the .dot text is all there is, and the second would be the same file
        break
