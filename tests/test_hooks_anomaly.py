"""Tensor hooks, retain_grad, forward hooks, and anomaly mode (detect_anomaly)."""
import contextlib
import inspect

import numpy as np
import pytest

import tinygrad_lite.fast
import tinygrad_lite.functional as F
import tinygrad_lite.observe as observe
import tinygrad_lite.nn as nn
from gpt import GPT, GPTConfig
from tinygrad_lite import AnomalyError, Tensor, detect_anomaly

pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning",
                                        "ignore:overflow encountered:RuntimeWarning",
                                        "ignore:invalid value:RuntimeWarning")


def here(offset: int = 1) -> str:
    """'this_file.py:<line of the caller + offset>': where the next statement of the caller is."""
    frame = inspect.currentframe().f_back
    return f"{__file__}:{frame.f_lineno + offset}"


# ------------------------------------------------------------------ tensor hooks
def test_hooks_fire_in_backward_order_then_registration_order_with_the_gradients():
    x = Tensor([1.0, 2.0], requires_grad=True)
    h = x * 3.0  # dh/dx = 3
    y = (h * h).sum()  # dy/dh = 2h = [6, 12]
    calls = []
    x.register_hook(lambda g: calls.append(("x", g.numpy().tolist())))
    h.register_hook(lambda g: calls.append(("h first", g.numpy().tolist())))
    h.register_hook(lambda g: calls.append(("h second", g.numpy().tolist())))
    y.backward()
    assert calls == [("h first", [6.0, 12.0]), ("h second", [6.0, 12.0]), ("x", [18.0, 36.0])]


def test_a_returning_hook_replaces_the_gradient_downstream_and_in_grad():
    x = Tensor([1.0, -2.0], requires_grad=True)
    h = x * 3.0
    h.retain_grad()
    h.register_hook(lambda g: g * 10.0)  # the replaced dL/dh flows on to x
    h.register_hook(lambda g: g.numpy() + 1.0)  # and the next hook sees the replacement
    (h * 1.0).sum().backward()  # dL/dh = 1 -> 10 -> 11
    np.testing.assert_array_equal(h.grad, [11.0, 11.0])
    np.testing.assert_array_equal(x.grad, [33.0, 33.0])
    w = Tensor([2.0], requires_grad=True)
    w.register_hook(lambda g: -g)  # on a leaf: replaces what is accumulated into .grad
    (w * 5.0).sum().backward()
    np.testing.assert_array_equal(w.grad, [-5.0])


def test_retain_grad_keeps_a_non_leaf_gradient():
    x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    h = x.tanh()
    kept = x.exp()
    kept.retain_grad()
    ((h + kept) * 2.0).sum().backward()
    assert h.grad is None  # not retained: freed like any intermediate gradient
    np.testing.assert_array_equal(kept.grad, np.full((2, 2), 2.0, np.float32))
    expected = 2.0 * (1 - np.tanh(x.data) ** 2) + 2.0 * np.exp(x.data)  # d/dx of 2 tanh x + 2 e^x
    np.testing.assert_allclose(x.grad, expected, rtol=1e-6)
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).retain_grad()


def test_removing_a_hook_stops_it():
    x = Tensor([1.0], requires_grad=True)
    calls = []
    handle = x.register_hook(lambda g: calls.append(1) or g * 2.0)
    (x * 1.0).sum().backward()
    handle.remove()
    handle.remove()  # twice is harmless
    x.grad = None
    (x * 1.0).sum().backward()
    assert calls == [1] and x.grad.tolist() == [1.0]
    with x.register_hook(lambda g: calls.append(2)):  # a handle is also a context manager
        (x * 1.0).sum().backward()
    (x * 1.0).sum().backward()
    assert calls == [1, 2]


def test_removing_one_of_two_registrations_of_the_same_function_keeps_the_other():
    x = Tensor([1.0], requires_grad=True)
    calls = []

    def hook(g):
        calls.append(1)
    first, _second = x.register_hook(hook), x.register_hook(hook)
    first.remove()
    (x * 1.0).sum().backward()
    assert calls == [1]


def test_a_hook_cannot_corrupt_the_gradient_it_is_shown():
    x = Tensor([1.0, 2.0], requires_grad=True)
    a, b = x * 1.0, x * 1.0
    s = (a + b) * 2.0  # mul's backward makes a fresh (writeable) array; add hands it to both a and b

    def bad_hook(g):
        g.data[...] = 100.0
    a.register_hook(bad_hook)
    with pytest.raises(ValueError, match="read-only"):
        s.sum().backward()


