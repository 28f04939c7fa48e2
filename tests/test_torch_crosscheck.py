"""Every registered op against PyTorch, in float64: the forward, the gradient, and the gradient of the
gradient (autograd.grad with create_graph=True, random cotangents), to rtol 1e-9. One row per op of
the registry, checked against it. Skipped cleanly without torch; CI installs it (the crosscheck extra).
"""
from __future__ import annotations

import contextlib

import math

import numpy as np
import pytest

import tinygrad_lite.functional as F
from tinygrad_lite import Tensor, autograd, fast
from tinygrad_lite.function import OPS as REG

from crosscheck import need

pytestmark = pytest.mark.crosscheck
torch = need("torch")
TF = torch.nn.functional

IDX = np.array([2, 0, 2, 1])
TGT = np.array([1, 0, 3, 2, 2, 1])
MASK = np.array([[True, False, True, True], [False, True, True, False], [True, True, False, True]])
KEEP = (np.random.default_rng(5).random((2, 3, 4)) > 0.3) / 0.7


def _t_sdpa(q, k, v, causal=True, keep=None):
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        tq, tk = s.shape[-2:]
        bias = torch.triu(torch.full((tq, tk), -math.inf, dtype=s.dtype), diagonal=tk - tq + 1)
        s = s + bias
    p = torch.softmax(s, -1)
    return (p if keep is None else p * torch.tensor(keep)) @ v


def _t_index_add(g):
    out = torch.zeros((3, 4), dtype=g.dtype)
    return out.index_put((torch.tensor(IDX),), g, accumulate=True)


def _ce(x, ignore=None, reduction="mean"):
    kw = {} if ignore is None else {"ignore_index": ignore}
    return x, kw, reduction


# name -> list of (ours(*Tensors), torch's(*tensors), input shapes, domain: "any" | "pos")
ROWS = {
    "add": [(lambda a, b: a + b, lambda a, b: a + b, [(3, 4), (4,)], "any")],
    "sub": [(lambda a, b: a - b, lambda a, b: a - b, [(2, 1, 4), (3, 1)], "any")],
    "mul": [(lambda a, b: a * b, lambda a, b: a * b, [(3, 4), (3, 1)], "any")],
    "div": [(lambda a, b: a / b, lambda a, b: a / b, [(3, 4), (4,)], "pos")],
    "pow": [(lambda a, b: a ** b, lambda a, b: a ** b, [(3, 4), (3, 4)], "pos"),
            (lambda a: a ** 3, lambda a: a ** 3, [(5,)], "any")],
    "neg": [(lambda a: -a, lambda a: -a, [(3, 2)], "any")],
    "matmul": [(lambda a, b: a @ b, lambda a, b: a @ b, [(2, 3, 4), (4, 5)], "any"),
               (lambda a, b: a @ b, lambda a, b: a @ b, [(4,), (2, 4, 3)], "any")],
    "exp": [(lambda x: x.exp(), torch.exp, [(3, 4)], "any")],
    "log": [(lambda x: x.log(), torch.log, [(3, 4)], "pos")],
    "tanh": [(lambda x: x.tanh(), torch.tanh, [(3, 4)], "any")],
    "sqrt": [(lambda x: x.sqrt(), torch.sqrt, [(3, 4)], "pos")],
    "relu": [(lambda x: x.relu() * x, lambda x: torch.relu(x) * x, [(3, 4)], "any")],
    "sigmoid": [(lambda x: x.sigmoid(), torch.sigmoid, [(3, 4)], "any")],
    "abs": [(lambda x: x.abs() * x, lambda x: x.abs() * x, [(3, 4)], "any")],
    "cast": [(lambda x: REG["cast"].apply(x, np.dtype(np.float64)) ** 2, lambda x: x.to(torch.float64) ** 2,
              [(3,)], "any")],
    "sum": [(lambda x: (x.sum(axis=(0, 2), keepdims=True) ** 2), lambda x: x.sum((0, 2), keepdim=True) ** 2,
             [(2, 3, 4)], "any")],
    "max": [(lambda x: x.max(axis=1) ** 2, lambda x: x.amax(1) ** 2, [(3, 5)], "distinct")],
    "broadcast_to": [(lambda x: x.broadcast_to((2, 3, 4)) ** 2, lambda x: torch.broadcast_to(x, (2, 3, 4)) ** 2,
                      [(3, 1)], "any")],
    "reshape": [(lambda x: x.reshape(4, 3) ** 2, lambda x: x.reshape(4, 3) ** 2, [(3, 4)], "any")],
    "transpose": [(lambda x: x.transpose(2, 0, 1) ** 2, lambda x: x.permute(2, 0, 1) ** 2, [(2, 3, 4)], "any")],
    "getitem": [(lambda x: x[1:, ::-1] ** 2, lambda x: x[1:].flip(1) ** 2, [(3, 4)], "any"),
                (lambda x: x[IDX] ** 2, lambda x: x[torch.tensor(IDX)] ** 2, [(3, 2)], "any")],
    "index_add": [(lambda g: REG["index_add"].apply(g, IDX, (3, 4)) ** 2, lambda g: _t_index_add(g) ** 2,
                   [(4, 4)], "any")],
    "cat": [(lambda a, b: Tensor.cat([a, b], 1) ** 2, lambda a, b: torch.cat([a, b], 1) ** 2, [(2, 3), (2, 2)], "any")],
    "where": [(lambda a, b: Tensor.where(MASK, a, b) ** 2, lambda a, b: torch.where(torch.tensor(MASK), a, b) ** 2,
               [(3, 4), (4,)], "any")],
    "softmax": [(lambda x: F.softmax(x, -1), lambda x: torch.softmax(x, -1), [(3, 5)], "any"),
                (lambda x: F.softmax(x, 0), lambda x: torch.softmax(x, 0), [(4, 2)], "any")],
    "log_softmax": [(lambda x: F.log_softmax(x, -1), lambda x: torch.log_softmax(x, -1), [(3, 5)], "any")],
    "cross_entropy": [
        (lambda x: F.cross_entropy(x, TGT), lambda x: TF.cross_entropy(x, torch.tensor(TGT)), [(6, 4)], "any"),
        (lambda x: F.cross_entropy(x, TGT, reduction="sum"),
         lambda x: TF.cross_entropy(x, torch.tensor(TGT), reduction="sum"), [(6, 4)], "any"),
        (lambda x: F.cross_entropy(x, TGT, ignore_index=2, reduction="none"),
         lambda x: TF.cross_entropy(x, torch.tensor(TGT), ignore_index=2, reduction="none"), [(6, 4)], "any"),
        (lambda x: F.cross_entropy(x, TGT, ignore_index=1),
         lambda x: TF.cross_entropy(x, torch.tensor(TGT), ignore_index=1), [(6, 4)], "any")],
    "normal_cdf": [(lambda x: REG["normal_cdf"].apply(x), torch.special.ndtr, [(3, 4)], "any")],
    "gelu": [(lambda x: F.gelu(x), lambda x: TF.gelu(x, approximate="tanh"), [(3, 4)], "any"),
             (lambda x: F.gelu(x, "none"), lambda x: TF.gelu(x), [(3, 4)], "any")],
    "layer_norm": [(lambda x, w, b: F.layer_norm(x, w, b), lambda x, w, b: TF.layer_norm(x, (5,), w, b),
                    [(2, 3, 5), (5,), (5,)], "any"),
                   (lambda x: F.layer_norm(x, None, None, 1e-3), lambda x: TF.layer_norm(x, (4,), eps=1e-3),
                    [(3, 4)], "any")],
    "embedding": [(lambda w: F.embedding(IDX, w) ** 2, lambda w: TF.embedding(torch.tensor(IDX), w) ** 2,
                   [(3, 5)], "any")],
    "linear": [(lambda x, w, b: F.linear(x, w, b) ** 2, lambda x, w, b: (x @ w + b) ** 2,
                [(2, 3, 4), (4, 5), (5,)], "any")],
    "dropout": [(lambda x: F.dropout(x, 0.3, True, rng=np.random.default_rng(5)) ** 2,
                 lambda x: (x * torch.tensor((np.random.default_rng(5).random((2, 3, 4), dtype=np.float64) >= 0.3)
                                             / 0.7)) ** 2, [(2, 3, 4)], "any")],
    "scaled_dot_product_attention": [
        (lambda q, k, v: F.scaled_dot_product_attention(q, k, v), _t_sdpa, [(2, 3, 4), (2, 3, 4), (2, 3, 2)], "any"),
        (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, causal=False),
         lambda q, k, v: _t_sdpa(q, k, v, False), [(2, 1, 3, 4), (1, 2, 5, 4), (2, 2, 5, 2)], "any"),
        (lambda q, k, v: F.scaled_dot_product_attention(q, k, v), _t_sdpa, [(2, 2, 4), (2, 5, 4), (2, 5, 3)], "any")],
}
PARAMS = [(name, i) for name, rows in ROWS.items() for i in range(len(rows))]


