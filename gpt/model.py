"""GPT-2, top to bottom: attention, MLP, block, the model; then a KV cache for decoding.

Shapes: B batch, T sequence length, C = n_embd, H = n_head, D = C // H, V = vocab_size, F = d_ff.
Parameter names are GPT-2's own (`transformer.h.0.attn.c_attn.weight`, ...), and Linear weights are
stored (in, out) like GPT-2's Conv1D, so Hugging Face checkpoints load without transposes
(see gpt/hf.py).
"""
from __future__ import annotations

import math

import numpy as np

import tinygrad_lite.functional as F
import tinygrad_lite.nn as nn
from tinygrad_lite import Tensor, get_default_dtype, is_grad_enabled, recompute

from . import generate as generation
from . import hf
from .config import GPTConfig

__all__ = ["GPT", "KVCache", "CausalSelfAttention", "MLP", "Block"]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with fused q, k, v projection.  x (B, T, C) -> (B, T, C)."""

    def __init__(self, config: GPTConfig, dtype=None, rng=None):
        C = config.n_embd
        self.n_head, self.n_embd, self.dropout = config.n_head, C, config.dropout
        # x -> [q|k|v]; a bias if config.qkv_bias says so (None: as every other layer, config.bias)
        self.c_attn = nn.Linear(C, 3 * C, bias=config.c_attn_bias, dtype=dtype, init=False)
        self.c_proj = nn.Linear(C, C, bias=config.bias, dtype=dtype, init=False)  # heads -> residual
        self.resid_dropout = nn.Dropout(config.dropout, rng=rng)
        self.rng = rng  # for dropout on the attention probabilities

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        B, T, C = x.shape
        H, D = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(C, axis=2)  # 3 x (B, T, C)
        q = q.reshape(B, T, H, D).transpose(0, 2, 1, 3)  # (B, H, T, D)
        k = k.reshape(B, T, H, D).transpose(0, 2, 1, 3)
        v = v.reshape(B, T, H, D).transpose(0, 2, 1, 3)
        if cache is not None:  # attend to the cached positions too: k, v (B, H, pos + T, D)
            k_all, v_all = cache.update(layer, k.data, v.data)
            k, v = Tensor(k_all, dtype=k_all.dtype), Tensor(v_all, dtype=v_all.dtype)
        y = F.scaled_dot_product_attention(q, k, v, causal=True, dropout_p=self.dropout,
                                           training=self.training, rng=self.rng)  # (B, H, T, D)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # merge heads
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: C -> F -> tanh GELU -> C.  x (B, T, C) -> (B, T, C)."""

    def __init__(self, config: GPTConfig, dtype=None, rng=None):
        self.c_fc = nn.Linear(config.n_embd, config.d_ff, bias=config.bias, dtype=dtype, init=False)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(config.d_ff, config.n_embd, bias=config.bias, dtype=dtype, init=False)
        self.dropout = nn.Dropout(config.dropout, rng=rng)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then + mlp(ln_2(x)).  (B, T, C) -> (B, T, C)."""

    def __init__(self, config: GPTConfig, dtype=None, rng=None):
        eps = config.layer_norm_eps
        self.ln_1 = nn.LayerNorm(config.n_embd, eps, bias=config.bias, dtype=dtype)
        self.attn = CausalSelfAttention(config, dtype, rng)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps, bias=config.bias, dtype=dtype)
        self.mlp = MLP(config, dtype, rng)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """The trunk, named as in GPT-2: wte, wpe, drop, h (the blocks), ln_f."""

    def __init__(self, config: GPTConfig, dtype=None, rng=None):
        self.wte = nn.Embedding(config.vocab_size, config.n_embd, dtype=dtype, init=False)
        self.wpe = nn.Embedding(config.block_size, config.n_embd, dtype=dtype, init=False)
        self.drop = nn.Dropout(config.dropout, rng=rng)
        self.h = nn.ModuleList(Block(config, dtype, rng) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, config.layer_norm_eps, bias=config.bias, dtype=dtype)


class LMHead(nn.Module):
    """Logits from the final hidden states: x (B, T, C) @ weight.T -> (B, T, V).

    weight is (V, C), the layout of the token embedding (and of HF's lm_head), so that tying is
    sharing one Parameter; its gradient then sums the embedding and the head contributions.
    """

    def __init__(self, weight: nn.Parameter):
        self.weight = weight

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight.T


class GPT(nn.Module):
    """GPT-2 language model: idx (B, T) integer token ids -> logits (B, T, V).

        model = GPT(GPTConfig.from_preset("gpt2"), seed=0)
        logits = model(idx)                      # (B, T, V)
        loss = F.cross_entropy(logits, targets)  # or model.loss(idx, targets)
    """

    def __init__(self, config: GPTConfig, seed: int | None = None, dtype=None):
        self.config = config
        dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
        # one stream for dropout masks (seeded apart from the init stream, so both are reproducible)
        drop_rng = np.random.default_rng(None if seed is None else [seed, 1])
        self.transformer = Transformer(config, dtype, drop_rng)
        if config.tie_weights:  # one Parameter, two uses: its gradient sums both
            self.lm_head = LMHead(self.transformer.wte.weight)
        else:
            self.lm_head = LMHead(nn.Parameter(np.zeros((config.vocab_size, config.n_embd), dtype), dtype=dtype))
        self._init_weights(np.random.default_rng(seed), dtype)
        self.recompute_blocks = False  # True: rerun each block's forward in backward, not keep it (less memory)

    def _init_weights(self, rng: np.random.Generator, dtype: np.dtype) -> None:
        """GPT-2 init: weights N(0, 0.02), c_proj weights N(0, 0.02 / sqrt(2 n_layer)) (one per
        residual add), biases 0, LayerNorm weights 1. Drawn in float32 (fast), then cast."""
        proj_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                p.data[...] = 0.0
            elif ".ln_" in name:  # ln_1, ln_2, ln_f weights
                p.data[...] = 1.0
            else:
                std = np.float32(proj_std if name.endswith("c_proj.weight") else 0.02)
                if dtype == np.float32:  # draw straight into the weight
                    np.multiply(rng.standard_normal(dtype=np.float32, out=p.data), std, out=p.data)
                else:
                    p.data[...] = rng.standard_normal(p.shape, dtype=np.float32) * std

    # ------------------------------------------------------------------ forward
    def forward(self, idx, cache: KVCache | None = None) -> Tensor:
        """idx (B, T) integer ndarray or Tensor -> logits (B, T, V).

        With `cache` (a KVCache, under no_grad) the T new tokens sit at positions cache.pos..cache.pos+T-1.
        """
        start = 0 if cache is None else cache.pos
        idx = self._check_idx(idx, start, cache)
        B, T = idx.shape
        pos = np.arange(start, start + T)
        tok_emb = self.transformer.wte(idx)  # (B, T, C)
        pos_emb = self.transformer.wpe(pos)  # (T, C), broadcast over B
        x = self.transformer.drop(tok_emb + pos_emb)
        for i, block in enumerate(self.transformer.h):
            if self.recompute_blocks and cache is None:  # keep only the block's output; rerun it in backward
                x = recompute(block, x, rngs=[block.attn.rng] if block.attn.rng is not None else [])
            else:
                x = block(x, cache, i)
        if cache is not None:
            cache.advance(T)
        x = self.transformer.ln_f(x)
        return self.lm_head(x)  # (B, T, V)

    @property
    def checkpoint_blocks(self) -> bool:
        """The old name of recompute_blocks (a "checkpoint" here means a saved training run)."""
        return self.recompute_blocks

    @checkpoint_blocks.setter
    def checkpoint_blocks(self, on: bool) -> None:
        self.recompute_blocks = on

    def loss(self, idx, targets, ignore_index: int | None = None) -> Tensor:
        """Mean cross-entropy of the next-token predictions: targets (B, T) integer ids."""
        return F.cross_entropy(self(idx), targets, ignore_index=ignore_index)

    def _check_idx(self, idx, start: int, cache: KVCache | None) -> np.ndarray:
        """idx as an integer ndarray (B, T), or a clear error naming what was wrong."""
        arr = idx.data if isinstance(idx, Tensor) else np.asarray(idx)
        V, block_size = self.config.vocab_size, self.config.block_size
        if arr.dtype.kind not in "iu":
            raise TypeError(f"GPT: token ids must be integers, got dtype {arr.dtype} "
                            f"(shape {arr.shape}); cast with idx.astype(np.int64) if they are whole numbers")
        if arr.ndim != 2:
            hint = f"; for one sequence use idx[None] to get shape (1, {arr.shape[0]})" if arr.ndim == 1 else ""
            raise ValueError(f"GPT: idx must have shape (B, T), got shape {arr.shape}{hint}")
        B, T = arr.shape
        if B == 0 or T == 0:
            raise ValueError(f"GPT: idx must hold at least one token, got shape {arr.shape}")
        if start + T > block_size:
            where = f" after the {start} cached positions" if cache is not None else ""
            raise ValueError(f"GPT: sequence of length {T}{where} exceeds block_size={block_size}; "
                             f"crop the input to its last {block_size - start} tokens")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= V:
            bad = lo if lo < 0 else hi
            b, t = (int(i) for i in np.argwhere(arr == bad)[0])
            raise ValueError(f"GPT: token id {bad} at position (batch {b}, t {t}) is outside the "
                             f"vocabulary [0, vocab_size={V})")
        if cache is not None:
            if is_grad_enabled():
                raise RuntimeError("GPT: a KVCache only works for inference; call the model inside "
                                   "`with no_grad():` (cached keys/values carry no gradient)")
            if cache.batch_size != B or cache.k[0].dtype != self.transformer.wte.weight.dtype:
                raise ValueError(f"GPT: KVCache is for batch {cache.batch_size}, dtype {cache.k[0].dtype}; "
                                 f"got batch {B} for a {self.transformer.wte.weight.dtype} model")
            if start + T > cache.max_len:
                raise ValueError(f"GPT: KVCache holds {cache.max_len} positions; {start} are filled and "
                                 f"{T} more do not fit")
        return arr

    # ------------------------------------------------------------------ parameter counts
    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of parameters, the tied wte/lm_head matrix counted once.

        exclude_embeddings=True drops the position embeddings (as nanoGPT does), and also the token
        embeddings when the head is untied; a tied wte stays in, since it is also the output layer.
        """
        n = sum(p.size for p in self.parameters())
        if exclude_embeddings:
            n -= self.transformer.wpe.weight.size
            if not self.config.tie_weights:
                n -= self.transformer.wte.weight.size
        return n

    def parameter_breakdown(self) -> list[tuple[str, int]]:
        """(module path, parameter count) for every module that owns Parameters, in model order.

        A shared Parameter counts at its first owner, so a tied `lm_head` shows 0. The counts sum to
        num_parameters() and agree with gpt.config.count_parameters(config).
        """
        seen, rows = set(), []
        for path, module in self.named_modules():
            params = [v for v in vars(module).values() if isinstance(v, nn.Parameter)]
            if params:
                rows.append((path, sum(p.size for p in params if id(p) not in seen)))
                seen.update(id(p) for p in params)
        return rows

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def from_pretrained(cls, name_or_path, dtype=None, *, dropout: float | None = None) -> "GPT":
        """A Hugging Face GPT-2 folder (config.json + model.safetensors), or "gpt2", "gpt2-medium",
        "gpt2-large", "gpt2-xl" fetched through huggingface_hub when no such folder exists (gpt/hf.py).
        Returned in eval mode; `dropout` replaces the checkpoint's (for fine-tuning)."""
        return hf.load_pretrained(name_or_path, cls, dtype=dtype, dropout=dropout)

    def save_pretrained(self, path) -> None:
        """Write config.json + model.safetensors in the Hugging Face GPT-2 layout."""
        hf.save_pretrained(self, path)

    # ------------------------------------------------------------------ generation
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, use_cache: bool = True,
                 eos_token_id: int | None = None) -> np.ndarray:
        """Continue idx (B, T) by max_new_tokens tokens -> int64 (B, T + max_new_tokens); see gpt.generate.

        top_k 0 or None: off. eos_token_id ends a row at that token (kept; the row is padded with it),
        and generation stops early, with fewer columns, once every row has ended. To stream tokens as
        they are made: gpt.generate.stream(model, idx, ...).
        """
        return generation.generate(self, idx, max_new_tokens, temperature, top_k, top_p, seed, use_cache,
                                   eos_token_id)

    def new_cache(self, batch_size: int, max_len: int | None = None) -> "KVCache":
        """An empty KVCache for this model, in its dtype, for `batch_size` sequences."""
        return KVCache(self.config, batch_size, max_len, dtype=self.transformer.wte.weight.dtype)


