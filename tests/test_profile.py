"""tinygrad_lite.profile: a row for every op in the registry, forward and backward counted once, optimizer
steps timed, and everything it installed or patched put back on exit."""
import contextlib

import numpy as np
import pytest

import tinygrad_lite
import tinygrad_lite.fast
import tinygrad_lite.functional as F
import tinygrad_lite.observe as observe
import tinygrad_lite.optim as optim
from tinygrad_lite import Tensor
from tinygrad_lite.function import OPS

ENGINES = [pytest.param(False, id="fast"), pytest.param(True, id="math-first")]


def engine(math_first: bool):
    return contextlib.nullcontext() if math_first else tinygrad_lite.fast.enabled()  # math first: the default


def test_profile_counts_forward_backward_and_optimizer(capsys):
    w = Tensor(np.ones((3, 4)), requires_grad=True)
    x = Tensor(np.ones((2, 3)))
    opt = optim.SGD([w], lr=0.1)
    add_before, linear_before = Tensor.__add__, F.linear
    steps_before = {cls: cls.__dict__["step"] for cls in (optim.Optimizer, optim.SGD, optim.AdamW)
                    if "step" in cls.__dict__}
    with tinygrad_lite.profile() as prof:
        y = F.gelu(F.linear(x, w)) + 1.0
        y.sum().backward()
        opt.step()
    rows = {r[0]: r for r in prof.rows()}
    assert rows["linear"][2] == 1 and rows["linear"][4] == 1
    assert rows["gelu"][2:5:2] == (1, 1)
    assert rows["add"][2] == 1 and rows["sum"][4] == 1
    assert rows["optimizer.step"][2] == 1
    assert all(r[3] >= 0 and r[5] >= 0 for r in rows.values())
    assert {r[1] for r in rows.values()} == {"math"}  # the default: every op as written
    assert "linear" in capsys.readouterr().out
    assert Tensor.__add__ is add_before and F.linear is linear_before  # nothing of the engine is patched
    assert all(cls.__dict__["step"] is step for cls, step in steps_before.items())  # un-patched on exit


def test_every_optimizer_step_is_timed_once_even_through_super():
    class Twice(optim.SGD):  # a subclass of a subclass, whose step calls the one it overrides
        def step(self):
            super().step()

    w = Tensor(np.ones(3), requires_grad=True)
    w.grad = np.ones(3, np.float32)
    twice_step = Twice.__dict__["step"]
    with tinygrad_lite.profile(quiet=True) as prof:
        Twice([w], lr=0.5).step()
        np.testing.assert_array_equal(w.data, [0.5, 0.5, 0.5])  # one SGD step: w - lr * grad
        optim.AdamW([w], lr=0.1).step()
    assert {r[0]: r[2] for r in prof.rows()} == {"optimizer.step": 2}
    assert Twice.__dict__["step"] is twice_step  # a class defined after import is patched and restored too


def test_nested_ops_counted_once_and_no_double_activation():
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    with tinygrad_lite.profile(quiet=True) as prof:
        parts = x.split(1, axis=0)  # split is built from getitem: one getitem per part, no other rows
        with pytest.raises(RuntimeError, match="already active"):
            with tinygrad_lite.profile():
                pass
        assert observe.current is prof  # the refused second profile changed nothing
    assert [(r[0], r[2], r[4]) for r in prof.rows()] == [("getitem", 2, 0)]
    assert len(parts) == 2
    # a math-first backward runs Tensor ops (mul's is g * b): they are its time, not more forward rows
    with tinygrad_lite.profile(quiet=True) as prof:
        (x * 2.0).sum().backward()
    assert {r[0]: (r[2], r[4]) for r in prof.rows()} == {"mul": (1, 1), "sum": (1, 1)}


def test_an_error_in_the_block_restores_the_observer_and_the_optimizers():
    before, step = observe.current, optim.SGD.__dict__.get("step")
    with pytest.raises(ZeroDivisionError):
        with tinygrad_lite.profile():
            assert observe.current is not before
            1 / 0
    assert observe.current is before and optim.SGD.__dict__.get("step") is step


# ------------------------------------------------------------------ a row for every op in the registry
def leaf(*shape: int, seed: int = 0) -> Tensor:
    return Tensor(np.random.default_rng(seed).uniform(0.5, 1.5, shape), requires_grad=True)  # > 0: log, sqrt


