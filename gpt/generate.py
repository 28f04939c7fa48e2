"""Text generation: autoregressive sampling from a GPT, with a KV cache.

    out = generate(model, idx, max_new_tokens=200, temperature=0.8, top_k=200, seed=0)   # (B, T + 200)

Each step takes the logits of the last position, applies temperature (0 = greedy argmax), top-k and
top-p (nucleus) filtering, and draws the next token from ``np.random.default_rng(seed)``.

With ``use_cache=True`` the prompt is run once to fill a ``KVCache`` and every later step runs only
the one new position. The context is cropped to its last ``block_size`` tokens: once the sequence
outgrows ``block_size`` all positions shift (the position embeddings are absolute), so from then on
each step re-runs the cropped window, exactly as without the cache. Both paths give the same logits
up to float rounding, hence the same greedy tokens.
"""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from tinygrad_lite import Tensor, no_grad

__all__ = ["generate", "sample_next", "filter_logits"]


def filter_logits(logits: np.ndarray, top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """Set the logits (B, V) outside the top-k, then outside the top-p nucleus, to -inf.

    top-k keeps every logit >= the k-th largest (ties at the threshold are all kept). top-p keeps the
    most likely tokens, in order, until their probability reaches ``top_p`` (at least one token).
    """
    z = np.array(logits, dtype=np.float64)
    V = z.shape[-1]
    if top_k is not None and top_k < V:
        kth = np.partition(z, V - top_k, axis=-1)[:, V - top_k, None]  # k-th largest per row
        z[z < kth] = -np.inf
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-z, axis=-1, kind="stable")  # most likely first
        p = _softmax(np.take_along_axis(z, order, axis=-1))
        mass_before = np.cumsum(p, axis=-1) - p  # probability of the tokens ranked above each one
        drop_sorted = mass_before >= top_p  # the first token always stays (mass_before = 0)
        drop = np.empty_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        z[drop] = -np.inf
    return z


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sample_next(logits: np.ndarray, temperature: float, top_k: int | None, top_p: float | None,
                rng: np.random.Generator) -> np.ndarray:
    """Next token ids (B,) from last-position logits (B, V)."""
    if temperature == 0.0:
        return np.argmax(logits, axis=-1)  # greedy
    probs = _softmax(filter_logits(np.asarray(logits, np.float64) / temperature, top_k, top_p))  # (B, V)
    cdf = np.cumsum(probs, axis=-1)
    u = (1.0 - rng.random(len(probs)))[:, None] * cdf[:, -1:]  # uniform in (0, total]
    return np.minimum((cdf < u).sum(axis=-1), probs.shape[-1] - 1)  # first index with cdf >= u


def _check_args(model: "GPT", idx, max_new_tokens, temperature, top_k, top_p) -> np.ndarray:
    """The prompt as an int64 array (B, T), or a clear error for any bad argument."""
    arr = idx.data if isinstance(idx, Tensor) else np.asarray(idx)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"generate: idx must be a non-empty (B, T) array of token ids (or one (T,) "
                         f"sequence), got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"generate: token ids must be integers, got dtype {arr.dtype}")
    V = model.config.vocab_size
    if arr.min() < 0 or arr.max() >= V:
        raise ValueError(f"generate: token ids must be in [0, vocab_size={V}), got values in "
                         f"[{arr.min()}, {arr.max()}]")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, Integral) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, Real) or not temperature >= 0.0:
        raise ValueError(f"generate: temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, Integral) or top_k < 1):
        raise ValueError(f"generate: top_k must be an int >= 1 or None, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, Real) or not 0.0 < top_p <= 1.0):
        raise ValueError(f"generate: top_p must be in (0, 1] or None, got {top_p!r}")
    return arr.astype(np.int64)


def generate(model: "GPT", idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None, use_cache: bool = True) -> np.ndarray:
    """Continue the prompts ``idx`` (B, T) by ``max_new_tokens`` tokens; returns int64 (B, T + max_new_tokens).

    temperature 0 is greedy (argmax); top_k / top_p filter the distribution before sampling; ``seed``
    makes sampling reproducible. The model is run in eval mode (dropout off) and restored afterwards.
    """
    prompt = _check_args(model, idx, max_new_tokens, temperature, top_k, top_p)
    B, T = prompt.shape
    block_size = model.config.block_size
    rng = np.random.default_rng(seed)
    out = np.empty((B, T + max_new_tokens), dtype=np.int64)
    out[:, :T] = prompt
    was_training = model.training
    model.eval()
    cache = model.new_cache(B) if use_cache else None
    try:
        with no_grad():
            for n in range(T, T + max_new_tokens):  # n tokens known, predict token n
                if cache is not None and n <= block_size:
                    # first step: the whole prompt fills the cache; then only the newest token
                    logits = model(out[:, cache.pos:n], cache=cache)
                else:
                    logits = model(out[:, max(0, n - block_size):n])  # the cropped context
                out[:, n] = sample_next(logits.data[:, -1, :], float(temperature), top_k, top_p, rng)
    finally:
        model.train(was_training)
    return out
