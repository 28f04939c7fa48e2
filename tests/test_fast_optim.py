"""The optimizers' fast kernels (tinygrad_lite/fast/optim.py) equal the math-first updates in optim.py.

Each case runs the same params, grads and hyperparameters twice, once under `fast.enabled()` (the kernel
registered for the optimizer) and once by default (the optimizer's own `update`), and compares the
params and the whole optimizer state: float64 to rtol 1e-12, float32 within rounding. The shapes are
random and include 0-d params, params that span several (shrunken) chunks, params whose `.data` is a
strided view, strided gradients, and runs on 1, 2 and 3 threads.
"""
import contextlib
import subprocess
import sys

import numpy as np
import pytest

import tinygrad_lite.fast as fast
import tinygrad_lite.fast.optim as fast_optim
import tinygrad_lite.optim as optim
from tinygrad_lite.function import Function, MathGrads
from tinygrad_lite.state import implementation
from tinygrad_lite.tensor import Tensor

TOL = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=1e-6, atol=1e-6)}
CHUNK = 64  # shrunken chunk: most params below span several, with a ragged last one


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n}threads")
def runner(request, monkeypatch):
    """Small chunks (and dot blocks within them), no minimum size for threading, `request.param` threads."""
    monkeypatch.setattr(fast_optim, "_CHUNK", CHUNK)
    monkeypatch.setattr(fast_optim, "_DOT_BLOCK", 16)
    monkeypatch.setattr(fast_optim, "_MIN_PARALLEL", 0)
    fast.set_num_threads(request.param)
    yield request.param
    fast.set_num_threads(1)


def random_shapes(rng: np.random.Generator) -> list[tuple[int, ...]]:
    """0-d, short, exactly one chunk, one chunk + 1, and a few random 1- to 3-d shapes up to ~5 chunks."""
    shapes = [(), (3,), (CHUNK,), (CHUNK + 1,)]
    for _ in range(4):
        ndim = int(rng.integers(1, 4))
        shapes.append(tuple(int(s) for s in rng.integers(1, 12 if ndim > 1 else 300, ndim)))
    return shapes


def strided(a: np.ndarray) -> np.ndarray:
    """A non-contiguous array equal to a: a transposed copy for 2-d and up, every other element otherwise."""
    if a.ndim >= 2:
        return np.ascontiguousarray(a.T).T
    if a.ndim == 1:
        wide = np.empty(2 * a.size, a.dtype)
        wide[::2] = a
        return wide[::2]
    return a.copy()


def make_problem(dtype, seed: int, n_steps: int):
    """(params, grads[step][param]): every other param's .data and every third grad is a strided view."""
    rng = np.random.default_rng(seed)
    shapes = random_shapes(rng)
    params = []
    for i, s in enumerate(shapes):
        p = Tensor(rng.standard_normal(s), requires_grad=True, dtype=dtype)
        if i % 2:
            p.data = strided(p.data)
        params.append(p)
    assert sum(not p.data.flags.c_contiguous for p in params) >= 3
    grads = [[rng.standard_normal(s).astype(dtype) * rng.uniform(0.1, 3.0) for s in shapes] for _ in range(n_steps)]
    for step in grads:
        for i in range(0, len(step), 3):
            step[i] = strided(step[i])
    assert sum(not g.flags.c_contiguous for g in grads[0]) >= 2
    return params, grads


def run(make_opt, dtype, seed: int, n_steps: int, use_fast: bool):
    params, grads = make_problem(dtype, seed, n_steps)
    opt = make_opt(params)
    kernel = fast.KERNELS[type(opt)]
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g
        if use_fast:
            with fast.enabled():
                assert implementation(type(opt)) is kernel
                opt.step()
        else:
            assert implementation(type(opt)) is type(opt)  # the default: the optimizer's own update
            opt.step()
    return params, opt


def assert_same(fast_run, math_run, dtype):
    (pf, of), (pm, om) = fast_run, math_run
    for a, b in zip(pf, pm):
        assert a.data.dtype == b.data.dtype == dtype and a.data.shape == b.data.shape
        np.testing.assert_allclose(a.data, b.data, **TOL[dtype])
    sf, sm = of.state_dict(), om.state_dict()
    assert sf["param_groups"] == sm["param_groups"]
    assert sorted(sf["state"]) == sorted(sm["state"])
    for i in sf["state"]:
        assert set(sf["state"][i]) == set(sm["state"][i])
        for k, v in sf["state"][i].items():
            if isinstance(v, np.ndarray):
                assert v.dtype == sm["state"][i][k].dtype == dtype
                np.testing.assert_allclose(v, sm["state"][i][k], **TOL[dtype], err_msg=f"state {i} {k!r}")
            else:
                assert v == sm["state"][i][k]


