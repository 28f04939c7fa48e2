"""gpt.generate: greedy/sampled decoding, top-k/top-p, the KV cache, and bad input."""
import numpy as np
import pytest

from gpt.config import GPTConfig
from gpt.generate import BadArgument, filter_logits, generate, sample_next, stream
from gpt.model import GPT
from tinygrad_lite import no_grad


def _model(block_size=16, dropout=0.0, seed=0):
    """A tiny GPT with large random weights, so that its greedy output depends on the context."""
    m = GPT(GPTConfig(vocab_size=40, block_size=block_size, n_layer=2, n_head=2, n_embd=32, dropout=dropout), seed=seed)
    rng = np.random.default_rng(seed)
    for name, p in m.named_parameters():
        if p.ndim >= 2:
            p.data[...] = rng.standard_normal(p.shape).astype(np.float32) * 0.3
    return m


def _naive_greedy(model, prompt, n):
    """Reference: argmax of the full forward over the last block_size tokens, one token at a time."""
    seq = [list(row) for row in prompt]
    with no_grad():
        for _ in range(n):
            ctx = np.array([s[-model.config.block_size:] for s in seq])
            nxt = model(ctx).data[:, -1].argmax(-1)
            for s, t in zip(seq, nxt):
                s.append(int(t))
    return np.array(seq)


@pytest.mark.parametrize("n_new", [10, 30])  # 30: past block_size, the context gets cropped
def test_greedy_with_and_without_cache_match_naive_decoding(n_new):
    model = _model()
    prompt = np.array([[1, 2, 3, 4, 5], [7, 7, 0, 39, 2]])
    expected = _naive_greedy(model, prompt, n_new)
    assert len(set(expected[0, 5:].tolist())) > 3  # the output is not degenerate
    cached = generate(model, prompt, n_new, temperature=0, use_cache=True)
    uncached = generate(model, prompt, n_new, temperature=0, use_cache=False)
    np.testing.assert_array_equal(uncached, expected)
    np.testing.assert_array_equal(cached, expected)


def test_cached_logits_match_full_forward():
    model = _model()
    prompt = np.array([[3, 1, 4, 1, 5, 9, 2, 6]])
    seq = generate(model, prompt, 6, temperature=0)
    from gpt.model import KVCache
    with no_grad():
        full = model(seq[:, :13]).data  # (1, 13, V)
        cache = KVCache(model.config, batch_size=1)
        steps = [model(seq[:, :8], cache=cache).data]
        steps += [model(seq[:, t:t + 1], cache=cache).data for t in range(8, 13)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-4, atol=1e-5)


def test_output_shape_prompt_kept_and_zero_new_tokens():
    model = _model()
    prompt = np.array([[1, 2, 3]])
    out = generate(model, prompt, 7, temperature=1.0, seed=0)
    assert out.shape == (1, 10) and out.dtype == np.int64
    np.testing.assert_array_equal(out[:, :3], prompt)
    assert ((0 <= out) & (out < 40)).all()
    np.testing.assert_array_equal(generate(model, prompt, 0), prompt)
    assert generate(model, [1, 2, 3], 2).shape == (1, 5)  # one 1-D prompt is a batch of one


def test_prompt_longer_than_block_size_is_cropped():
    model = _model(block_size=8)
    prompt = np.arange(20)[None] % 40
    out = generate(model, prompt, 5, temperature=0)
    np.testing.assert_array_equal(out, _naive_greedy(model, prompt, 5))


def test_sampling_reproducible_from_seed_and_cache_independent():
    model = _model()
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    kw = dict(temperature=1.0, top_k=10, top_p=0.9)
    a = generate(model, prompt, 20, seed=5, **kw)
    np.testing.assert_array_equal(a, generate(model, prompt, 20, seed=5, **kw))
    np.testing.assert_array_equal(a, generate(model, prompt, 20, seed=5, use_cache=False, **kw))
    assert not np.array_equal(a, generate(model, prompt, 20, seed=6, **kw))


