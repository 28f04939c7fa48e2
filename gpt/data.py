"""Training data: read a UTF-8 text, tokenize it, split it, and draw random (B, T) batches.

    data = TextData.from_file("shakespeare", tokenizer="char")   # the shipped text; 90 % train / 10 % val
    data = TextData.from_file("input.txt", tokenizer="gpt2")     # any other value is a path
    x, y = data.get_batch("train", batch_size=12, block_size=64, rng=np.random.default_rng(1337))

`x` is (B, T) token ids taken at random offsets, `y` the same windows shifted by one (next-token
targets). As in nanoGPT, the split is the first 90 % of the tokens for training and the last 10 %
for validation, and a batch starts at offsets drawn uniformly from [0, len(split) - T).
`data.identity` ({"chars", "sha256"} of the text) is what a run records of its text, and
`check_same_text` what a resumed run checks against it.

The name "shakespeare" is Tiny Shakespeare (1,115,394 characters, public domain), shipped gzipped in
gpt/assets/ and checked against its sha256 whenever it is read. Bad input (a missing, empty or
non-UTF-8 file, a split too short for one window) is a `UsageError` naming the file and the sizes,
raised before NumPy sees the data.
"""
from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .tokenizer import get_tokenizer, tokenizer_from_spec, tokenizer_spec

__all__ = ["read_text", "resolve_data", "data_source", "text_identity", "check_same_text", "TextData", "SPLITS",
           "SHAKESPEARE"]

SPLITS = ("train", "val")
SHAKESPEARE = "shakespeare"  # --data's name for the shipped text
SHAKESPEARE_FILE = Path(__file__).parent / "assets" / "tinyshakespeare.txt.gz"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"  # of the UTF-8 text
SHAKESPEARE_CHARS = 1_115_394


def data_source(data: str | os.PathLike) -> str:
    """What a run records as its data: "shakespeare" as is, any other value as an absolute path.

    An absolute path still names the same file when the run is resumed from another directory."""
    data = os.fspath(data)
    if data == SHAKESPEARE:
        return data
    if not data:
        raise UsageError("--data is empty: expected 'shakespeare' (the shipped text) or the path of a UTF-8 text file")
    return os.path.abspath(os.path.expanduser(data))


def resolve_data(data: str | os.PathLike) -> Path:
    """The absolute path of the file `data` names: the shipped (gzipped) text for "shakespeare"."""
    source = data_source(data)
    return SHAKESPEARE_FILE if source == SHAKESPEARE else Path(source)


