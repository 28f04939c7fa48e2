"""How much memory a command's request needs, checked before anything that size is allocated.

A request far beyond the machine (`train --batch-size 100000000`, `--n-embd 65536`) then ends with one
`error:` line that says how much it needs and what the machine has, instead of NumPy's MemoryError from
deep inside a forward pass, or the kernel's out-of-memory killer. The estimates are lower bounds (the
engine's real peak is about twice the activations counted here), so a request this refuses cannot fit.

    need = training_bytes(config, rows=12, itemsize=4)     # parameters, gradients, AdamW, activations
    require(need, "the run", "give a smaller --batch-size")  # UsageError when it cannot fit
"""
from __future__ import annotations

from pathlib import Path

from .config import GPTConfig, count_parameters
from .errors import UsageError

__all__ = ["available_bytes", "activation_bytes", "training_bytes", "backward_bytes", "Need", "require", "size"]

_IDS = 8  # bytes per token id (int64), inputs and targets each


class Need(dict):
    """Bytes per part of a request ({"the parameters": n, ...}); the total is their sum."""

    @property
    def total(self) -> int:
        return sum(self.values())


def activation_bytes(config: GPTConfig, tokens: int, seq_len: int, itemsize: int, backward: bool = True) -> int:
    """What a forward pass over `tokens` tokens, in sequences of `seq_len`, keeps at least.

    For backward each block keeps about 16 C numbers per token (its layer norms, q k v, the attention
    output, the MLP's 4C hidden units twice) and the attention weights (n_head T per token), and the
    head keeps the logits and their softmax (2 V): tokens (L (16 C + H T) + 2 V). Without backward only
    one block's at a time, and the logits."""
    C, H, L, V = config.n_embd, config.n_head, config.n_layer, config.vocab_size
    block = 16 * C + H * seq_len
    per_token = (L * block if backward else block) + 2 * V
    return tokens * (per_token * itemsize + 2 * _IDS)


def training_bytes(config: GPTConfig, rows: int, itemsize: int, eval_rows: int | None = None) -> Need:
    """A training step of `rows` sequences of block_size tokens with AdamW: the parameters, their gradients and
    the two moments, and the larger of the step's activations and an evaluation's (`eval_rows` at once)."""
    T, P = config.block_size, count_parameters(config)["total"]
    step = activation_bytes(config, rows * T, T, itemsize)
    evaluation = activation_bytes(config, (eval_rows or rows) * T, T, itemsize, backward=False)
    return Need({"the parameters, their gradients and AdamW's two moments": 4 * P * itemsize,
                 f"the activations of {max(rows, eval_rows or 0):,} sequences of {T} tokens": max(step, evaluation)})


def backward_bytes(config: GPTConfig, rows: int, seq_len: int, itemsize: int) -> Need:
    """One forward and backward pass of `rows` sequences of `seq_len` tokens (no optimizer): the parameters,
    their gradients, and the activations."""
    P = count_parameters(config)["total"]
    return Need({"the parameters and their gradients": 2 * P * itemsize,
                 f"the activations of {rows:,} sequences of {seq_len:,} tokens":
                     activation_bytes(config, rows * seq_len, seq_len, itemsize)})


def available_bytes() -> int | None:
    """Memory this process may still take: the kernel's estimate of what is available without swapping, plus
    free swap, within a cgroup limit (a container's) if there is one; None where that cannot be read."""
    try:
        info = {}
        for line in Path("/proc/meminfo").read_text().splitlines():  # "MemAvailable:   23160000 kB"
            name, _, value = line.partition(":")
            info[name] = int(value.split()[0]) * 1024
        free = info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        return None
    try:  # cgroup v2: the container's limit and what it already uses
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            free = min(free, int(limit) - used)
    except (OSError, ValueError):
        pass
    return free


def size(n: float) -> str:
    """Bytes as a short human number: 512 B, 3.2 GiB, 2.1 TiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def require(need: Need, what: str, advice: str) -> None:
    """UsageError when `need` cannot fit in the memory available: "`what` needs at least X (its parts), but this
    machine has Y available; `advice`" (which options make it smaller)."""
    free = available_bytes()
    if free is None or need.total <= free:
        return
    parts = "; ".join(f"{name}: {size(n)}" for name, n in need.items())
    raise UsageError(f"{what} needs at least {size(need.total)} of memory ({parts}), but this machine has "
                     f"{size(max(free, 0))} available; {advice}")
