"""gpt.data: reading, tokenizing, splitting and batching a text file."""
import gzip
import hashlib
import os

import numpy as np
import pytest

import gpt.data as data_mod
from gpt.data import SHAKESPEARE_FILE, TextData, data_source, read_text, resolve_data
from gpt.errors import UsageError

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "input.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def test_char_split_is_first_90_percent_train_last_10_val(text_file):
    data = TextData.from_file(text_file, "char")
    vocab = sorted(set(TEXT))
    ids = [vocab.index(c) for c in TEXT]  # independent char encoding
    n_train = int(len(TEXT) * 0.9)
    assert data.vocab_size == len(vocab)
    assert data.train.dtype == np.int64 and data.val.dtype == np.int64
    assert data.train.tolist() == ids[:n_train]
    assert data.val.tolist() == ids[n_train:]
    assert data.tokenizer.decode(data.val) == TEXT[n_train:]


def test_val_fraction(text_file):
    data = TextData.from_file(text_file, "char", val_fraction=0.25)
    assert len(data.train) == int(len(TEXT) * 0.75)
    assert len(data.train) + len(data.val) == len(TEXT)


def test_gpt2_tokenizer_round_trips(text_file):
    data = TextData.from_file(text_file, "gpt2")
    assert data.vocab_size == 50257
    assert data.tokenizer.decode(np.concatenate([data.train, data.val]).tolist()) == TEXT


def test_unicode_text(tmp_path):
    p = tmp_path / "u.txt"
    text = "héllo wörld — ünïcödé ✓\n" * 10
    p.write_text(text, encoding="utf-8")
    data = TextData.from_file(p, "char")
    assert data.tokenizer.decode(np.concatenate([data.train, data.val])) == text


def test_batches_are_next_token_windows(text_file):
    data = TextData.from_file(text_file, "char")
    x, y = data.get_batch("train", batch_size=5, block_size=16, rng=np.random.default_rng(0))
    assert x.shape == y.shape == (5, 16) and x.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
    full = data.train
    for row_x, row_y in zip(x, y):
        # every row is a contiguous window of the train split, found by brute-force search
        starts = [s for s in range(len(full) - 16) if np.array_equal(full[s:s + 16], row_x)]
        assert starts and any(np.array_equal(full[s + 1:s + 17], row_y) for s in starts)


def test_batches_reproducible_from_seed(text_file):
    data = TextData.from_file(text_file, "char")
    a = data.get_batch("val", 4, 8, np.random.default_rng(7))
    b = data.get_batch("val", 4, 8, np.random.default_rng(7))
    c = data.get_batch("val", 4, 8, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_offsets_reach_both_ends_of_a_minimal_split():
    # split of exactly block_size + 1 tokens: the only window is the whole split
    data = TextData.from_text("abcdefghij" * 2, "char", val_fraction=0.5)  # 10 / 10 tokens
    x, y = data.get_batch("val", 3, 9, np.random.default_rng(0))
    assert (data.tokenizer.decode(x[0]), data.tokenizer.decode(y[0])) == ("abcdefghi", "bcdefghij")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        TextData.from_file(tmp_path / "nope.txt")


def test_empty_file_is_a_clear_error(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_text("")
    with pytest.raises(UsageError, match="empty"):
        read_text(p)


def test_non_utf8_file_is_a_clear_error(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(UsageError, match="not valid UTF-8"):
        TextData.from_file(p)


def test_text_shorter_than_block_size_is_a_clear_error(tmp_path):
    p = tmp_path / "short.txt"
    p.write_text("hello world, this is short")  # 26 chars: val split has 3
    data = TextData.from_file(p)
    with pytest.raises(UsageError, match=r"val split has 3 tokens .* --block-size \+ 1 = 9"):
        data.get_batch("train", 2, 8, np.random.default_rng(0))


def test_checkpoint_vocabulary_rejects_unseen_characters():
    spec = {"kind": "char", "vocab": list("abc ")}
    assert TextData.from_text("abc cab " * 4, spec).vocab_size == 4
    with pytest.raises(UsageError, match=r"cannot tokenize .*'z'"):
        TextData.from_text("abz", spec)


def test_bad_split_name_and_fraction(text_file):
    data = TextData.from_file(text_file)
    with pytest.raises(ValueError, match="split must be one of"):
        data.get_batch("test", 2, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="val_fraction"):
        TextData.from_file(text_file, val_fraction=1.0)


def test_a_directory_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="is a directory, expected a UTF-8 text file"):
        read_text(tmp_path)


# ------------------------------------------------------------------ the shipped Tiny Shakespeare (issue 12, finding 2)


def test_finding_2_shakespeare_is_shipped_and_checked():
    text = read_text("shakespeare")
    assert len(text) == 1_115_394 and len(set(text)) == 65
    assert hashlib.sha256(text.encode()).hexdigest() == data_mod.SHAKESPEARE_SHA256
    assert data_mod.SHAKESPEARE_SHA256.startswith("86c4e6aa") and data_mod.SHAKESPEARE_SHA256.endswith("c565ed")
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    assert SHAKESPEARE_FILE.parent.name == "assets" and SHAKESPEARE_FILE.parent.parent.name == "gpt"  # package data
    data = TextData.from_file("shakespeare", "char")  # nanoGPT's char-level split
    assert (len(data.train), len(data.val), data.vocab_size) == (1_003_854, 111_540, 65)
    assert "Tiny Shakespeare" in data.source


def test_finding_2_a_damaged_shipped_text_is_named(tmp_path, monkeypatch):
    bad = tmp_path / "tinyshakespeare.txt.gz"
    bad.write_bytes(gzip.compress(read_text("shakespeare").replace("ROMEO", "ROMEX").encode()))
    monkeypatch.setattr(data_mod, "SHAKESPEARE_FILE", bad)
    with pytest.raises(UsageError, match=f"{bad} is damaged: sha256 .* expected 86c4e6aa"):
        read_text("shakespeare")
    bad.write_bytes(b"not gzip")
    with pytest.raises(UsageError, match="cannot be read"):
        read_text("shakespeare")


def test_finding_2_data_paths_are_kept_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert data_source("shakespeare") == "shakespeare"
    assert data_source("input.txt") == str(tmp_path / "input.txt") and os.path.isabs(data_source("a/../b.txt"))
    assert resolve_data("shakespeare") == SHAKESPEARE_FILE and resolve_data("x.txt") == tmp_path / "x.txt"
    (tmp_path / "shakespeare.txt").write_text("a file of that name")
    assert read_text("./shakespeare.txt") == "a file of that name"  # any other value is a path
