"""gpt: GPT-2 on tinygrad_lite.

    from gpt import GPT, GPTConfig, get_tokenizer
    model = GPT(GPTConfig.from_preset("gpt2"), seed=0)
    logits = model(idx)  # idx (B, T) integer ids -> (B, T, V)
"""
from .config import GPTConfig
from .model import GPT, KVCache
from .tokenizer import get_tokenizer

__all__ = ["GPT", "GPTConfig", "KVCache", "get_tokenizer"]
