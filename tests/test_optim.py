"""Tests for tinygrad_lite.optim: SGD, AdamW, clip_grad_norm_, state dicts, the warmup + cosine schedule.

References are plain NumPy float64 transcriptions of the published update rules (PyTorch docs /
Loshchilov & Hutter), written here independently of the implementation; torch is used when installed.
"""
import math

import numpy as np
import pytest

import tinygrad_lite.fast.optim as fast_optim
import tinygrad_lite.optim as optim
from tinygrad_lite.tensor import Tensor

SHAPES = [(3, 4), (5,), (2, 3, 2)]


def make_params(dtype=np.float64, seed=0, shapes=SHAPES) -> list[Tensor]:
    rng = np.random.default_rng(seed)
    return [Tensor(rng.standard_normal(s), requires_grad=True, dtype=dtype) for s in shapes]


def random_grads(n_steps: int, shapes=SHAPES, seed=1) -> list[list[np.ndarray]]:
    """Non-uniform random float64 gradients: grads[step][param]."""
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) * rng.uniform(0.1, 3.0) for s in shapes] for _ in range(n_steps)]


def run(opt: optim.Optimizer, params: list[Tensor], grads: list[list[np.ndarray]]) -> None:
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.astype(p.dtype)
        opt.step()


# ------------------------------------------------------------------ reference transcriptions (float64)
def adamw_reference(p, grads, lr, beta1, beta2, eps, wd):
    """Decoupled weight decay Adam, step by step as in the PyTorch AdamW docs."""
    p = p.astype(np.float64).copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        p = p - lr * wd * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def sgd_reference(p, grads, lr, momentum, wd, nesterov):
    """SGD as in the PyTorch docs (dampening 0)."""
    p = p.astype(np.float64).copy()
    b = None
    for g in grads:
        g = g + wd * p
        if momentum != 0:
            b = g.copy() if b is None else momentum * b + g
            g = g + momentum * b if nesterov else b
        p = p - lr * g
    return p


ADAMW_GROUPS = [dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
                dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0)]


