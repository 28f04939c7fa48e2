"""GPTConfig: defaults, validation, presets, dict / Hugging Face conversion, parameter counts."""

import dataclasses
import json
import math

import pytest

from gpt.config import PRESETS, GPTConfig, count_parameters
from crosscheck import need
from gpt.hf import config_from_hf, config_to_hf

# The config.json of the Hugging Face "gpt2" checkpoint (openai-community/gpt2), verbatim.
HF_GPT2_CONFIG_JSON = """{
  "activation_function": "gelu_new",
  "architectures": ["GPT2LMHeadModel"],
  "attn_pdrop": 0.1,
  "bos_token_id": 50256,
  "embd_pdrop": 0.1,
  "eos_token_id": 50256,
  "initializer_range": 0.02,
  "layer_norm_epsilon": 1e-05,
  "model_type": "gpt2",
  "n_ctx": 1024,
  "n_embd": 768,
  "n_head": 12,
  "n_layer": 12,
  "n_positions": 1024,
  "resid_pdrop": 0.1,
  "summary_activation": null,
  "summary_first_dropout": 0.1,
  "summary_proj_to_labels": true,
  "summary_type": "cls_index",
  "summary_use_proj": true,
  "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
  "vocab_size": 50257
}"""


def test_defaults_are_gpt2_small():
    c = GPTConfig()
    assert (c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd) == (50257, 1024, 12, 12, 768)
    assert (c.dropout, c.bias, c.tie_weights, c.layer_norm_eps, c.n_inner) == (0.0, True, True, 1e-5, None)
    assert c.qkv_bias is None and c.c_attn_bias is True
    assert c.d_ff == 3072 and c.head_dim == 64
    assert c == GPTConfig.from_preset("gpt2")


def test_d_ff_follows_n_embd_unless_n_inner_is_set():
    assert GPTConfig(n_embd=64, n_head=4).d_ff == 256
    assert GPTConfig(n_embd=64, n_head=4, n_inner=100).d_ff == 100


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("vocab_size", 0, "positive int"),
        ("block_size", -3, "positive int"),
        ("n_layer", 2.0, "positive int"),
        ("n_head", True, "positive int"),
        ("n_embd", "768", "positive int"),
        ("n_inner", 0, "positive int"),
        ("dropout", 1.0, "0 <= dropout < 1"),
        ("dropout", -0.1, "0 <= dropout < 1"),
        ("dropout", "0.1", "real number"),
        ("layer_norm_eps", 0.0, "> 0"),
        ("layer_norm_eps", math.nan, "> 0"),
        ("layer_norm_eps", math.inf, "> 0"),
        ("bias", 1, "bool"),
        ("tie_weights", "yes", "bool"),
        ("qkv_bias", 0, "bool, or None"),
    ],
)
def test_invalid_field_names_field_value_and_expectation(field, value, expected):
    with pytest.raises(ValueError) as info:
        GPTConfig(**{field: value})
    msg = str(info.value)
    assert field in msg and repr(value) in msg and expected in msg


def test_n_embd_must_divide_by_n_head():
    with pytest.raises(ValueError, match=r"n_embd must be divisible by n_head.*n_embd=768, n_head=10"):
        GPTConfig(n_head=10)


def test_numpy_ints_are_accepted_and_stored_as_python_ints():
    np = pytest.importorskip("numpy")
    c = GPTConfig(n_layer=np.int64(2), dropout=np.float32(0.25))
    assert type(c.n_layer) is int and c.n_layer == 2
    assert type(c.dropout) is float and c.dropout == 0.25
    json.dumps(c.to_dict())  # still JSON-serialisable


@pytest.mark.parametrize(
    "name, layers, embd, heads, vocab, block, d_ff",
    [
        ("gpt2", 12, 768, 12, 50257, 1024, 3072),
        ("gpt2-medium", 24, 1024, 16, 50257, 1024, 4096),
        ("gpt2-large", 36, 1280, 20, 50257, 1024, 5120),
        ("gpt2-xl", 48, 1600, 25, 50257, 1024, 6400),
        ("gpt2-16l", 16, 768, 12, 50257, 1024, 3072),
        ("tiny", 4, 128, 4, 256, 256, 512),
        ("small", 6, 256, 8, 1000, 256, 1024),
        ("medium", 12, 512, 8, 5000, 512, 2048),
        ("base", 12, 768, 12, 10000, 1024, 3072),
    ],
)
def test_presets(name, layers, embd, heads, vocab, block, d_ff):
    c = GPTConfig.from_preset(name)
    assert (c.n_layer, c.n_embd, c.n_head, c.vocab_size, c.block_size, c.d_ff) == (
        layers, embd, heads, vocab, block, d_ff)
    assert c.tie_weights and c.bias and c.dropout == 0.0