class KVCache:
    """Keys and values of the positions already processed, per layer, for incremental decoding.

    Preallocated arrays k[layer], v[layer] of shape (B, H, max_len, D); `pos` positions are filled.
        cache = KVCache(model.config, batch_size=B)
        with no_grad():
            logits = model(prompt, cache=cache)             # prompt (B, T0): fills 0..T0-1
            logits = model(next_ids[:, None], cache=cache)  # (B, 1): one new position at cache.pos
    Each call reads positions 0..pos-1 from the cache, appends its own T positions, and advances pos.
    A cache only works under no_grad (its arrays are constants) and holds at most `max_len` positions.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int | None = None, dtype=None):
        self.max_len = config.block_size if max_len is None else int(max_len)
        if not 0 < self.max_len <= config.block_size:
            raise ValueError(f"KVCache max_len must be in [1, block_size={config.block_size}], got {max_len}")
        shape = (batch_size, config.n_head, self.max_len, config.head_dim)
        dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
        self.k = [np.zeros(shape, dtype) for _ in range(config.n_layer)]
        self.v = [np.zeros(shape, dtype) for _ in range(config.n_layer)]
        self.batch_size, self.pos = batch_size, 0

    def update(self, layer: int, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Write this call's k, v (B, H, T, D) at pos..pos+T-1; return all keys/values (B, H, pos+T, D)."""
        end = self.pos + k.shape[2]
        self.k[layer][:, :, self.pos:end] = k
        self.v[layer][:, :, self.pos:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def advance(self, n: int) -> None:
        """Mark n more positions as filled (the model calls this once per forward, after every layer)."""
        self.pos += n

    def reset(self) -> None:
        self.pos = 0