def adamw_two_groups(params):
    return optim.AdamW([{"params": params[:2], "weight_decay": 0.1},
                        {"params": params[2:], "lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.0}],
                       lr=0.01)


def test_adamw_matches_reference_float64_two_groups():
    params = make_params()
    start = [p.data.copy() for p in params]
    grads = random_grads(5)
    run(adamw_two_groups(params), params, grads)
    for i, p in enumerate(params):
        h = ADAMW_GROUPS[0] if i < 2 else ADAMW_GROUPS[1]
        ref = adamw_reference(start[i], [g[i] for g in grads], h["lr"], *h["betas"], h["eps"], h["weight_decay"])
        assert p.dtype == np.float64
        np.testing.assert_allclose(p.data, ref, rtol=0, atol=1e-12)
        assert np.abs(p.data - start[i]).min() > 1e-4  # every element moved


def test_adamw_float32_matches_reference_and_stays_float32():
    params = make_params(np.float32)
    start = [p.data.astype(np.float64) for p in params]
    grads = random_grads(5)
    opt = adamw_two_groups(params)
    run(opt, params, grads)
    for i, p in enumerate(params):
        h = ADAMW_GROUPS[0] if i < 2 else ADAMW_GROUPS[1]
        g32 = [g[i].astype(np.float32).astype(np.float64) for g in grads]
        ref = adamw_reference(start[i], g32, h["lr"], *h["betas"], h["eps"], h["weight_decay"])
        assert p.dtype == np.float32 and p.grad.dtype == np.float32
        assert opt.state[id(p)]["exp_avg"].dtype == np.float32
        assert opt.state[id(p)]["exp_avg_sq"].dtype == np.float32
        np.testing.assert_allclose(p.data, ref, rtol=1e-6, atol=1e-6)


def test_adamw_defaults_and_state():
    (p,) = make_params(shapes=[(4,)])
    opt = optim.AdamW([p])
    assert opt.param_groups[0]["lr"] == 1e-3 and opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert opt.param_groups[0]["eps"] == 1e-8 and opt.param_groups[0]["weight_decay"] == 0.01
    start = p.data.copy()
    grads = random_grads(2, shapes=[(4,)])
    run(opt, [p], grads)
    assert set(opt.state[id(p)]) == {"step", "exp_avg", "exp_avg_sq"} and opt.state[id(p)]["step"] == 2
    ref = adamw_reference(start, [g[0] for g in grads], 1e-3, 0.9, 0.999, 1e-8, 0.01)
    np.testing.assert_allclose(p.data, ref, rtol=0, atol=1e-12)


def test_params_without_grad_are_skipped():
    params = make_params()
    before = params[1].data.copy()
    opt = optim.AdamW(params, lr=0.1, weight_decay=0.5)  # weight decay alone would move it
    for p in params:
        p.grad = np.ones_like(p.data)
    params[1].grad = None
    opt.step()
    np.testing.assert_array_equal(params[1].data, before)
    assert id(params[1]) not in opt.state and opt.state[id(params[0])]["step"] == 1


def test_chunked_threaded_update_is_bitwise_equal_to_whole_array(monkeypatch):
    """The fast runner: tiny chunks and forced threading (chunk edges inside params) change nothing, bit for bit."""
    shapes = [(37, 5), (101,), (3,)]
    grads = random_grads(3, shapes)
    results = []
    for chunk, min_parallel, threads in [(1 << 30, 1 << 30, 1), (16, 0, 2), (7, 0, 3)]:
        monkeypatch.setattr(fast_optim, "_CHUNK", chunk)
        monkeypatch.setattr(fast_optim, "_MIN_PARALLEL", min_parallel)
        monkeypatch.setattr(fast_optim, "_num_threads", threads)
        params = make_params(np.float32, shapes=shapes)
        opt = optim.AdamW(params, lr=0.01)
        run(opt, params, grads)
        norm = optim.clip_grad_norm_(params, 1.0)
        results.append([p.data.copy() for p in params] + [p.grad.copy() for p in params] + [np.float64(norm)])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_noncontiguous_param_is_updated_in_place():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 4))
    p = Tensor(base, requires_grad=True, dtype=np.float64)
    p.data = base.T  # a strided view: cannot be flattened without a copy
    start = p.data.copy()
    grads = random_grads(2, shapes=[(4, 6)])
    run(optim.AdamW([p], lr=0.01), [p], grads)
    assert p.data.base is base
    np.testing.assert_allclose(p.data, adamw_reference(start, [g[0] for g in grads], 0.01, 0.9, 0.999, 1e-8, 0.01),
                               rtol=0, atol=1e-12)


def test_tensor_grad_after_create_graph_is_read_and_clipped():
    """After backward(create_graph=True) `.grad` is a Tensor: step reads it, clip_grad_norm_ scales its data."""
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True, dtype=np.float64)
    (w * w).sum().backward(create_graph=True)  # d(sum w^2)/dw = 2w = [2, 4]
    assert isinstance(w.grad, Tensor)
    optim.SGD([w], lr=0.1).step()
    np.testing.assert_allclose(w.data, [0.8, 1.6], rtol=1e-15)
    assert optim.clip_grad_norm_([w], 1.0) == pytest.approx(math.sqrt(20.0), rel=1e-15)
    np.testing.assert_allclose(w.grad.data, np.array([2.0, 4.0]) / (math.sqrt(20.0) + 1e-6), rtol=1e-15)


# ------------------------------------------------------------------ SGD
@pytest.mark.parametrize("momentum,wd,nesterov", [(0.0, 0.0, False), (0.0, 0.1, False), (0.9, 0.0, False),
                                                  (0.9, 0.05, False), (0.9, 0.0, True), (0.8, 0.05, True)])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_sgd_matches_reference(momentum, wd, nesterov, dtype, tol):
    params = make_params(dtype)
    start = [p.data.astype(np.float64) for p in params]
    grads = random_grads(5)
    run(optim.SGD(params, lr=0.05, momentum=momentum, weight_decay=wd, nesterov=nesterov), params, grads)
    for i, p in enumerate(params):
        gi = [g[i].astype(dtype).astype(np.float64) for g in grads]
        assert p.dtype == dtype
        np.testing.assert_allclose(p.data, sgd_reference(start[i], gi, 0.05, momentum, wd, nesterov),
                                   rtol=tol, atol=tol)


