"""Forward and backward of GPT-2 124M on two sentences, step by step (what `python -m gpt demo` does).

    python examples/forward_backward.py
"""
import math
import time

import numpy as np

import tinygrad_lite.functional as F
from gpt import GPT, GPTConfig, get_tokenizer

# 1. Tokenize: two sentences of four GPT-2 tokens each -> a (B, T) = (2, 4) integer batch.
tok = get_tokenizer("gpt2")
texts = ["Every effort moves you", "Every day holds a"]
idx = np.array([tok.encode(t) for t in texts])
print("token ids:", idx.tolist())

# 2. Build GPT-2 124M with GPT-2's random init (float32).
t0 = time.perf_counter()
model = GPT(GPTConfig.from_preset("gpt2"), seed=0)
print(f"built in {time.perf_counter() - t0:.1f} s: {model.num_parameters():,} parameters")
for path, n in model.parameter_breakdown()[:8]:  # embeddings and the first block's modules
    print(f"  {path:32} {n:>12,}")
print("  ...")

# 3. Forward: logits (B, T, V). Position t predicts token t + 1, so compare logits[:, :-1] with idx[:, 1:].
logits = model(idx)
print("logits shape:", logits.shape)
loss = F.cross_entropy(logits[:, :-1], idx[:, 1:])
print(f"loss at init: {loss.item():.4f} (ln 50257 = {math.log(50257):.4f})")

# 4. Backward: every parameter gets a .grad of its own shape. The tied wte/lm_head matrix gets one
#    gradient, the sum of its use as the embedding table and as the output layer.
loss.backward()
assert model.lm_head.weight is model.transformer.wte.weight
for name, p in model.named_parameters():
    if name.startswith("transformer.h.") and not name.startswith("transformer.h.0."):
        continue
    print(f"  grad norm {name:40} {np.linalg.norm(p.grad):.4e}")