def test_top_k_1_is_greedy():
    model = _model()
    prompt = np.array([[5, 6, 7]])
    np.testing.assert_array_equal(generate(model, prompt, 12, temperature=1.5, top_k=1, seed=0),
                                  generate(model, prompt, 12, temperature=0))


def test_generation_runs_in_eval_mode_and_restores_train_mode():
    model = _model(dropout=0.5)
    model.train()
    prompt = np.array([[1, 2, 3]])
    out = generate(model, prompt, 10, temperature=0)
    assert model.training
    model.eval()
    np.testing.assert_array_equal(out, _naive_greedy(model, prompt, 10))  # no dropout in generate


def test_filter_logits_top_k_and_top_p():
    p = np.array([[0.05, 0.5, 0.15, 0.3]])
    logits = np.log(p)
    keep = np.isfinite(filter_logits(logits, top_k=2))
    assert keep.tolist() == [[False, True, False, True]]
    assert np.isfinite(filter_logits(logits, top_p=0.75)).tolist() == [[False, True, False, True]]
    assert np.isfinite(filter_logits(logits, top_p=0.85)).tolist() == [[False, True, True, True]]
    assert np.isfinite(filter_logits(logits, top_p=0.1)).tolist() == [[False, True, False, False]]
    assert np.isfinite(filter_logits(logits, top_k=3, top_p=0.75)).tolist() == [[False, True, False, True]]
    assert np.isfinite(filter_logits(logits)).all()


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_sample_frequencies_follow_softmax_over_temperature(temperature):
    logits = np.array([1.0, 2.0, 0.0, -1.0, 1.5], dtype=np.float32)
    n = 40000
    ids = sample_next(np.tile(logits, (n, 1)), temperature, None, None, np.random.default_rng(0))
    freq = np.bincount(ids, minlength=5) / n
    z = np.exp(logits.astype(np.float64) / temperature)
    expected = z / z.sum()
    np.testing.assert_allclose(freq, expected, atol=4 * np.sqrt(0.25 / n))  # 4 sigma


def test_sample_never_picks_filtered_tokens():
    logits = np.tile(np.array([0.0, 3.0, 2.9, -5.0, 1.0]), (5000, 1))
    ids = sample_next(logits, 1.0, 2, None, np.random.default_rng(1))
    assert set(ids.tolist()) == {1, 2}