def test_sgd_state_only_with_momentum():
    params = make_params()
    opt = optim.SGD([{"params": params[:1], "momentum": 0.9}, {"params": params[1:]}], lr=0.1)
    run(opt, params, random_grads(1))
    assert set(opt.state[id(params[0])]) == {"momentum_buffer"}
    assert not opt.state.get(id(params[1]))


def test_optimizer_trains_through_backward():
    """End to end with the engine: least squares y = X w with SGD+momentum reaches the solution."""
    rng = np.random.default_rng(0)
    X, w_true = rng.standard_normal((32, 3)), np.array([1.5, -2.0, 0.5])
    w = Tensor(np.zeros(3), requires_grad=True, dtype=np.float64)
    opt = optim.SGD([w], lr=0.05, momentum=0.9)
    for _ in range(500):
        opt.zero_grad()
        loss = ((Tensor(X, dtype=np.float64) @ w - Tensor(X @ w_true, dtype=np.float64)) ** 2).mean()
        loss.backward()
        opt.step()
    np.testing.assert_allclose(w.data, w_true, atol=1e-6)


# ------------------------------------------------------------------ groups and validation
def test_group_overrides_defaults_and_add_param_group():
    params = make_params()
    opt = optim.SGD([{"params": params[:1], "lr": 0.5}, {"params": params[1]}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.1]
    assert all(g["momentum"] == 0.9 for g in opt.param_groups)
    assert opt.param_groups[1]["params"] == [params[1]]  # a single Tensor becomes a list
    opt.add_param_group({"params": params[2:], "weight_decay": 0.2})
    assert opt.param_groups[2]["weight_decay"] == 0.2 and opt.param_groups[2]["lr"] == 0.1


def test_bad_params_raise():
    params = make_params()
    with pytest.raises(ValueError, match="param group 1.*already appears in param group 0"):
        optim.AdamW([{"params": params[:2]}, {"params": params[1:]}])
    with pytest.raises(ValueError, match="already appears"):
        optim.SGD([params[0], params[0]], lr=0.1)
    opt = optim.AdamW(params[:2])
    with pytest.raises(ValueError, match="already appears"):
        opt.add_param_group({"params": [params[2], params[0]]})
    assert len(opt.param_groups) == 1  # the failed add left the optimizer as it was
    with pytest.raises(ValueError, match="empty"):
        optim.AdamW([])
    with pytest.raises(ValueError, match="empty"):
        optim.AdamW([{"params": []}])
    with pytest.raises(TypeError, match="single Tensor"):
        optim.AdamW(params[0])
    with pytest.raises(TypeError, match="must be a Tensor"):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="float dtype"):
        optim.SGD([Tensor(np.arange(3))], lr=0.1)


@pytest.mark.parametrize("make", [
    lambda p: optim.SGD(p, lr=-0.1),
    lambda p: optim.SGD(p, lr=0.1, momentum=-0.5),
    lambda p: optim.SGD(p, lr=0.1, weight_decay=-1.0),
    lambda p: optim.SGD(p, lr=0.1, nesterov=True),
    lambda p: optim.AdamW(p, lr=float("nan")),
    lambda p: optim.AdamW(p, betas=(0.9, 1.0)),
    lambda p: optim.AdamW(p, betas=(-0.1, 0.9)),
    lambda p: optim.AdamW(p, eps=-1e-8),
    lambda p: optim.AdamW(p, weight_decay=-0.01),
    lambda p: optim.AdamW([{"params": p, "lr": -1.0}]),
])
def test_bad_hyperparameters_raise(make):
    with pytest.raises(ValueError, match="param group 0"):
        make(make_params())


def test_grad_of_wrong_shape_or_dtype_raises_before_any_update():
    good, p = make_params(shapes=[(2,), (3,)])
    before = good.data.copy()
    opt = optim.AdamW([good, p])
    good.grad = np.ones(2)
    p.grad = np.ones(4)
    with pytest.raises(ValueError, match=r"shape \(4\).*shape \(3\)"):
        opt.step()
    p.grad = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="float32.*float64"):
        opt.step()
    assert opt.state == {}  # the good param was neither updated nor given state
    np.testing.assert_array_equal(good.data, before)


def test_zero_grad_sets_none():
    params = make_params()
    opt = optim.AdamW(params)
    for p in params:
        p.grad = np.ones_like(p.data)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


