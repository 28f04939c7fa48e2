"""Text generation: autoregressive sampling from a GPT, with a KV cache.

    out = generate(model, idx, max_new_tokens=200, temperature=0.8, top_k=200, seed=0)   # (B, T + 200)
    for step, ids in stream(model, idx, 200, eos_token_id=50256):   # one new column (B,) at a time
        print(tok.decode(ids[:1].tolist()), end="", flush=True)

Each step takes the logits of the last position, applies temperature (0 = greedy argmax), top-k and
top-p (nucleus) filtering, and draws the next token from ``np.random.default_rng(seed)``. ``top_k``
of 0 or None means no top-k filtering, as in Hugging Face transformers.

``eos_token_id`` (e.g. GPT-2's <|endoftext|>, 50256) ends a row at that token: the token itself is
kept, every later position of that row is ``eos_token_id`` again, and generation stops as soon as
every row has stopped, so the result may hold fewer than ``max_new_tokens`` new columns.

With ``use_cache=True`` the prompt is run once to fill a ``KVCache`` and every later step runs only
the one new position. The context is cropped to its last ``block_size`` tokens: once the sequence
outgrows ``block_size`` all positions shift (the position embeddings are absolute), so from then on
each step re-runs the cropped window, exactly as without the cache. Both paths give the same logits
up to float rounding, hence the same greedy tokens.

The model is duck-typed: ``model.config`` (vocab_size, block_size), ``model(idx, cache=...)``,
``model.new_cache(B)``, ``model.training`` / ``train()`` / ``eval()``. No gpt module is imported here.
"""
from __future__ import annotations

from numbers import Integral, Real
from typing import Iterator

import numpy as np

from tinygrad_lite import Tensor, no_grad

__all__ = ["generate", "stream", "sample_next", "filter_logits", "check_options", "BadArgument"]


class BadArgument(ValueError):
    """A generation argument out of range; `.name` is the argument (the CLI names its own flag after it)."""

    def __init__(self, name: str, expected: str, value):
        self.name, self.expected, self.value = name, expected, value
        super().__init__(f"generate: {name} must be {expected}, got {value!r}")


def filter_logits(logits: np.ndarray, top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """Set the logits (B, V) outside the top-k, then outside the top-p nucleus, to -inf.

    top-k keeps every logit >= the k-th largest (ties at the threshold are all kept); 0 or None is off.
    top-p keeps the most likely tokens, in order, until their probability reaches ``top_p`` (at least
    one token).
    """
    z = np.array(logits, dtype=np.float64)
    V = z.shape[-1]
    if top_k and top_k < V:
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


def _is_int(x) -> bool:
    return isinstance(x, Integral) and not isinstance(x, bool)


def check_options(max_new_tokens=0, temperature=1.0, top_k=None, top_p=None, seed=None, eos_token_id=None,
                  vocab_size: int | None = None) -> None:
    """Raise BadArgument (a ValueError naming the argument) for any generation option out of range.

    eos_token_id is checked against vocab_size when that is given."""
    if not _is_int(max_new_tokens) or max_new_tokens < 0:
        raise BadArgument("max_new_tokens", "an int >= 0", max_new_tokens)
    if isinstance(temperature, bool) or not isinstance(temperature, Real) or not 0.0 <= temperature < np.inf:
        raise BadArgument("temperature", "a finite number >= 0 (0 = greedy)", temperature)
    if top_k is not None and (not _is_int(top_k) or top_k < 0):
        raise BadArgument("top_k", "an int >= 0 (0 or None: no top-k filtering)", top_k)
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, Real) or not 0.0 < top_p <= 1.0):
        raise BadArgument("top_p", "a number in (0, 1] or None", top_p)
    if seed is not None and not isinstance(seed, np.random.Generator) and (not _is_int(seed) or seed < 0):
        raise BadArgument("seed", "an int >= 0, a numpy Generator or None (fresh randomness)", seed)
    if eos_token_id is not None and (not _is_int(eos_token_id) or eos_token_id < 0
                                     or (vocab_size is not None and eos_token_id >= vocab_size)):
        raise BadArgument("eos_token_id", f"a token id in [0, vocab_size={vocab_size}) or None", eos_token_id)


