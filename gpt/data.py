"""Training data: read a UTF-8 text file, tokenize it, split it, and draw random (B, T) batches.

    data = TextData.from_file("input.txt", tokenizer="char")   # 90 % train / 10 % val
    x, y = data.get_batch("train", batch_size=12, block_size=64, rng=np.random.default_rng(1337))

`x` is (B, T) token ids taken at random offsets, `y` the same windows shifted by one (next-token
targets). As in nanoGPT, the split is the first 90 % of the tokens for training and the last 10 %
for validation, and a batch starts at offsets drawn uniformly from [0, len(split) - T).
Bad input (missing or empty file, a split too short for one window) is a ValueError /
FileNotFoundError naming the file and the sizes, raised before NumPy sees the data.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpt.tokenizer import get_tokenizer, tokenizer_from_spec, tokenizer_spec

__all__ = ["read_text", "TextData", "SPLITS"]

SPLITS = ("train", "val")


def read_text(path: str | os.PathLike) -> str:
    """The contents of a UTF-8 text file; a clear error if it is missing, not UTF-8, or empty."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"data file {path!r} is a directory, expected a UTF-8 text file")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"data file {path!r} is not valid UTF-8 text (byte {e.start}: {e.reason})") from None
    if not text:
        raise ValueError(f"data file {path!r} is empty; expected some UTF-8 text to train on")
    return text


@dataclass
class TextData:
    """Token ids of one text, split into a training and a validation part.

    tokenizer: a tiktoken Encoding or a CharTokenizer (same encode/decode/n_vocab)
    train, val: 1-D int64 arrays of token ids
    source: where the text came from (for error messages)
    """

    tokenizer: Any
    train: np.ndarray
    val: np.ndarray
    source: str = "<text>"

    @classmethod
    def from_text(cls, text: str, tokenizer: str | dict | Any = "char", val_fraction: float = 0.1,
                  source: str = "<text>") -> "TextData":
        """Tokenize ``text`` and split it: the first ``1 - val_fraction`` for training, the rest for val.

        ``tokenizer`` is a name ("char": vocabulary = the text's characters, or "gpt2"), a spec from
        ``tokenizer_spec`` (to reuse a checkpoint's vocabulary), or a tokenizer object.
        """
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if not text:
            raise ValueError(f"{source} is empty; expected some text to train on")
        if isinstance(tokenizer, str):
            tok = get_tokenizer("char", text=text) if tokenizer == "char" else get_tokenizer(tokenizer)
        elif isinstance(tokenizer, dict):
            tok = tokenizer_from_spec(tokenizer)
        else:
            tok = tokenizer
        try:
            ids = tok.encode_ordinary(text)  # gpt2: no special tokens; char: same as encode
        except ValueError as e:  # e.g. characters missing from a checkpoint's char vocabulary
            raise ValueError(f"cannot tokenize {source}: {e}") from None
        ids = np.asarray(ids, dtype=np.int64)
        n_train = int(len(ids) * (1.0 - val_fraction))
        return cls(tok, ids[:n_train], ids[n_train:], source)

    @classmethod
    def from_file(cls, path: str | os.PathLike, tokenizer: str | dict | Any = "char",
                  val_fraction: float = 0.1) -> "TextData":
        """Read a UTF-8 text file and build its train/val token data (see ``from_text``)."""
        return cls.from_text(read_text(path), tokenizer, val_fraction, source=f"data file {os.fspath(path)!r}")

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.n_vocab)

    def tokenizer_spec(self) -> dict:
        """JSON-able description of the tokenizer (for checkpoints)."""
        return tokenizer_spec(self.tokenizer)

    def check_block_size(self, block_size: int) -> None:
        """Raise ValueError unless every split holds at least one window of ``block_size + 1`` tokens."""
        for split in SPLITS:
            n = len(getattr(self, split))
            if n < block_size + 1:
                total = len(self.train) + len(self.val)
                raise ValueError(
                    f"{self.source} is too short: its {split} split has {n} tokens (of {total} in all), "
                    f"but one training window needs block_size + 1 = {block_size + 1}; use a longer text "
                    f"or a smaller block size")

    def get_batch(self, split: str, batch_size: int, block_size: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Random windows of ``split``: inputs x (B, T) and next-token targets y (B, T), both int64.

        Offsets are uniform in [0, len(split) - T), drawn from ``rng`` (the only randomness).
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size} and {block_size}")
        self.check_block_size(block_size)
        data = getattr(self, split)
        starts = rng.integers(0, len(data) - block_size, size=batch_size)  # (B,)
        pos = starts[:, None] + np.arange(block_size)  # (B, T) positions of the inputs
        return data[pos], data[pos + 1]