# ------------------------------------------------------------------ clip_grad_norm_
def test_clip_grad_norm_clips_and_returns_preclip_norm():
    params = make_params(seed=4)
    grads = random_grads(1, seed=5)[0]
    for p, g in zip(params, grads):
        p.grad = g.copy()
    expected = np.linalg.norm(np.concatenate([g.ravel() for g in grads]))
    assert expected > 1.0
    norm = optim.clip_grad_norm_(params, max_norm=1.0)
    assert isinstance(norm, float) and norm == pytest.approx(expected, rel=1e-14)
    clipped = np.linalg.norm(np.concatenate([p.grad.ravel() for p in params]))
    assert clipped == pytest.approx(1.0 * expected / (expected + 1e-6), rel=1e-14)
    for p, g in zip(params, grads):  # one common factor: directions kept
        np.testing.assert_allclose(p.grad, g * (1.0 / (expected + 1e-6)), rtol=1e-14)


def test_clip_grad_norm_leaves_small_grads_and_skips_missing():
    params = make_params()
    grads = [g * 1e-3 for g in random_grads(1)[0]]
    for p, g in zip(params, grads):
        p.grad = g.copy()
    params[0].grad = None
    held = [p.grad for p in params]
    expected = np.linalg.norm(np.concatenate([g.ravel() for g in grads[1:]]))
    assert optim.clip_grad_norm_(params, max_norm=1.0) == pytest.approx(expected, rel=1e-14)
    assert params[0].grad is None
    for p, h, g in zip(params[1:], held[1:], grads[1:]):
        assert p.grad is h
        np.testing.assert_array_equal(p.grad, g)
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm_(params, -1.0)


def test_clip_grad_norm_float32_accumulates_in_float64():
    rng = np.random.default_rng(6)
    p = Tensor(np.zeros(300_001), requires_grad=True, dtype=np.float32)
    p.grad = (rng.standard_normal(300_001) + 3.0).astype(np.float32)  # a large, biased sum
    exact = math.sqrt(math.fsum(float(x) * float(x) for x in p.grad.astype(np.float64)))
    norm = optim.clip_grad_norm_(p, max_norm=1.0)  # a single Tensor is accepted
    assert abs(norm - exact) / exact < 1e-13
    assert p.grad.dtype == np.float32
    assert float(np.linalg.norm(p.grad.astype(np.float64))) == pytest.approx(1.0, rel=1e-6)


def test_clip_grad_norm_scales_a_shared_grad_array_once():
    params = make_params(shapes=[(4,), (4,)])
    shared = np.full(4, 3.0)
    params[0].grad = params[1].grad = shared
    assert optim.clip_grad_norm_(params, 1.0) == pytest.approx(math.sqrt(8 * 9.0))
    np.testing.assert_allclose(shared, 3.0 / (math.sqrt(72.0) + 1e-6))


# ------------------------------------------------------------------ state_dict
@pytest.mark.parametrize("make", [adamw_two_groups,
                                  lambda p: optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True)])
def test_state_dict_round_trip_is_bitwise(make):
    grads = random_grads(5)
    straight = make_params(np.float32)
    run(make(straight), straight, grads)

    first = make_params(np.float32)
    opt = make(first)
    run(opt, first, grads[:3])
    sd = opt.state_dict()
    resumed = [Tensor(p.data.copy(), requires_grad=True, dtype=np.float32) for p in first]
    run(opt, first, grads[3:4])  # advancing the old optimizer must not change the saved copy
    opt2 = make(resumed)
    opt2.load_state_dict(sd)
    for st in sd["state"].values():  # loading copied the arrays: mutating the dict afterwards does nothing
        for v in st.values():
            if isinstance(v, np.ndarray):
                v[...] = np.nan
    run(opt2, resumed, grads[3:])
    for p, q in zip(resumed, straight):
        np.testing.assert_array_equal(p.data, q.data)


def test_state_dict_layout():
    params = make_params()
    opt = adamw_two_groups(params)
    params[1].grad = np.ones(5)
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1]["lr"] == 0.05 and sd["param_groups"][0]["weight_decay"] == 0.1
    assert list(sd["state"]) == [1] and sd["state"][1]["step"] == 1
    assert sd["state"][1]["exp_avg"] is not opt.state[id(params[1])]["exp_avg"]
    np.testing.assert_allclose(sd["state"][1]["exp_avg"], 0.1)  # (1 - beta1) * g