def test_every_registered_op_has_a_torch_row():
    assert set(ROWS) == set(REG), f"missing: {sorted(set(REG) - set(ROWS))}, extra: {sorted(set(ROWS) - set(REG))}"


def _inputs(shapes, domain, rng):
    if domain == "pos":
        return [rng.uniform(0.5, 2.0, s) for s in shapes]
    if domain == "distinct":
        return [(rng.permutation(int(np.prod(s))) * 0.25 - 1).reshape(s) for s in shapes]
    return [rng.standard_normal(s) for s in shapes]


@pytest.mark.parametrize("mode", ["fast", "math-first"])
@pytest.mark.parametrize("name,i", PARAMS, ids=[f"{n}-{i}" for n, i in PARAMS])
def test_first_and_second_derivatives_equal_pytorchs(name, i, mode):
    ours, theirs, shapes, domain = ROWS[name][i]
    rng = np.random.default_rng(i + 17)
    arrays = _inputs(shapes, domain, rng)
    xs = [Tensor(a, requires_grad=True, dtype=np.float64) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    with (contextlib.nullcontext() if mode == "math-first" else fast.enabled()):
        y = ours(*xs)
        yt = theirs(*ts)
        np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
        r1 = rng.standard_normal(y.shape)  # random cotangents, not ones
        g = autograd.grad(y, xs, Tensor(r1, dtype=np.float64), create_graph=True)
        gt = torch.autograd.grad(yt, ts, torch.tensor(r1), create_graph=True)
        for a, b in zip(g, gt):
            np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=1e-9, atol=1e-12)
        r2 = [rng.standard_normal(x.shape) for x in xs]
        s = sum(((a * r).sum() for a, r in zip(g, r2)), Tensor(0.0, dtype=np.float64))
        st = sum((a * torch.tensor(r)).sum() for a, r in zip(gt, r2))
        live = [k for k, a in enumerate(g) if a.requires_grad]
        assert (st.requires_grad and live) or not st.requires_grad, "PyTorch has a second derivative where we have none"
        if not live:
            return  # the gradient is constant in the inputs: zero second derivative on both sides
        h = autograd.grad(s, xs, allow_unused=True)
        ht = torch.autograd.grad(st, ts, allow_unused=True)
        for a, b, x in zip(h, ht, xs):
            want = np.zeros(x.shape) if b is None else b.numpy()
            got = np.zeros(x.shape) if a is None else a.data
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)
