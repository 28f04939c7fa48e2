"""gpt.report.attention: the weights the model really uses, per block and head."""
import numpy as np

from gpt import GPT, GPTConfig
from gpt.report import attention
from tinygrad_lite import Tensor, no_grad


def test_attention_weights_rebuild_each_blocks_attention_output():
    model = GPT(GPTConfig.from_preset("tiny", n_layer=2, dropout=0.1), seed=0, dtype=np.float64)
    idx = np.random.default_rng(0).integers(0, 256, (2, 9))
    att = attention(model, idx)
    assert att.shape == (2, 2, 4, 9, 9) and att.dtype == np.float64  # (L, B, H, T, T)
    assert model.training  # the mode it was in, restored
    assert np.allclose(att.sum(-1), 1.0) and np.all(np.triu(att, k=1) == 0)  # rows are distributions; no future

    seen = {}  # each attention module's input and output, in eval mode (no dropout)
    for i, block in enumerate(model.transformer.h):
        block.attn.register_forward_hook(lambda m, inputs, out, i=i: seen.update({i: (inputs[0], out)}))
    with no_grad():
        model.eval()(idx)
    for i, block in enumerate(model.transformer.h):
        x, out = seen[i]
        B, T, C = x.shape
        v = block.attn.c_attn(x).numpy()[..., 2 * C:].reshape(B, T, 4, C // 4).transpose(0, 2, 1, 3)  # (B, H, T, D)
        y = (att[i] @ v).transpose(0, 2, 1, 3).reshape(B, T, C)  # the heads' weighted values, merged
        assert np.allclose(block.attn.c_proj(Tensor(y, dtype=np.float64)).numpy(), out.numpy(), atol=1e-12)


def test_attention_leaves_no_hook_behind():
    model = GPT(GPTConfig.from_preset("tiny", n_layer=1), seed=0)
    attention(model, np.zeros((1, 4), np.int64))
    assert all(not m.__dict__.get("_forward_hooks") for _, m in model.named_modules())