def _prompt(model, idx) -> np.ndarray:
    """The prompt as an int64 array (B, T), or a clear error."""
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
    return arr.astype(np.int64)


def stream(model, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, seed: int | np.random.Generator | None = None, use_cache: bool = True,
           eos_token_id: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (step, ids) for each new token column, as it is made: ids is int64 (B,), step counts from 0.

    Arguments as in `generate`, checked here, before anything runs. Stops after max_new_tokens
    columns, or earlier when every row has produced ``eos_token_id``. The model runs in eval mode; its
    train/eval mode is restored when the generator ends or is closed.
    """
    seq = _prompt(model, idx)
    check_options(max_new_tokens, temperature, top_k, top_p, seed, eos_token_id, model.config.vocab_size)
    return _stream(model, seq, max_new_tokens, float(temperature), top_k, top_p, np.random.default_rng(seed),
                   use_cache, eos_token_id)


def _stream(model, seq: np.ndarray, max_new_tokens: int, temperature: float, top_k, top_p,
            rng: np.random.Generator, use_cache: bool, eos_token_id) -> Iterator[tuple[int, np.ndarray]]:
    B, T = seq.shape
    block_size = model.config.block_size
    context = seq[:, -block_size:]  # (B, <= block_size): all the model ever sees, so any max_new_tokens streams
    done = np.zeros(B, dtype=bool)  # rows that have produced eos_token_id
    was_training = model.training
    model.eval()
    cache = model.new_cache(B) if use_cache else None
    try:
        for n in range(T, T + max_new_tokens):  # n tokens known, predict token n
            with no_grad():
                if cache is not None and n <= block_size:
                    # first step: the whole prompt fills the cache; then only the newest token
                    logits = model(context[:, cache.pos:], cache=cache)
                else:
                    logits = model(context)  # the cropped context
            ids = sample_next(logits.data[:, -1, :], temperature, top_k, top_p, rng)
            if eos_token_id is not None:
                ids = np.where(done, eos_token_id, ids)  # a stopped row stays at eos
                done |= ids == eos_token_id
            context = np.concatenate([context, ids[:, None].astype(np.int64)], axis=1)[:, -block_size:]
            yield n - T, ids.copy()
            if done.all():
                return
    finally:
        model.train(was_training)


def generate(model, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | np.random.Generator | None = None, use_cache: bool = True,
             eos_token_id: int | None = None) -> np.ndarray:
    """Continue the prompts ``idx`` (B, T) (or one (T,) prompt) -> int64 (B, T + n), prompt first.

    n = max_new_tokens, or fewer when ``eos_token_id`` is given and every row has produced it (a row
    that stopped early is padded with eos_token_id). temperature 0 is greedy (argmax); top_k (0 or
    None: off) and top_p filter the distribution before sampling; ``seed`` makes sampling reproducible
    (a numpy Generator is used, and advanced, as it is). The model runs in eval mode (dropout off), and
    its mode is restored afterwards.
    """
    prompt = _prompt(model, idx)
    tokens = stream(model, prompt, max_new_tokens, temperature, top_k, top_p, seed, use_cache, eos_token_id)
    B, T = prompt.shape
    try:
        out = np.empty((B, T + max_new_tokens), dtype=np.int64)
    except (MemoryError, ValueError):  # ValueError: more elements than an array can have
        raise MemoryError(f"generate: the result, {B} x (T + max_new_tokens) = {B} x {T + max_new_tokens:,} int64 "
                          f"token ids, needs {8 * B * (T + max_new_tokens) / 2**30:,.1f} GiB of memory; take the "
                          f"tokens as they come with stream() instead") from None
    out[:, :T] = prompt
    made = 0  # fewer than max_new_tokens when every row stopped at eos_token_id
    for step, ids in tokens:
        out[:, T + step] = ids
        made = step + 1
    return out[:, :T + made]