def test_load_state_dict_restores_hyperparameters():
    params = make_params()
    opt = adamw_two_groups(params)
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = 0.123
    opt2 = adamw_two_groups(make_params())
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 0.123 and opt2.param_groups[1]["betas"] == (0.8, 0.99)


def test_load_state_dict_mismatch_raises_and_changes_nothing():
    params = make_params()
    opt = adamw_two_groups(params)
    run(opt, params, random_grads(1))
    sd = opt.state_dict()

    with pytest.raises(ValueError, match="2 param groups.*1"):
        optim.AdamW(make_params()).load_state_dict(sd)
    other = optim.AdamW([{"params": make_params()[:1]}, {"params": make_params()[2:]}])
    with pytest.raises(ValueError, match="param group 0 has 2 params in the state dict, 1 in the optimizer"):
        other.load_state_dict(sd)
    swapped = make_params(shapes=[(4, 3), (5,), (2, 3, 2)])
    target = adamw_two_groups(swapped)
    with pytest.raises(ValueError, match=r"param 0 .*shape \(4, 3\).*'exp_avg' has shape \(3, 4\)"):
        target.load_state_dict(sd)
    assert target.state == {}  # nothing half-loaded
    sgd = optim.SGD([{"params": make_params()[:2]}, {"params": make_params()[2:]}], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"lacks the hyperparameters \['momentum', 'nesterov'\]"):
        sgd.load_state_dict(sd)
    sd_sgd = optim.SGD(make_params()[:1], lr=0.1, momentum=0.9).state_dict()
    sd_sgd["state"][0] = {"exp_avg": np.zeros((3, 4))}
    with pytest.raises(ValueError, match=r"keys \['exp_avg'\], expected \['momentum_buffer'\]"):
        optim.SGD(make_params()[:1], lr=0.1, momentum=0.9).load_state_dict(sd_sgd)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})


# ------------------------------------------------------------------ schedule
def test_cosine_with_warmup_boundaries():
    lr, min_lr, warmup, max_iters = 6e-4, 6e-5, 10, 110
    f = lambda it: optim.cosine_with_warmup(it, lr, min_lr, warmup, max_iters)  # noqa: E731
    assert f(0) == pytest.approx(lr / 11)  # (it + 1) / (warmup + 1)
    assert f(9) == pytest.approx(lr * 10 / 11)
    assert f(10) == pytest.approx(lr)  # cos(0) = 1: the peak right after warmup
    assert f(60) == pytest.approx((lr + min_lr) / 2)  # halfway through the decay: cos(pi/2) = 0
    assert f(35) == pytest.approx(min_lr + (lr - min_lr) * (1 + math.sqrt(0.5)) / 2)  # a quarter: cos(pi/4)
    assert f(110) == pytest.approx(min_lr)
    assert f(111) == f(10_000) == min_lr
    assert all(f(i) >= f(i + 1) for i in range(10, 120))  # non-increasing after warmup
    assert optim.cosine_with_warmup(0, 1.0, 0.0, 0, 10) == 1.0  # no warmup
    assert optim.cosine_with_warmup(5, 1.0, 0.1, 5, 5) == 0.1  # no decay phase


@pytest.mark.parametrize("args,match", [((0, 1.0, 0.1, -1, 10), "warmup_iters"),
                                        ((0, 1.0, 0.1, 10, 5), "max_iters"),
                                        ((0, 1.0, 2.0, 1, 10), "min_lr"),
                                        ((0, 1.0, -0.1, 1, 10), "min_lr"),
                                        ((-1, 1.0, 0.1, 1, 10), "iteration")])
def test_cosine_with_warmup_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        optim.cosine_with_warmup(*args)


