"""The random generators of a training run, and their states, which every checkpoint records.

    generators = RunGenerators(model, seed, parts=N * K)   # N ranks x K micro-batches per step
    x, y = data.get_batch("train", rows, T, generators.batches)
    state = generators.state()                              # {"batches": ..., "dropout": {module name: ...}}
    generators.set_state(state)                             # a resumed run draws what the first would have

The batches come from ``np.random.default_rng(seed)``, drawn alike on every rank. Dropout draws its
masks from the generator the model's modules hold as ``module.rng``; each is wrapped in a
`ShardedRandom`, which draws the masks of the whole global batch, as one process would, and serves
each part (rank and micro-batch) its own rows: N ranks with batch B, K micro-batches each, take the
steps of one process with batch N K B, dropout included.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .checkpoint import CheckpointError

__all__ = ["RunGenerators", "ShardedRandom", "shard_dropout"]


class ShardedRandom:
    """A random generator for dropout that gives each part its rows of the masks one process would draw.

    Dropout asks for `random(shape)` with the batch as the first axis. Each call draws the mask of the
    whole global batch (`parts` x shape[0] rows) from the wrapped generator, on every rank alike, and
    returns part `part` of it. With gradient accumulation the micro-batches of one step reuse the masks
    the first one drew (call j of each forward gets the j-th global mask), so the generator advances as
    one process with the whole batch would. `next_step()` starts a new step.
    """

    def __init__(self, generator: np.random.Generator, parts: int = 1):
        self.generator, self.parts, self.part = generator, parts, 0
        self._masks: list[np.ndarray] = []
        self._call = 0

    @property
    def bit_generator(self) -> "ShardedRandom":  # `.bit_generator.state`, as on a numpy Generator: what
        return self  # activation recomputation saves and restores to draw the same masks again

    @property
    def state(self) -> dict:
        return {"generator": self.generator.bit_generator.state, "part": self.part, "call": self._call,
                "masks": len(self._masks)}

    @state.setter
    def state(self, state: dict) -> None:
        self.generator.bit_generator.state = state["generator"]
        self.part, self._call = state["part"], state["call"]
        del self._masks[state["masks"]:]  # masks drawn since are drawn again

    def use_part(self, part: int) -> None:
        """Serve rows of part `part` (0 <= part < parts) from now on, from the masks of this step."""
        self.part, self._call = part, 0

    def next_step(self) -> None:
        self._masks, self._call, self.part = [], 0, 0

    def random(self, shape, dtype=np.float64) -> np.ndarray:
        shape = tuple(shape)
        if self.parts == 1:
            return self.generator.random(shape, dtype=dtype)
        if self._call == len(self._masks):  # first use of this call site in this step: draw it whole
            self._masks.append(self.generator.random((self.parts * shape[0],) + shape[1:], dtype=dtype))
        mask = self._masks[self._call]
        self._call += 1
        return mask[self.part * shape[0]:(self.part + 1) * shape[0]]


def shard_dropout(model, parts: int) -> list[ShardedRandom]:
    """Give every module of `model` that draws dropout masks from a generator (`module.rng`) a ShardedRandom
    over it (one per distinct generator), split in `parts`; return them, for use_part/next_step."""
    return list(_shard_dropout(model, parts).values())


def _shard_dropout(model, parts: int) -> dict[str, ShardedRandom]:
    """shard_dropout's ShardedRandoms by the name of the first module holding each (what a checkpoint names
    their states by)."""
    wrappers: dict[int, ShardedRandom] = {}
    named: dict[str, ShardedRandom] = {}
    for name, module in model.named_modules():
        rng = getattr(module, "rng", None)
        if isinstance(rng, ShardedRandom):
            rng = rng.generator
        if isinstance(rng, np.random.Generator):
            if id(rng) not in wrappers:
                wrappers[id(rng)] = named[name] = ShardedRandom(rng, parts)
            module.rng = wrappers[id(rng)]
    return named


class RunGenerators:
    """The generators of a training run: `batches` (from the run's seed) and `dropout` (module name ->
    the ShardedRandom of each generator the model draws its masks from)."""

    def __init__(self, model, seed: int, parts: int) -> None:
        self.batches = np.random.default_rng(seed)
        self.dropout = _shard_dropout(model, parts)

    def state(self) -> dict[str, Any]:
        """What a checkpoint records: {"batches": bit generator state, "dropout": {name: bit generator state}}."""
        return {"batches": self.batches.bit_generator.state,
                "dropout": {name: d.generator.bit_generator.state for name, d in self.dropout.items()}}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's states; a CheckpointError when its dropout generators are not the model's."""
        if set(self.dropout) != set(state["dropout"]):
            raise CheckpointError(f"the checkpoint has dropout generators {sorted(state['dropout'])}, the model "
                                  f"{sorted(self.dropout)}")
        self.batches.bit_generator.state = state["batches"]
        for name, d in self.dropout.items():
            d.generator.bit_generator.state = state["dropout"][name]