def adamw_two_groups(params):
    return optim.AdamW([{"params": params[::2], "weight_decay": 0.1},
                        {"params": params[1::2], "lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.0}],
                       lr=0.01)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", [0, 1])
def test_adamw_fast_equals_math(runner, dtype, seed):
    assert_same(run(adamw_two_groups, dtype, seed, 4, True), run(adamw_two_groups, dtype, seed, 4, False), dtype)


@pytest.mark.parametrize("momentum,wd,nesterov", [(0.0, 0.0, False), (0.0, 0.1, False), (0.9, 0.0, False),
                                                  (0.9, 0.05, False), (0.9, 0.0, True), (0.8, 0.05, True)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sgd_fast_equals_math(runner, momentum, wd, nesterov, dtype):
    def make(params):
        return optim.SGD([{"params": params[::2]}, {"params": params[1::2], "lr": 0.2}],
                         lr=0.05, momentum=momentum, weight_decay=wd, nesterov=nesterov)
    assert_same(run(make, dtype, 3, 4, True), run(make, dtype, 3, 4, False), dtype)


def test_params_without_grad_and_tensor_grads_alike():
    """A param with no grad is skipped and a Tensor .grad (create_graph=True) is read, in both versions."""
    results = []
    for use_fast in (True, False):
        params, grads = make_problem(np.float64, 5, 2)
        opt = adamw_two_groups(params)
        for step_grads in grads:
            for i, (p, g) in enumerate(zip(params, step_grads)):
                p.grad = None if i == 1 else Tensor(g, dtype=np.float64) if i % 3 == 2 else g
            with fast.enabled() if use_fast else contextlib.nullcontext():
                opt.step()
        assert id(params[1]) not in opt.state
        results.append((params, opt))
    assert_same(results[0], results[1], np.float64)


# ------------------------------------------------------------------ clip_grad_norm_
def clip(dtype, seed: int, max_norm: float, use_fast: bool):
    params, (grads,) = make_problem(dtype, seed, 1)
    for i, (p, g) in enumerate(zip(params, grads)):
        p.grad = Tensor(g, dtype=dtype) if i % 4 == 3 else g
    params[2].grad = params[1].grad  # one array held by two params: scaled once
    params[5].grad = None
    if use_fast:
        with fast.enabled():
            assert implementation(optim.ClipGradNorm) is fast.KERNELS[optim.ClipGradNorm]
            norm = optim.clip_grad_norm_(params, max_norm)
    else:
        assert implementation(optim.ClipGradNorm) is optim.ClipGradNorm
        norm = optim.clip_grad_norm_(params, max_norm)
    return norm, [p.grad.data if isinstance(p.grad, Tensor) else p.grad for p in params]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("max_norm", [1.0, 1e6], ids=["clips", "keeps"])
@pytest.mark.parametrize("seed", [0, 1])
def test_clip_grad_norm_fast_equals_math(runner, dtype, max_norm, seed):
    norm_f, grads_f = clip(dtype, seed, max_norm, True)
    norm_m, grads_m = clip(dtype, seed, max_norm, False)
    assert isinstance(norm_f, float) and isinstance(norm_m, float)
    assert norm_f == pytest.approx(norm_m, rel=1e-12, abs=0)
    for a, b in zip(grads_f, grads_m):
        if a is None:
            assert b is None
            continue
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(a, b, **TOL[dtype])


# ------------------------------------------------------------------ switches
def test_every_optimizer_kernel_has_cases():
    """fast.KERNELS holds op kernels and the backward pass's (tests/test_fast.py) and these, each tested above."""
    others = {op for op in fast.KERNELS if not issubclass(op, Function) and op is not MathGrads}
    assert others == {optim.SGD, optim.AdamW, optim.ClipGradNorm}


def test_the_switch_turns_the_optimizers_to_their_kernels_and_back():
    kernels = {c: fast.KERNELS[c] for c in (optim.SGD, optim.AdamW, optim.ClipGradNorm)}
    assert all(implementation(c) is c for c in kernels)  # the default: math first
    with fast.enabled():
        assert all(implementation(c) is k for c, k in kernels.items())
        with fast.disabled():
            assert all(implementation(c) is c for c in kernels)
        assert all(implementation(c) is k for c, k in kernels.items())
    assert all(implementation(c) is c for c in kernels)


def test_a_subclass_runs_its_own_update():
    """A user's subclass may change `update`: it starts math first rather than inherit the parent's kernel."""
    calls = []

    class Logged(optim.SGD):
        @staticmethod
        def update(p, g, state, group):
            calls.append(p.shape)
            optim.SGD.update(p, g, state, group)

    p = Tensor(np.ones(3), requires_grad=True, dtype=np.float64)
    p.grad = np.ones(3)
    with fast.enabled():
        Logged([p], lr=0.5).step()
    assert calls == [(3,)] and np.all(p.data == 0.5)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_rejects_bad_values(bad):
    before = fast.get_num_threads()
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        fast.set_num_threads(bad)
    assert fast.get_num_threads() == before


def test_threads_are_opt_in():
    """Importing and stepping start no thread, neither does enabling fast mode before a step needs them;
    fast mode on two threads starts one helper, set_num_threads(1) stops it."""
    code = """
import threading, numpy as np
import tinygrad_lite, tinygrad_lite.optim as optim
from tinygrad_lite import Tensor
names = lambda: sorted(t.name for t in threading.enumerate() if t.name.startswith("tinygrad_lite"))
p = Tensor(np.zeros(1 << 22), requires_grad=True, dtype=np.float32)  # large enough for the pool
p.grad = np.ones(1 << 22, np.float32)
opt = optim.AdamW([p])
opt.step(); optim.clip_grad_norm_([p], 1.0)
assert tinygrad_lite.fast.get_num_threads() == 1 and names() == [], names()
tinygrad_lite.fast.set_num_threads(2)
opt.step()
assert names() == [], names()  # math first: the optimizer's own update, on this thread
tinygrad_lite.fast.enable()
assert names() == [], names()
opt.step()
assert len(names()) == 1, names()
tinygrad_lite.fast.set_num_threads(1)
for t in threading.enumerate():
    if t.name.startswith("tinygrad_lite"):
        t.join(5)
assert names() == [], names()
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
