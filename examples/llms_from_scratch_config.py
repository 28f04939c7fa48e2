"""The GPT-2 of "LLMs from scratch", built from that book's own configuration dictionary.

    python examples/llms_from_scratch_config.py

GPTConfig.from_dict reads the book's spelling (context_length -> block_size, emb_dim -> n_embd,
n_heads -> n_head, n_layers -> n_layer, drop_rate -> dropout). qkv_bias=False drops the bias of the
fused q, k, v projection c_attn, and only that one: 12 x 2,304 parameters fewer than GPT-2.
"""
import numpy as np

import tinygrad_lite.functional as F
from gpt import GPT, GPTConfig, get_tokenizer
from gpt.config import count_parameters

GPT_CONFIG_124M = {
    "vocab_size": 50257,     # vocabulary size
    "context_length": 1024,  # context length
    "emb_dim": 768,          # embedding dimension
    "n_heads": 12,           # number of attention heads
    "n_layers": 12,          # number of layers
    "drop_rate": 0.1,        # dropout rate
    "qkv_bias": False,       # query-key-value bias
}

config = GPTConfig.from_dict(GPT_CONFIG_124M)
print(config)  # our names: block_size, n_embd, n_head, n_layer, dropout

# 1. Tokenize two sentences of four GPT-2 tokens each -> a (B, T) = (2, 4) integer batch.
tok = get_tokenizer("gpt2")
batch = np.array([tok.encode(t) for t in ["Every effort moves you", "Every day holds a"]])
print("batch:", batch.tolist())

# 2. Forward: logits (B, T, V) = (2, 4, 50257); dropout 0.1 is on (the model is in training mode).
model = GPT(config, seed=123)
logits = model(batch)
print("logits shape:", logits.shape)

# 3. Backward of the next-token loss: position t predicts token t + 1.
loss = F.cross_entropy(logits[:, :-1], batch[:, 1:])
loss.backward()
c_attn = model.transformer.h[0].attn.c_attn
print(f"loss {loss.item():.4f}; h.0.attn.c_attn: weight {c_attn.weight.shape}, grad norm "
      f"{np.linalg.norm(c_attn.weight.grad):.4f}, bias {c_attn.bias}")

# 4. Parameter counts: the output head tied to the token embedding (the default), and untied as in the book's
#    GPTModel, whose out_head is a matrix of its own (50257 x 768 = 38,597,376 more).
tied = model.num_parameters()
untied = count_parameters(GPTConfig.from_dict({**GPT_CONFIG_124M, "tie_weights": False}))["total"]
assert (tied, untied) == (124_412_160, 163_009_536)
print(f"parameters, lm_head tied to the token embedding: {tied:,}")
print(f"parameters, lm_head a matrix of its own:         {untied:,}")
print(f"GPT-2 (q/k/v bias kept), tied:                    {count_parameters(GPTConfig())['total']:,}")