def test_a_replacement_returned_by_a_hook_is_never_written_into():
    x = Tensor([1.0, 2.0], requires_grad=True)
    mine = np.array([5.0, 5.0], np.float32)
    x.register_hook(lambda g: mine)
    (x * 2.0).sum().backward()
    (x * 2.0).sum().backward()  # accumulates into x.grad in place
    np.testing.assert_array_equal(x.grad, [10.0, 10.0])
    np.testing.assert_array_equal(mine, [5.0, 5.0])


def test_a_hook_returning_the_wrong_shape_is_a_clear_error():
    x = Tensor([1.0, 2.0], requires_grad=True)
    h = x * 2.0
    h.register_hook(lambda g: np.zeros(3))
    with pytest.raises(ValueError, match=r"returned shape \(3,\), expected .*\(2,\)"):
        h.sum().backward()


def test_hooks_on_scalars_and_a_scalar_with_three_gradient_contributions():
    x = Tensor(3.0, requires_grad=True)
    y = x * x + 2 * x  # three uses of x: 3 + 3 + 2
    seen = []
    y.register_hook(lambda g: seen.append(float(g.item())))
    y.backward()
    assert x.grad == 8.0 and seen == [1.0]


# ------------------------------------------------------------------ forward hooks
def test_forward_hooks_run_after_forward_innermost_first_and_can_be_removed():
    model = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2))
    calls = []
    handles = [m.register_forward_hook(lambda m, inputs, out, i=i: calls.append((i, out.shape)))
               for i, m in enumerate([model, model[0], model[2]])]
    model(Tensor(np.ones((5, 3))))
    assert calls == [(1, (5, 4)), (2, (5, 2)), (0, (5, 2))]
    handles[1].remove()
    calls.clear()
    model(Tensor(np.ones((5, 3))))
    assert [c[0] for c in calls] == [2, 0]


def test_a_forward_hook_sees_the_inputs_and_may_replace_the_output():
    lin = nn.Linear(2, 2)
    seen = []
    lin.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].shape) or out * 0.0)
    out = lin(Tensor(np.ones((3, 2))))
    assert seen == [(3, 2)] and not out.data.any()


# ------------------------------------------------------------------ anomaly mode
def test_anomaly_mode_names_log_and_the_line_for_log_of_zero():
    x = Tensor([1.0, 0.0], requires_grad=True)
    with detect_anomaly(), pytest.raises(AnomalyError) as err:
        where = here()
        y = x.log()  # noqa: F841  -inf in the forward already
    msg = str(err.value)
    assert "forward of op 'log'" in msg and "input shapes: (2,) float32" in msg and "Inf" in msg
    created = msg.splitlines()[1]
    assert created == (f"  created at {where} in test_anomaly_mode_names_log_and_the_line_for_log_of_zero: "
                       f"y = x.log()  # noqa: F841  -inf in the forward already")


def test_anomaly_mode_names_log_in_backward_when_the_forward_is_finite():
    x = Tensor([1e-45, 1.0], requires_grad=True)  # float32: log(1.4e-45) = -103.3, but 1/x overflows
    with detect_anomaly():
        where = here()
        y = x.log()
        assert np.isfinite(y.data).all()
        with pytest.raises(AnomalyError) as err:
            y.sum().backward()
    msg = str(err.value)
    assert "backward of op 'log'" in msg and "gradient for input 0" in msg and "Inf" in msg
    assert f"created at {where} in test_anomaly_mode_names_log_in_backward_when_the_forward_is_finite: y = x.log()" \
        in msg


def test_anomaly_mode_names_sqrt_in_backward_at_zero():
    x = Tensor([0.0, 4.0], requires_grad=True)
    with detect_anomaly():
        loss = (x.sqrt() * 2.0).sum()
        with pytest.raises(AnomalyError, match=r"(?s)Inf in the backward of op 'sqrt'.*loss = \(x\.sqrt\(\) \* 2\.0\)"):
            loss.backward()


def test_anomaly_mode_through_the_model_names_the_op_and_every_caller_up_to_the_test():
    model = GPT(GPTConfig.from_preset("tiny", n_layer=1), seed=0)
    model.transformer.h[0].ln_2.bias.data[3] = np.nan
    with detect_anomaly(), pytest.raises(AnomalyError) as err:
        where = here()
        model.loss(np.zeros((1, 4), np.int64), np.zeros((1, 4), np.int64))
    msg = str(err.value)
    assert msg.startswith("NaN in the forward of op 'layer_norm'") and "(1, 4, 128) float32, (128,) float32" in msg
    lines = msg.splitlines()
    assert "gpt/model.py" in lines[1] and "self.ln_2(x)" in lines[1]  # the first frame outside tinygrad_lite
    assert not any("tinygrad_lite" in line for line in lines[1:])
    assert any(f"called from {where} in " in line for line in lines[2:])