# op name -> a use of that op (on fresh leaves). The test is parametrized by the registry, not by this
# table: a new op without a line here fails test_every_op_in_the_registry_gets_a_row.
USES = {
    "add": lambda: leaf(2, 3) + leaf(3, seed=1),
    "sub": lambda: leaf(2, 3) - leaf(3, seed=1),
    "mul": lambda: leaf(2, 3) * leaf(3, seed=1),
    "div": lambda: leaf(2, 3) / leaf(3, seed=1),
    "pow": lambda: leaf(2, 3) ** 2.0,
    "neg": lambda: -leaf(2, 3),
    "matmul": lambda: leaf(2, 3) @ leaf(3, 4, seed=1),
    "exp": lambda: leaf(2, 3).exp(),
    "log": lambda: leaf(2, 3).log(),
    "tanh": lambda: leaf(2, 3).tanh(),
    "sqrt": lambda: leaf(2, 3).sqrt(),
    "relu": lambda: leaf(2, 3).relu(),
    "sigmoid": lambda: leaf(2, 3).sigmoid(),
    "abs": lambda: leaf(2, 3).abs(),
    "cast": lambda: leaf(2, 3).astype(np.float64),
    "sum": lambda: leaf(2, 3).sum(axis=1),
    "max": lambda: leaf(2, 3).max(axis=0),
    "broadcast_to": lambda: leaf(2, 3).broadcast_to((4, 2, 3)),
    "reshape": lambda: leaf(2, 3).reshape(3, 2),
    "transpose": lambda: leaf(2, 3).T,
    "getitem": lambda: leaf(2, 3)[1],
    "index_add": lambda: OPS["index_add"].apply(leaf(2, 3), (np.array([0, 0]),), (3, 3)),  # getitem's backward
    "cat": lambda: Tensor.cat([leaf(2, 3), leaf(1, 3, seed=1)], axis=0),
    "where": lambda: Tensor.where(np.eye(2, 3, dtype=bool), leaf(2, 3), leaf(2, 3, seed=1)),
    "softmax": lambda: F.softmax(leaf(2, 3)),
    "log_softmax": lambda: F.log_softmax(leaf(2, 3)),
    "cross_entropy": lambda: F.cross_entropy(leaf(2, 3), np.array([0, 2])),
    "normal_cdf": lambda: OPS["normal_cdf"].apply(leaf(2, 3)),  # used by the backward of gelu(approximate="none")
    "gelu": lambda: F.gelu(leaf(2, 3)),
    "layer_norm": lambda: F.layer_norm(leaf(2, 3), leaf(3, seed=1), leaf(3, seed=2)),
    "embedding": lambda: F.embedding(np.array([[0, 2], [2, 1]]), leaf(3, 4)),
    "linear": lambda: F.linear(leaf(2, 3), leaf(3, 4, seed=1), leaf(4, seed=2)),
    "dropout": lambda: F.dropout(leaf(2, 3), 0.5, True, rng=np.random.default_rng(0)),
    "scaled_dot_product_attention": lambda: F.scaled_dot_product_attention(
        leaf(1, 2, 3, 4), leaf(1, 2, 3, 4, seed=1), leaf(1, 2, 3, 4, seed=2)),
}


def test_the_uses_table_names_only_registered_ops():
    assert set(USES) <= set(OPS), f"not in the op registry: {sorted(set(USES) - set(OPS))}"


@pytest.mark.parametrize("math_first", ENGINES)
@pytest.mark.parametrize("name", list(OPS))
def test_every_op_in_the_registry_gets_a_row(name, math_first):
    assert name in USES, f"op {name!r} is in the registry but not in test_profile.USES: add a use of it there"
    with engine(math_first), tinygrad_lite.profile(quiet=True) as prof:
        out = USES[name]()
        out.backward(np.ones(out.shape, out.dtype))
    rows = {r[0]: r for r in prof.rows()}
    assert name in rows, f"no profiler row for op {name!r}: {sorted(rows)}"
    assert rows[name][2:5:2] == (1, 1)  # one forward, one backward: the ops its backward runs are its time
    assert name in prof.table()
    has_kernel = OPS[name] in tinygrad_lite.fast.KERNELS
    assert rows[name][1] == ("fast" if has_kernel and not math_first else "math")  # the implementation that ran


def test_the_table_says_which_implementation_ran_each_op():
    x = leaf(2, 3)
    with tinygrad_lite.profile(quiet=True) as prof:
        F.gelu(x).sum().backward()
        with tinygrad_lite.fast.enabled():
            F.gelu(x).sum().backward()
    assert sorted((r[0], r[1]) for r in prof.rows()) == [("gelu", "fast"), ("gelu", "math"), ("sum", "math")]
    header, *lines = prof.table().splitlines()
    assert header.split()[:2] == ["op", "impl"]
    assert {tuple(line.split()[:2]) for line in lines[:-1]} == {("gelu", "fast"), ("gelu", "math"), ("sum", "math")}