@pytest.mark.parametrize("kwargs, match", [
    (dict(idx=[[1, 2, 40]]), r"\[0, vocab_size=40\)"),
    (dict(idx=[[-1, 2]]), r"\[0, vocab_size=40\)"),
    (dict(idx=[[1.0, 2.0]]), "must be integers"),
    (dict(idx=np.zeros((1, 0), np.int64)), "non-empty"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(temperature=-0.5), "temperature"),
    (dict(top_k=-1), "top_k"),
    (dict(top_k=2.5), "top_k"),
    (dict(seed=-1), "seed"),
    (dict(eos_token_id=40), "eos_token_id"),
    (dict(temperature=float("inf")), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
])
def test_bad_arguments_are_clear_errors(kwargs, match):
    args = dict(idx=[[1, 2]], max_new_tokens=3, temperature=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        generate(_model(), **args)


def test_model_generate_delegates():
    model = _model()
    prompt = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(model.generate(prompt, 8, temperature=0.7, top_k=5, seed=2),
                                  generate(model, prompt, 8, temperature=0.7, top_k=5, seed=2))


# ------------------------------------------------------------------ top_k=0, eos_token_id, streaming
def test_top_k_0_means_off_as_in_transformers():
    model = _model()
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    off = generate(model, prompt, 15, temperature=1.0, seed=3)
    np.testing.assert_array_equal(generate(model, prompt, 15, temperature=1.0, top_k=0, seed=3), off)
    np.testing.assert_array_equal(generate(model, prompt, 15, temperature=1.0, top_k=40, seed=3), off)
    logits = np.log(np.array([[0.05, 0.5, 0.15, 0.3]]))
    assert np.isfinite(filter_logits(logits, top_k=0)).all()


def _greedy_eos_setup():
    """A model, a two-row prompt, and a token that row 0 produces early (greedy) and row 1 later or never."""
    model = _model()
    prompt = np.array([[1, 2, 3, 4, 5], [7, 7, 0, 39, 2]])
    free = generate(model, prompt, 12, temperature=0)
    eos = int(free[0, 7])  # row 0's third new token
    first = [int(np.argmax(row[5:] == eos)) if (row[5:] == eos).any() else None for row in free]
    return model, prompt, free, eos, first


def test_eos_token_id_stops_a_row_keeps_the_token_and_pads_with_it():
    model, prompt, free, eos, first = _greedy_eos_setup()
    out = generate(model, prompt, 12, temperature=0, eos_token_id=eos)
    for r, f in enumerate(first):
        if f is None:  # this row never produced eos: its tokens are the free run's
            np.testing.assert_array_equal(out[r], free[r, :out.shape[1]])
            continue
        stop = 5 + f
        np.testing.assert_array_equal(out[r, :stop + 1], free[r, :stop + 1])  # up to and with the eos token
        assert (out[r, stop:] == eos).all()  # then padded with eos
    # every row stopped: generation ended at the last row's eos, not after 12 tokens
    if all(f is not None for f in first):
        assert out.shape[1] == 5 + max(first) + 1
    # the cache does not change it
    np.testing.assert_array_equal(generate(model, prompt, 12, temperature=0, eos_token_id=eos, use_cache=False), out)


def test_eos_token_id_ends_generation_early_when_every_row_stopped():
    model = _model()
    prompt = np.array([[1, 2, 3]])
    free = generate(model, prompt, 10, temperature=0)
    eos = int(free[0, 4])  # the second new token
    first = int(np.argmax(free[0, 3:] == eos))  # maybe already the first
    out = model.generate(prompt, 10, temperature=0, eos_token_id=eos)  # through GPT.generate
    assert out.shape == (1, 3 + first + 1) and out[0, -1] == eos
    np.testing.assert_array_equal(out, free[:, :out.shape[1]])


def test_eos_in_sampling_does_not_change_the_rows_that_have_not_stopped():
    model = _model()
    prompt = np.array([[1, 2, 3], [4, 5, 6], [9, 9, 9]])
    free = generate(model, prompt, 20, temperature=1.0, seed=11)
    eos = int(free[1, 5])
    out = generate(model, prompt, 20, temperature=1.0, seed=11, eos_token_id=eos)
    for r in range(3):
        hits = np.flatnonzero(free[r, 3:] == eos)
        stop = out.shape[1] if not len(hits) else 3 + hits[0] + 1
        np.testing.assert_array_equal(out[r, :stop], free[r, :stop])
        assert (out[r, stop:] == eos).all()


def test_stream_yields_each_new_column_as_it_is_made_and_matches_generate():
    model = _model()
    model.train()
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    it = stream(model, prompt, 6, temperature=0.9, top_k=0, seed=4)
    step, ids = next(it)  # the first token, before the others are made
    assert step == 0 and ids.shape == (2,) and ids.dtype == np.int64
    assert not model.training  # eval mode while generating
    cols = [ids] + [c for _, c in it]
    assert model.training  # restored at the end
    expected = generate(model, prompt, 6, temperature=0.9, seed=4)
    np.testing.assert_array_equal(np.stack(cols, axis=1), expected[:, 3:])


def test_stream_checks_its_arguments_when_called():
    with pytest.raises(BadArgument, match="top_k") as e:
        stream(_model(), [[1, 2]], 3, top_k=-2)  # no next() needed
    assert e.value.name == "top_k" and e.value.value == -2


def test_a_numpy_generator_as_seed_continues_its_stream():
    model = _model()
    prompt = np.array([[1, 2, 3]])
    both = generate(model, np.repeat(prompt, 1, 0), 5, seed=np.random.default_rng(8))
    rng = np.random.default_rng(8)
    a = generate(model, prompt, 5, seed=rng)
    b = generate(model, prompt, 5, seed=rng)  # the generator moved on: a different continuation
    np.testing.assert_array_equal(a, both)
    assert not np.array_equal(a, b)