def test_presets_table_is_complete():
    assert set(PRESETS) == {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt2-16l",
                            "tiny", "small", "medium", "base"}


def test_preset_overrides_and_errors():
    c = GPTConfig.from_preset("tiny", dropout=0.1, block_size=64)
    assert (c.dropout, c.block_size, c.n_embd) == (0.1, 64, 128)
    assert GPTConfig.from_preset("tiny", n_embd=64).d_ff == 256  # d_ff follows n_embd
    assert PRESETS["tiny"]["block_size"] == 256  # overrides do not leak into the table
    with pytest.raises(ValueError, match=r"unknown GPTConfig preset 'gpt3'.*gpt2, gpt2-medium.*tiny"):
        GPTConfig.from_preset("gpt3")
    with pytest.raises(ValueError, match=r"unknown override.*'tiny'.*n_embed"):
        GPTConfig.from_preset("tiny", n_embed=64)
    with pytest.raises(ValueError, match="divisible"):  # overrides are validated
        GPTConfig.from_preset("tiny", n_head=3)


# ---- parameter counts ----------------------------------------------------------------------

@pytest.mark.parametrize(
    "name, tie, expected",
    [
        # Published counts of the Hugging Face GPT-2 checkpoints (tied lm_head counted once).
        ("gpt2", True, 124_439_808),
        ("gpt2-medium", True, 354_823_168),
        ("gpt2-large", True, 774_030_080),
        ("gpt2-xl", True, 1_557_611_200),
        # GPT-2 small with a separate lm_head: + 50257 * 768 = 38,597,376.
        ("gpt2", False, 163_037_184),
        ("gpt2-16l", True, 152_791_296),
    ],
)
def test_count_parameters_matches_known_totals(name, tie, expected):
    assert count_parameters(GPTConfig.from_preset(name, tie_weights=tie))["total"] == expected


def test_count_parameters_breakdown_gpt2():
    n = count_parameters(GPTConfig())
    assert n["wte"] == 50257 * 768 and n["wpe"] == 1024 * 768 and n["lm_head"] == 0
    assert n["ln_f"] == n["block.ln_1"] == n["block.ln_2"] == 2 * 768
    assert n["block.attn.c_attn"] == 768 * 2304 + 2304
    assert n["block.mlp.c_proj"] == 3072 * 768 + 768
    assert n["block"] == 7_087_872 and n["blocks"] == 12 * 7_087_872
    assert n["total"] == n["wte"] + n["wpe"] + n["blocks"] + n["ln_f"] + n["lm_head"]


def test_count_parameters_without_bias_drops_exactly_the_bias_vectors():
    c = GPTConfig.from_preset("tiny", n_inner=300)
    with_b, without_b = count_parameters(c), count_parameters(dataclasses.replace(c, bias=False))
    C, F = 128, 300
    # per block: ln_1, ln_2 (C each), c_attn (3C), attn.c_proj (C), c_fc (F), mlp.c_proj (C); plus ln_f (C)
    assert with_b["total"] - without_b["total"] == 4 * (7 * C + F) + C
    assert without_b["ln_f"] == C and without_b["block.mlp.c_fc"] == C * F


def test_qkv_bias_false_drops_exactly_the_c_attn_bias():
    c = GPTConfig.from_preset("tiny", n_inner=300)
    full, no_qkv = count_parameters(c), count_parameters(dataclasses.replace(c, qkv_bias=False))
    C = 128
    assert {k for k in full if full[k] != no_qkv[k]} == {"block.attn.c_attn", "block", "blocks", "total"}
    assert full["block.attn.c_attn"] - no_qkv["block.attn.c_attn"] == 3 * C
    assert full["total"] - no_qkv["total"] == 4 * 3 * C


def test_qkv_bias_none_follows_bias_and_an_explicit_value_wins():
    assert [GPTConfig(bias=b, qkv_bias=q).c_attn_bias for b in (True, False) for q in (None, True, False)] == [
        True, True, False, False, True, False]
    c = GPTConfig.from_preset("tiny")
    C = 128
    no_bias = count_parameters(dataclasses.replace(c, bias=False))
    assert no_bias["block.attn.c_attn"] == C * 3 * C  # bias=False still removes every bias
    only_qkv = count_parameters(dataclasses.replace(c, bias=False, qkv_bias=True))  # biases on q, k, v alone
    assert only_qkv["block.attn.c_attn"] == C * 3 * C + 3 * C and only_qkv["block.attn.c_proj"] == C * C
    assert only_qkv["total"] - no_bias["total"] == 4 * 3 * C


# ---- the tutorials' spellings ----------------------------------------------------------------

# "LLMs from scratch" (Raschka), chapter 4, verbatim.
GPT_CONFIG_124M = {"vocab_size": 50257, "context_length": 1024, "emb_dim": 768, "n_heads": 12, "n_layers": 12,
                   "drop_rate": 0.1, "qkv_bias": False}