def read_text(data: str | os.PathLike) -> str:
    """The text `data` names ("shakespeare" or a UTF-8 file); a UsageError if it is missing, not UTF-8, or empty."""
    if data_source(data) == SHAKESPEARE:
        return _read_shakespeare()
    path = os.fspath(data)
    if not os.path.exists(path):
        raise UsageError(f"data file {path!r} does not exist (--data takes 'shakespeare' or the path of a "
                         f"UTF-8 text file)")
    if os.path.isdir(path):
        raise UsageError(f"data file {path!r} is a directory, expected a UTF-8 text file")
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not text
            text = f.read()
    except UnicodeDecodeError as e:
        raise UsageError(f"data file {path!r} is not valid UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise UsageError(f"cannot read data file {path!r}: {e.strerror or e}") from None
    if not text:
        raise UsageError(f"data file {path!r} is empty; expected some UTF-8 text to train on")
    return text


def _read_shakespeare() -> str:
    try:
        raw = gzip.decompress(SHAKESPEARE_FILE.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UsageError(f"the shipped Tiny Shakespeare {SHAKESPEARE_FILE} cannot be read ({e}); reinstall the "
                         f"package, or pass --data FILE") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        raise UsageError(f"the shipped Tiny Shakespeare {SHAKESPEARE_FILE} is damaged: sha256 {digest}, expected "
                         f"{SHAKESPEARE_SHA256}; reinstall the package, or pass --data FILE")
    return raw.decode("utf-8")


def text_identity(text: str) -> dict[str, Any]:
    """What identifies a training text: its length in characters and the sha256 of its UTF-8 bytes."""
    h = hashlib.sha256()
    for i in range(0, len(text), 1 << 20):  # in pieces: no second copy of a large text
        h.update(text[i:i + (1 << 20)].encode("utf-8"))
    return {"chars": len(text), "sha256": h.hexdigest()}


def check_same_text(data: "TextData", source: str, recorded: dict | None, recorded_source: str, run: str,
                    allowed: bool) -> str:
    """A resumed run must train on the text it was trained on: raise UsageError if `data` (read from --data
    `source`) is another, unless `allowed` (--allow-data-change); return a line worth showing ("" if none).

    `recorded`: the run's text_identity (None for a run saved before runs recorded it: then only the path
    can be compared); `recorded_source`: the --data it was trained on; `run`: its folder, for messages."""
    if recorded == data.identity or (recorded is None and source == recorded_source):
        return ""
    if recorded is None:
        was = f"{recorded_source} (the run, saved by an older version, records its path only)"
        now = source
    else:
        was = f"{recorded_source}: {_describe(recorded)}"
        now = f"{source}: {_describe(data.identity)}"
    if allowed:
        return (f"--data {now} is not the text the run was trained on ({was}); continuing on it, as "
                f"--allow-data-change asks: its validation losses measure another text than the earlier ones")
    raise UsageError(f"--data {now} is not the text the run in {run} was trained on ({was}); give that text, or "
                     f"--allow-data-change to continue on this one")


def _describe(identity: dict) -> str:
    return f"{identity['chars']:,} characters, sha256 {identity['sha256'][:12]}..."


@dataclass
class TextData:
    """Token ids of one text, split into a training and a validation part.

    tokenizer: a tiktoken Encoding or a CharTokenizer (same encode/decode/n_vocab)
    train, val: 1-D int64 arrays of token ids
    source: where the text came from (for error messages)
    identity: text_identity of the text
    """

    tokenizer: Any
    train: np.ndarray
    val: np.ndarray
    source: str = "<text>"
    identity: dict | None = None

    @classmethod
    def from_text(cls, text: str, tokenizer: str | dict | Any = "char", val_fraction: float = 0.1,
                  source: str = "<text>") -> "TextData":
        """Tokenize ``text`` and split it: the first ``1 - val_fraction`` for training, the rest for val.

        ``tokenizer`` is a name ("char": vocabulary = the text's characters, or "gpt2"), a spec from
        ``tokenizer_spec`` (to reuse a checkpoint's vocabulary), or a tokenizer object.
        """
        if not 0.0 < val_fraction < 1.0:
            raise UsageError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if not text:
            raise UsageError(f"{source} is empty; expected some text to train on")
        if isinstance(tokenizer, str):
            tok = get_tokenizer("char", text=text) if tokenizer == "char" else get_tokenizer(tokenizer)
        elif isinstance(tokenizer, dict):
            tok = tokenizer_from_spec(tokenizer)
        else:
            tok = tokenizer
        try:
            ids = tok.encode_ordinary(text)  # gpt2: no special tokens; char: same as encode
        except ValueError as e:  # e.g. characters missing from a checkpoint's char vocabulary
            raise UsageError(f"cannot tokenize {source}: {e}") from None
        ids = np.asarray(ids, dtype=np.int64)
        n_train = int(len(ids) * (1.0 - val_fraction))
        return cls(tok, ids[:n_train], ids[n_train:], source, text_identity(text))

    @classmethod
    def from_file(cls, data: str | os.PathLike, tokenizer: str | dict | Any = "char",
                  val_fraction: float = 0.1) -> "TextData":
        """Read "shakespeare" or a UTF-8 text file and build its train/val token data (see ``from_text``)."""
        source = data_source(data)
        name = "the shipped Tiny Shakespeare" if source == SHAKESPEARE else f"data file {os.fspath(data)!r}"
        return cls.from_text(read_text(data), tokenizer, val_fraction, source=name)

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.n_vocab)

    def tokenizer_spec(self) -> dict:
        """JSON-able description of the tokenizer (for checkpoints)."""
        return tokenizer_spec(self.tokenizer)

    def check_block_size(self, block_size: int) -> None:
        """Raise UsageError unless every split holds at least one window of ``block_size + 1`` tokens."""
        for split in SPLITS:
            n = len(getattr(self, split))
            if n < block_size + 1:
                total = len(self.train) + len(self.val)
                raise UsageError(
                    f"{self.source} is too short: its {split} split has {n} tokens (of {total} in all), "
                    f"but one training window needs --block-size + 1 = {block_size + 1}; use a longer text "
                    f"or a smaller --block-size")

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