def test_warmup_cosine_scheduler_sets_group_lrs_and_resumes():
    opt = optim.AdamW([{"params": make_params()[:2], "lr": 1.0}, {"params": make_params()[2:], "lr": 0.5}])
    sched = optim.WarmupCosine(opt, warmup_iters=3, max_iters=9, min_lr=[0.1, 0.05])
    seen = [sched.get_last_lr()]
    for _ in range(11):
        sched.step()
        seen.append(sched.get_last_lr())
    for it, lrs in enumerate(seen):
        assert lrs == [optim.cosine_with_warmup(it, 1.0, 0.1, 3, 9), optim.cosine_with_warmup(it, 0.5, 0.05, 3, 9)]
    assert [g["initial_lr"] for g in opt.param_groups] == [1.0, 0.5]

    # resume at iteration 5 with a fresh optimizer + scheduler
    opt_a = optim.SGD(make_params(), lr=2.0)
    sched_a = optim.WarmupCosine(opt_a, 2, 8, min_lr=0.2)
    for _ in range(5):
        sched_a.step()
    opt_b = optim.SGD(make_params(), lr=2.0)
    opt_b.load_state_dict(opt_a.state_dict())
    sched_b = optim.WarmupCosine(opt_b, 2, 8, min_lr=0.2)
    sched_b.load_state_dict(sched_a.state_dict())
    assert sched_b.last_iter == 5 and opt_b.param_groups[0]["lr"] == opt_a.param_groups[0]["lr"]
    sched_a.step()
    sched_b.step()
    assert sched_b.get_last_lr() == sched_a.get_last_lr() == [optim.cosine_with_warmup(6, 2.0, 0.2, 2, 8)]


def test_warmup_cosine_bad_arguments():
    opt = optim.SGD(make_params(), lr=0.1)
    with pytest.raises(ValueError, match="min_lr"):
        optim.WarmupCosine(opt, 1, 10, min_lr=1.0)
    with pytest.raises(ValueError, match="warmup_iters"):
        optim.WarmupCosine(opt, -1, 10)
    with pytest.raises(ValueError, match="max_iters"):
        optim.WarmupCosine(opt, 5, 4)
    with pytest.raises(ValueError, match="min_lr has 2 values"):
        optim.WarmupCosine(opt, 1, 10, min_lr=[0.0, 0.0])
    assert opt.param_groups[0]["lr"] == 0.1 and "initial_lr" not in opt.param_groups[0]
    sched = optim.WarmupCosine(opt, 1, 10)
    with pytest.raises(ValueError, match="keys"):
        sched.load_state_dict({"last_iter": 3})


# ------------------------------------------------------------------ against torch.optim (when installed)
def torch_trajectory(make_torch_opt, groups_split, grads, dtype=np.float64):
    torch = pytest.importorskip("torch")
    params = [torch.tensor(p.data, requires_grad=True) for p in make_params(dtype)]
    opt = make_torch_opt(torch, params[:groups_split], params[groups_split:])
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g.astype(dtype))
        opt.step()
    return [p.detach().numpy() for p in params]


def test_adamw_matches_torch():
    grads = random_grads(5)
    expected = torch_trajectory(
        lambda torch, a, b: torch.optim.AdamW(
            [{"params": a, "weight_decay": 0.1},
             {"params": b, "lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.0}], lr=0.01),
        2, grads)
    params = make_params()
    run(adamw_two_groups(params), params, grads)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.data, e, rtol=0, atol=1e-12)


@pytest.mark.parametrize("momentum,wd,nesterov", [(0.0, 0.0, False), (0.9, 0.05, False), (0.8, 0.05, True)])
def test_sgd_matches_torch(momentum, wd, nesterov):
    grads = random_grads(5)
    expected = torch_trajectory(
        lambda torch, a, b: torch.optim.SGD(
            [{"params": a}, {"params": b, "lr": 0.2}], lr=0.05, momentum=momentum, weight_decay=wd,
            nesterov=nesterov), 1, grads)
    params = make_params()
    opt = optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.2}], lr=0.05, momentum=momentum,
                    weight_decay=wd, nesterov=nesterov)
    run(opt, params, grads)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.data, e, rtol=0, atol=1e-12)


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    grads = random_grads(1, seed=9)[0]
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(tparams, grads):
        p.grad = torch.tensor(g)
    expected = float(torch.nn.utils.clip_grad_norm_(tparams, 0.5))
    params = make_params()
    for p, g in zip(params, grads):
        p.grad = g.copy()
    assert optim.clip_grad_norm_(params, 0.5) == pytest.approx(expected, rel=1e-14)
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-14)