def test_llms_from_scratch_dict():
    c = GPTConfig.from_dict(GPT_CONFIG_124M)
    assert c == GPTConfig(dropout=0.1, qkv_bias=False)
    assert (c.block_size, c.n_embd, c.n_head, c.n_layer, c.dropout, c.bias, c.c_attn_bias) == (
        1024, 768, 12, 12, 0.1, True, False)
    assert count_parameters(c)["total"] == 124_412_160  # the book's count with the output head tied
    assert count_parameters(GPTConfig.from_dict({**GPT_CONFIG_124M, "tie_weights": False}))["total"] == 163_009_536
    d = c.to_dict()  # our own names, always
    assert list(d) == [f.name for f in dataclasses.fields(GPTConfig)] and d["qkv_bias"] is False
    assert "emb_dim" not in d and GPTConfig.from_dict(json.loads(json.dumps(d))) == c


@pytest.mark.parametrize("name, d_model, n_heads, n_layers, d_ff", [
    ("tiny", 128, 4, 4, 512), ("small", 256, 8, 6, 1024), ("medium", 512, 8, 12, 2048), ("base", 768, 12, 12, 3072)])
def test_course_style_arguments(name, d_model, n_heads, n_layers, d_ff):
    preset = GPTConfig.from_preset(name)
    c = GPTConfig.from_dict(dict(vocab_size=preset.vocab_size, d_model=d_model, n_heads=n_heads, n_layers=n_layers,
                                 d_ff=d_ff, max_len=preset.block_size, dropout=0.1, tie_weights=True))
    assert (c.n_embd, c.n_head, c.n_layer, c.n_inner, c.d_ff, c.block_size, c.dropout, c.tie_weights) == (
        d_model, n_heads, n_layers, d_ff, d_ff, preset.block_size, 0.1, True)
    assert count_parameters(c) == count_parameters(preset)  # the presets have the course table's shapes
    assert GPTConfig.from_dict(dict(d_model=64, n_heads=4, tie_weights=False)).tie_weights is False


@pytest.mark.parametrize("d, named", [
    ({"n_embd": 768, "emb_dim": 768}, "n_embd and emb_dim both spell n_embd"),
    ({"emb_dim": 64, "d_model": 64, "n_head": 4}, "emb_dim and d_model both spell n_embd"),
    ({"context_length": 8, "max_len": 8, "block_size": 8},
     "context_length, max_len and block_size all spell block_size"),
    ({"n_layers": 2, "n_layer": 2, "drop_rate": 0.1, "dropout": 0.1},
     "n_layers and n_layer both spell n_layer; drop_rate and dropout both spell dropout"),
    ({"d_ff": 64, "n_inner": 64}, "d_ff and n_inner both spell n_inner"),
])
def test_from_dict_refuses_two_spellings_of_one_field(d, named):
    with pytest.raises(ValueError) as info:
        GPTConfig.from_dict(d)
    assert str(info.value) == (
        f"GPTConfig.from_dict got more than one spelling of a field: {named}; give each field once (accepted keys: "
        "vocab_size, block_size (or context_length, max_len), n_layer (or n_layers), n_head (or n_heads), n_embd "
        "(or emb_dim, d_model), dropout (or drop_rate), bias, tie_weights, layer_norm_eps, n_inner (or d_ff), "
        "qkv_bias)")


def test_from_dict_names_unknown_keys_and_the_accepted_spellings():
    with pytest.raises(ValueError) as info:
        GPTConfig.from_dict({**GPT_CONFIG_124M, "n_embed": 768, "ctx_len": 1024})
    assert str(info.value).startswith("unknown GPTConfig.from_dict keys: ctx_len, n_embed; accepted keys: vocab_size, "
                                      "block_size (or context_length, max_len), n_layer (or n_layers),")
    with pytest.raises(ValueError, match=r"GPTConfig.qkv_bias must be a bool, or None .*got 'no'"):
        GPTConfig.from_dict({**GPT_CONFIG_124M, "qkv_bias": "no"})  # values are checked by GPTConfig itself
    with pytest.raises(ValueError, match=r"GPTConfig.n_embd must be divisible by n_head.*n_embd=100, n_head=12"):
        GPTConfig.from_dict({**GPT_CONFIG_124M, "emb_dim": 100})  # named by our field: validation is one place
    with pytest.raises(TypeError, match="expects a dict of fields, got list"):
        GPTConfig.from_dict([("emb_dim", 768)])


# ---- our dict form -------------------------------------------------------------------------

