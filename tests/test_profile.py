"""tinygrad_lite.profile: counts every forward op and backward node, and restores what it patched."""
import numpy as np
import pytest

import tinygrad_lite
import tinygrad_lite.functional as F
import tinygrad_lite.optim as optim
from tinygrad_lite import Tensor


def test_profile_counts_forward_backward_and_optimizer(capsys):
    w = Tensor(np.ones((3, 4)), requires_grad=True)
    x = Tensor(np.ones((2, 3)))
    opt = optim.SGD([w], lr=0.1)
    add_before, linear_before = Tensor.__add__, F.linear
    with tinygrad_lite.profile() as prof:
        y = F.gelu(F.linear(x, w)) + 1.0
        y.sum().backward()
        opt.step()
    rows = {r[0]: r for r in prof.rows()}
    assert rows["linear"][1] == 1 and rows["linear"][3] == 1
    assert rows["gelu"][1:4:2] == (1, 1)
    assert rows["add"][1] == 1 and rows["sum"][3] == 1
    assert rows["optimizer.step"][1] == 1
    assert all(r[2] >= 0 and r[4] >= 0 for r in rows.values())
    assert "linear" in capsys.readouterr().out
    assert Tensor.__add__ is add_before and F.linear is linear_before  # un-patched on exit


def test_nested_ops_counted_once_and_no_double_activation():
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    with tinygrad_lite.profile(quiet=True) as prof:
        parts = x.split(1, axis=0)  # split is built from getitem: one split, no getitem rows
        with pytest.raises(RuntimeError, match="already active"):
            tinygrad_lite.profile().__enter__()
    names = [r[0] for r in prof.rows()]
    assert names == ["split"] and prof.rows()[0][1] == 1
    assert len(parts) == 2