@pytest.mark.parametrize("engine", ["fast", "math-first"])
def test_anomaly_mode_checks_backward_gradients_in_both_engines_dense_and_sparse(engine):
    # the fast engine carries gradients as its own arrays (sparse for an embedding); math-first as Tensors
    with contextlib.nullcontext() if engine == "math-first" else tinygrad_lite.fast.enabled():
        x = Tensor([0.0, 4.0], requires_grad=True)
        with detect_anomaly():
            loss = x.sqrt().sum()
            with pytest.raises(AnomalyError, match=r"(?s)Inf in the backward of op 'sqrt'.*loss = x\.sqrt\(\)"):
                loss.backward()
        w = Tensor(np.ones((3, 2)), requires_grad=True)
        with detect_anomaly():  # id 0 twice: its row's gradient is 3e38 + 3e38, which overflows float32
            rows = F.embedding(np.array([0, 0, 1]), w)
            with pytest.raises(AnomalyError, match=r"(?s)Inf in the backward of op 'embedding'.*rows = F\.emb"):
                rows.backward(np.full((3, 2), 3e38, np.float32))


def test_anomaly_mode_with_only_backward_inside_says_no_line_was_recorded():
    x = Tensor([0.0], requires_grad=True)
    y = x.sqrt()
    assert getattr(y._ctx, "trace", None) is None  # off: nothing recorded
    with detect_anomaly(), pytest.raises(AnomalyError, match="no source line recorded"):
        y.backward(np.ones(1))


def test_anomaly_mode_checks_a_hook_s_replacement_gradient():
    x = Tensor([1.0], requires_grad=True)
    h = x * 2.0

    def nan_hook(g):
        return g.numpy() * np.nan  # NumPy: a Tensor op here would be caught in its own forward
    h.register_hook(nan_hook)
    with detect_anomaly(), pytest.raises(AnomalyError, match=r"(?s)gradient hook.*in nan_hook"):
        h.sum().backward()


def test_anomaly_mode_forward_false_allows_deliberate_infinities():
    x = Tensor(np.zeros((2, 3)), requires_grad=True)
    mask = np.triu(np.ones((2, 3), bool), 1)
    with detect_anomaly(forward=False):
        scores = x.masked_fill(mask, -np.inf)  # -inf on purpose, softmax turns it into 0
        (scores.exp() * 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad, np.where(mask, 0.0, 1.0))
    with detect_anomaly(), pytest.raises(AnomalyError, match=r"(?s)forward of op 'where'.*x\.masked_fill\(mask"):
        x.masked_fill(mask, -np.inf)  # masked_fill is built from where; the line names masked_fill


def test_anomaly_mode_nests_restores_and_is_off_by_default():
    off = observe.current
    assert not isinstance(off, detect_anomaly)
    x = Tensor([1.0], requires_grad=True)
    with detect_anomaly() as outer:
        assert observe.current is outer
        with detect_anomaly(forward=False) as inner:
            assert observe.current is inner and inner.inner is outer
            where = here()
            y = x * np.inf  # the inner block turns forward checks off, though the outer one has them on
            filename, lineno, func = y._ctx.trace[0]  # lines are still recorded
            assert f"{filename}:{lineno}" == where and func == "test_anomaly_mode_nests_restores_and_is_off_by_default"
            with pytest.raises(AnomalyError, match=r"(?s)NaN in the backward of op 'mul'.*y = x \* np\.inf"):
                (y * 0.0).sum().backward()  # backward checks stay on: d(x * inf)/dx * 0 = inf * 0
        assert observe.current is outer
        with pytest.raises(AnomalyError, match="forward of op 'mul'"):
            x * np.inf  # back in the outer block: forward checks are on again
        y = x * 2.0
        assert y._ctx.trace  # on: the creating line is recorded
    assert observe.current is off
    y = x * np.inf  # off: no check at all
    assert not hasattr(y._ctx, "trace") and np.isinf(y.data).all()
    with pytest.raises(AnomalyError):  # an error leaving the block still restores the observer before it
        with detect_anomaly():
            x.log() * np.inf
    assert observe.current is off