def test_to_dict_from_dict_json_round_trip():
    c = GPTConfig.from_preset("small", dropout=0.2, bias=False, tie_weights=False, n_inner=640, qkv_bias=True)
    d = json.loads(json.dumps(c.to_dict()))
    assert GPTConfig.from_dict(d) == c
    assert d["n_inner"] == 640 and d["bias"] is False and d["qkv_bias"] is True
    assert GPTConfig().to_dict()["qkv_bias"] is None  # the default: the same as bias


def test_from_dict_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown GPTConfig.from_dict key: n_ctx"):
        GPTConfig.from_dict({"n_ctx": 1024})
    with pytest.raises(ValueError, match="block_size"):
        GPTConfig.from_dict({"block_size": 0})


# ---- Hugging Face config.json --------------------------------------------------------------

def test_real_hf_gpt2_config_loads():
    c = config_from_hf(json.loads(HF_GPT2_CONFIG_JSON))
    assert c == GPTConfig.from_preset("gpt2", dropout=0.1)  # n_inner absent -> 4 * n_embd
    assert config_from_hf(json.loads(HF_GPT2_CONFIG_JSON), dropout=0.0) == GPTConfig()


def test_hf_n_inner_null_means_four_times_n_embd():
    d = dict(json.loads(HF_GPT2_CONFIG_JSON), n_inner=None, n_embd=1024, n_head=16)
    assert config_from_hf(d).d_ff == 4096


def test_config_to_hf_fields():
    d = config_to_hf(GPTConfig.from_preset("gpt2-medium", dropout=0.1))
    json.dumps(d)
    assert d["architectures"] == ["GPT2LMHeadModel"] and d["model_type"] == "gpt2"
    assert d["activation_function"] == "gelu_new"
    assert (d["n_positions"], d["n_ctx"], d["n_embd"], d["n_layer"], d["n_head"]) == (1024, 1024, 1024, 24, 16)
    assert (d["vocab_size"], d["n_inner"], d["layer_norm_epsilon"]) == (50257, None, 1e-5)
    assert d["resid_pdrop"] == d["embd_pdrop"] == d["attn_pdrop"] == 0.1
    assert d["tie_word_embeddings"] is True and d["bos_token_id"] == d["eos_token_id"] == 50256
    # a non-GPT-2 vocabulary has no <|endoftext|> id
    assert config_to_hf(GPTConfig.from_preset("tiny"))["eos_token_id"] is None


@pytest.mark.parametrize(
    "config",
    [
        GPTConfig(),
        GPTConfig.from_preset("tiny", tie_weights=False, n_inner=300, dropout=0.1, layer_norm_eps=1e-6),
        GPTConfig.from_preset("gpt2-xl"),
    ],
)
def test_hf_round_trip(config):
    assert config_from_hf(json.loads(json.dumps(config_to_hf(config)))) == config


def test_hf_conversion_errors():
    with pytest.raises(ValueError, match="bias=False"):
        config_to_hf(GPTConfig(bias=False))
    with pytest.raises(ValueError, match="bias=False"):
        config_to_hf(GPTConfig(bias=False, qkv_bias=True))
    # without the q/k/v bias: HF's config, whose c_attn bias save_pretrained writes as zeros
    assert config_to_hf(GPTConfig(qkv_bias=False)) == config_to_hf(GPTConfig())
    base = json.loads(HF_GPT2_CONFIG_JSON)
    with pytest.raises(ValueError, match=r"activation_function 'relu'.*tanh"):
        config_from_hf(dict(base, activation_function="relu"))
    with pytest.raises(ValueError, match="model_type 'gpt2', got 'llama'"):
        config_from_hf(dict(base, model_type="llama"))
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx=True"):
        config_from_hf(dict(base, scale_attn_by_inverse_layer_idx=True))
    with pytest.raises(ValueError, match="different ones.*dropout="):
        config_from_hf(dict(base, attn_pdrop=0.0))
    assert config_from_hf(dict(base, attn_pdrop=0.0), dropout=0.05).dropout == 0.05
    assert config_from_hf(dict(base, activation_function="gelu_pytorch_tanh")).n_layer == 12


@pytest.mark.crosscheck
def test_hf_config_accepted_by_transformers(tmp_path):
    transformers = need("transformers")
    c = GPTConfig.from_preset("tiny", tie_weights=False, n_inner=300, dropout=0.1)
    (tmp_path / "config.json").write_text(json.dumps(config_to_hf(c)))
    hf = transformers.AutoConfig.from_pretrained(tmp_path)
    assert isinstance(hf, transformers.GPT2Config)
    assert (hf.n_positions, hf.n_embd, hf.n_layer, hf.n_head, hf.n_inner) == (256, 128, 4, 4, 300)
    assert hf.tie_word_embeddings is False
    assert config_from_hf(hf.to_dict()) == c
    assert config_from_hf(transformers.GPT2Config().to_dict(), dropout=0.0) == GPTConfig()
