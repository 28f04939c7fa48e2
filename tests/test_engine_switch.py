"""What you read is what runs: by default every op runs the forward and backward written in its class,
and the optimizers their `update`; `tinygrad_lite.fast.enable()` switches the whole engine to the fast
kernels, `disable()` back; importing changes nothing and starts nothing."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import tinygrad_lite.functional as F
import tinygrad_lite.optim as optim
from gpt import GPT, GPTConfig
from tinygrad_lite import Tensor, fast, observe
from tinygrad_lite.function import OPS

HEAVY = ("multiprocessing", "subprocess", "socket", "mmap", "concurrent.futures")


@pytest.mark.parametrize("module", ["tinygrad_lite", "tinygrad_lite.fast", "gpt"])
def test_import_loads_no_process_or_thread_machinery_and_changes_no_op(module):
    code = (f"import sys, {module}, tinygrad_lite\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
            "print(tinygrad_lite.fast.is_enabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    if module.startswith("tinygrad_lite"):  # (gpt's tokenizer, tiktoken, loads concurrent.futures itself)
        assert out[0] == "[]", f"import {module} loaded {out[0]}"
    assert out[1] == "False", "importing turned fast mode on"


def test_parallel_is_where_the_processes_are():
    """DataParallel lives in tinygrad_lite.parallel; the old name tinygrad_lite.fast.DataParallel still works."""
    from tinygrad_lite.parallel import DataParallel
    assert fast.DataParallel is DataParallel


class _Ran(observe.Forwarding):
    """Records, per op, which implementation ran its forward and which its backward."""

    def __init__(self):
        self.forward_impls, self.backward_runs = {}, {}

    def forward(self, ctx, impl, arrays):
        self.forward_impls.setdefault(ctx.fn.name, set()).add("math" if impl is ctx.fn else "fast")
        return self.inner.forward(ctx, impl, arrays)

    def backward(self, ctx, run, g):
        self.backward_runs.setdefault(ctx.fn.name, set()).add("math" if run is ctx.fn.backward else "fast")
        return self.inner.backward(ctx, run, g)


def _gpt_step() -> _Ran:
    model = GPT(GPTConfig(vocab_size=17, block_size=8, n_layer=2, n_head=2, n_embd=16), seed=0)
    idx = np.random.default_rng(0).integers(0, 17, (2, 9))
    with observe.watch(_Ran()) as ran:
        F.cross_entropy(model(idx[:, :-1]), idx[:, 1:]).backward()
    return ran


def test_a_gpt_runs_every_op_as_written_by_default_and_the_kernels_when_enabled():
    ran = _gpt_step()
    assert {"linear", "gelu", "layer_norm", "scaled_dot_product_attention", "embedding", "cross_entropy",
            "matmul", "getitem"} <= set(ran.forward_impls)
    assert all(impls == {"math"} for impls in ran.forward_impls.values()), ran.forward_impls
    assert all(runs == {"math"} for runs in ran.backward_runs.values()), ran.backward_runs
    fast.enable()
    ran = _gpt_step()
    kernels = {op.name for op in fast.KERNELS if op in OPS.values()}
    assert {name for name, impls in ran.forward_impls.items() if impls == {"fast"}} == set(ran.forward_impls) & kernels
    assert {name for name, runs in ran.backward_runs.items() if runs == {"fast"}} == set(ran.backward_runs) & kernels
    fast.disable()
    ran = _gpt_step()
    assert all(impls == {"math"} for impls in ran.forward_impls.values())
    assert all(runs == {"math"} for runs in ran.backward_runs.values())


def test_an_edit_to_an_ops_backward_takes_effect_by_default(monkeypatch):
    """The first thing a learner tries: change an op's backward, see the gradient change (and gradcheck fail)."""
    from tinygrad_lite import gradcheck, GradcheckError
    x = Tensor(np.random.default_rng(0).normal(size=(3, 4)), requires_grad=True, dtype=np.float64)
    g = np.random.default_rng(1).normal(size=(3, 4))
    F.gelu(x).backward(g)
    right, x.grad = x.grad.copy(), None
    original = F.GELU.backward

    def doubled(ctx, g):
        dx, none = original(ctx, g)
        return dx * 2, none
    monkeypatch.setattr(F.GELU, "backward", staticmethod(doubled))
    F.gelu(x).backward(g)
    np.testing.assert_allclose(x.grad, 2 * right, rtol=1e-12)
    with pytest.raises(GradcheckError):
        gradcheck(lambda t: F.gelu(t), [x])
    x.grad = None
    with fast.enabled():  # the kernel runs instead: the edit has no effect there
        F.gelu(x).backward(g)
    np.testing.assert_allclose(x.grad, right, rtol=1e-12)


def test_an_edit_to_an_optimizers_update_takes_effect_by_default(monkeypatch):
    calls = []
    original = optim.AdamW.update

    def logged(p, g, state, group):
        calls.append(p.shape)
        original(p, g, state, group)
    monkeypatch.setattr(optim.AdamW, "update", staticmethod(logged))
    p = Tensor(np.ones((2, 3)), requires_grad=True)
    p.grad = np.ones((2, 3), np.float32)
    opt = optim.AdamW([p])
    opt.step()
    assert calls == [(2, 3)]
    with fast.enabled():  # the fused kernel instead
        opt.step()
    assert calls == [(2, 3)]


def test_the_context_managers_nest_and_restore():
    assert not fast.is_enabled()
    with fast.enabled():
        assert fast.is_enabled()
        with fast.disabled():
            assert not fast.is_enabled()
            with fast.enabled():
                assert fast.is_enabled()
            assert not fast.is_enabled()
        assert fast.is_enabled()
    assert not fast.is_enabled()
    with pytest.raises(ZeroDivisionError):
        with fast.enabled():
            1 / 0
    assert not fast.is_enabled()


def test_enable_makes_the_process_settings_the_kernels_are_measured_with():
    """One call gives a training loop the speed the CLI gets: malloc reuse and the optimizer's threads (unless
    the user chose a number of threads)."""
    code = """
import os, tinygrad_lite, tinygrad_lite.fast as fast, tinygrad_lite.fast.memory as memory
assert fast.get_num_threads() == 1 and not memory._enabled
fast.enable()
assert fast.get_num_threads() == (os.cpu_count() or 1), fast.get_num_threads()
assert memory._enabled or os.name != "posix"
fast.disable(); fast.set_num_threads(1); fast.enable()
assert fast.get_num_threads() == 1  # chosen by the user: kept
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_second_derivatives_of_a_graph_the_kernels_built_are_the_math_ones():
    """create_graph=True runs the ops' own backward; where a kernel ran the forward, the op's forward is run
    again for its context, and the kernel's output stays the node's output (the graph stays connected)."""
    from tinygrad_lite import autograd
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=(2, 5)), requires_grad=True, dtype=np.float64)
    w = Tensor(rng.normal(size=(5,)), requires_grad=True, dtype=np.float64)

    def f():
        return (F.softmax(F.layer_norm(x, w, None) * 3.0, -1) * F.gelu(x)).sum()
    results = []
    for on in (False, True):
        with fast.enabled() if on else fast.disabled():
            gx, gw = autograd.grad(f(), [x, w], create_graph=True)
            hx, hw = autograd.grad((gx * gx).sum() + gw.sum(), [x, w])
        results.append((gx.data, gw.data, hx.data, hw.data))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
