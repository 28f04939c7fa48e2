"""The exercises' diagnoses: each classic mistake planted into a solution is diagnosed with its sentence, a
backward that uses the forward's saved values as constants also when recorded is named, and a correct
backward written differently passes, gradgradcheck included."""
from __future__ import annotations

import pytest
from workbooks import copy_of, plant, verdict

from tinygrad_lite.exercises import find
from tinygrad_lite.exercises.workbook import Source


MUL_2X = """
@staticmethod
def backward(ctx, g):
    (a, b), (na, nb) = ctx.saved_tensors, ctx.needs_input_grad
    return unbroadcast(2 * g * b, a.shape) if na else None, unbroadcast(g * a, b.shape) if nb else None
"""
ADD_SIGN = """
@staticmethod
def backward(ctx, g):
    (sa, sb), (na, nb) = ctx.shapes, ctx.needs_input_grad
    return unbroadcast(g, sa) if na else None, -unbroadcast(g, sb) if nb else None
"""
ADD_NO_SUM = """
@staticmethod
def backward(ctx, g):
    return g, g
"""
MATMUL_T = """
@staticmethod
def backward(ctx, g):
    a, b = ctx.saved_tensors
    return (g @ b.swapaxes(-1, -2)).swapaxes(-1, -2), a.swapaxes(-1, -2) @ g
"""
LOG_OUT = """
@staticmethod
def backward(ctx, g):
    (x,) = ctx.saved_tensors
    return g / x.log()
"""
LAYER_NORM_NO_MEAN = """
@staticmethod
def backward(ctx, g):
    x, weight, bias, xhat, rstd = ctx.saved_tensors
    if is_grad_enabled():
        xhat, rstd = normalized(x, ctx.eps)
    gx = g if weight is None else g * weight
    C = x.shape[-1]
    dw = (g * xhat).reshape(-1, C).sum(0) if weight is not None else None
    db = g.reshape(-1, C).sum(0) if bias is not None else None
    return rstd * (gx - xhat * (gx * xhat).mean(-1, keepdims=True)), dw, db, None
"""
SOFTMAX_DIAGONAL = """
@staticmethod
def backward(ctx, g):
    (y,) = ctx.saved_tensors
    return g * y * (1 - y), None
"""
TANH_NO_SQUARE = """
@staticmethod
def backward(ctx, g):
    (out,) = ctx.saved_tensors
    return g * (1 - out)
"""
EMBEDDING_BUFFERED = """
@staticmethod
def backward(ctx, g):
    out = np.zeros(ctx.shape)
    out[ctx.ids] += g.data.reshape(-1, ctx.shape[1])
    return out, None
"""
INDEX_ADD_BUFFERED = """
@staticmethod
def forward(ctx, g, index, shape: tuple):
    ctx.index = index
    out = np.zeros(shape, g.dtype)
    out[index] += g
    return out
"""
CROSS_ENTROPY_IGNORED = """
@staticmethod
def backward(ctx, g):
    logits, e, s = ctx.saved_tensors
    N, V = logits.shape
    p = softmax(logits, -1) if is_grad_enabled() else e / s
    w = g if ctx.reduction == "none" else g.reshape(1).broadcast_to((N,))
    if ctx.reduction == "mean":
        w = w * (1.0 / max(ctx.n_valid, 1))
    return p * w.reshape(N, 1) - IndexAdd.apply(w, (np.arange(N), ctx.t), (N, V)), None, None, None
"""
GELU_ONE_TERM = """
@staticmethod
def backward(ctx, g):
    x, t = ctx.saved_tensors
    if is_grad_enabled():
        xc = _clip(x, _GELU_CLIP)
        t = (_GELU_C * (xc + _GELU_A * xc * xc * xc)).tanh()
    return g * (0.5 * (1 + t)), None
"""
ATTENTION_NO_SCALE = """
@staticmethod
def backward(ctx, g):
    q, k, v, p = ctx.saved_tensors
    if is_grad_enabled():
        p = softmax(attention_scores(q, k, ctx.causal), -1)
    dp = g @ v.swapaxes(-1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    return (unbroadcast(ds @ k, q.shape), unbroadcast(ds.swapaxes(-1, -2) @ q, k.shape),
            unbroadcast(p.swapaxes(-1, -2) @ g, v.shape), None, None)
"""

MISTAKES = [  # (task, the function planted, its code, the summary, sentences the diagnosis must hold)
    ("add_mul", "Mul.backward", MUL_2X, "Mul.backward: the gradient for a is wrong",
     ["largest error", "at a[", "a constant factor: your gradient for a is 2.00x the expected"]),
    ("add_mul", "Add.backward", ADD_SIGN, "Add.backward: the gradient for b is wrong",
     ["a flipped sign: your gradient for b is -1.00x the expected"]),
    ("add_mul", "Add.backward", ADD_NO_SUM, "Add.backward: the gradient for b is wrong",
     ["your gradient for b has shape (3, 4), expected (4,), the shape of b",
      "a missing sum over broadcast axes: b (4,) was broadcast to (3, 4) in the forward, so its gradient is g "
      "summed over axes (0,)"]),
    ("matmul", "MatMul.backward", MATMUL_T, "MatMul.backward: the gradient for a is wrong",
     ["your gradient for a has shape (4, 3), expected (3, 4), the shape of a",
      "transposed: your gradient for a is the expected one with its axes swapped"]),
    ("exp_log_tanh", "Log.backward", LOG_OUT, "Log.backward: the gradient for x is wrong",
     ["the output log x used where the input x was meant"]),
    ("exp_log_tanh", "Tanh.backward", TANH_NO_SQUARE, "Tanh.backward: the gradient for x is wrong",
     ["a missing square"]),
    ("layer_norm", "LayerNorm.backward", LAYER_NORM_NO_MEAN, "LayerNorm.backward: the gradient for x is wrong",
     ["a missing term: - mean(g * w), from the mean's dependence on every x of the row"]),
    ("softmax", "Softmax.backward", SOFTMAX_DIAGONAL, "Softmax.backward: the gradient for x is wrong",
     ["only the diagonal of the Jacobian"]),
    ("embedding", "Embedding.backward", EMBEDDING_BUFFERED, "Embedding.backward: the gradient for weight is wrong",
     ["repeated ids counted once"]),
    ("getitem", "IndexAdd.forward", INDEX_ADD_BUFFERED, "IndexAdd.forward: the output is wrong",
     ["repeated indices counted once: out[index] += g adds once per distinct position"]),
    ("cross_entropy", "CrossEntropy.backward", CROSS_ENTROPY_IGNORED,
     "CrossEntropy.backward: the gradient for logits is wrong",
     ["the ignored rows (target == ignore_index) get a gradient"]),
    ("gelu", "GELU.backward", GELU_ONE_TERM, "GELU.backward: the gradient for x is wrong",
     ["a missing term of the product rule"]),
    ("attention", "Attention.backward", ATTENTION_NO_SCALE, "Attention.backward: the gradient for q is wrong",
     ["the 1/sqrt(D) scale of the scores missing from dq and dk"]),
]


@pytest.mark.parametrize("task, qualname, code, summary, sentences", MISTAKES,
                         ids=[f"{m[1]}-{m[4][-1][:24]}" for m in MISTAKES])
def test_a_planted_classic_mistake_is_diagnosed_with_its_sentence(solutions, tmp_path, task, qualname, code,
                                                                  summary, sentences):
    g = verdict(task, copy_of(solutions[0], tmp_path), qualname, code)
    assert (g.status, g.summary) == ("FAIL", summary), (g.summary, g.details)
    assert g.details[0].startswith("case: ")
    text = "\n".join(g.details)
    for sentence in sentences:
        assert sentence in text, text
    assert "largest error" in text or "has shape" in text


def test_a_wrong_number_of_gradients_is_named(solutions, tmp_path):
    g = verdict("add_mul", copy_of(solutions[0], tmp_path), "Mul.backward", """
        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b
        """)
    assert g.summary == "Mul.backward returned 1 gradient(s) for 2 arguments"
    assert "return one gradient per forward argument (a, b)" in g.details[1]


def test_a_backward_that_cuts_the_graph_fails_gradgradcheck(solutions, tmp_path):
    g = verdict("add_mul", copy_of(solutions[0], tmp_path), "Mul.backward", """
        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return Tensor(unbroadcast(g * b, a.shape).data), Tensor(unbroadcast(g * a, b.shape).data)
        """)
    assert g.status == "FAIL" and "their own derivatives are wrong (gradgradcheck" in g.summary, g.summary
    assert g.details[1].endswith("going through .data or NumPy cuts the graph"), g.details


SAVED_CONSTANTS = [  # the engine's backward without its `if is_grad_enabled():` recomputation
    ("layer_norm", "LayerNorm.backward", "xhat, rstd", """
        @staticmethod
        def backward(ctx, g):
            x, weight, bias, xhat, rstd = ctx.saved_tensors
            gx = g if weight is None else g * weight
            C = x.shape[-1]
            dx = rstd * (gx - gx.mean(-1, keepdims=True) - xhat * (gx * xhat).mean(-1, keepdims=True))
            return (dx, None if weight is None else (g * xhat).reshape(-1, C).sum(0),
                    None if bias is None else g.reshape(-1, C).sum(0), None)
        """),
    ("cross_entropy", "CrossEntropy.backward", "e, s", """
        @staticmethod
        def backward(ctx, g):
            logits, e, s = ctx.saved_tensors
            N, V = logits.shape
            w = g if ctx.reduction == "none" else g.reshape(1).broadcast_to((N,))
            if ctx.reduction == "mean":
                w = w * (1.0 / max(ctx.n_valid, 1))
            w = w * ctx.valid
            return e / s * w.reshape(N, 1) - IndexAdd.apply(w, (np.arange(N), ctx.t), (N, V)), None, None, None
        """),
    ("gelu", "GELU.backward", "t", """
        @staticmethod
        def backward(ctx, g):
            x, t = ctx.saved_tensors
            xc = _clip(x, _GELU_CLIP)
            return g * (0.5 * (1 + t)) * (1 + xc * (1 - t) * (_GELU_C + 3 * _GELU_C * _GELU_A * xc * xc)), None
        """),
    ("attention", "Attention.backward", "p", """
        @staticmethod
        def backward(ctx, g):
            q, k, v, p = ctx.saved_tensors
            scale = 1.0 / math.sqrt(q.shape[-1])
            pd = p if ctx.keep is None else p * ctx.keep
            dp = g @ v.swapaxes(-1, -2)
            dp = dp if ctx.keep is None else dp * ctx.keep
            ds = p * (dp - (dp * p).sum(-1, keepdims=True))
            return (unbroadcast(ds @ k, q.shape) * scale, unbroadcast(ds.swapaxes(-1, -2) @ q, k.shape) * scale,
                    unbroadcast(pd.swapaxes(-1, -2) @ g, v.shape), None, None)
        """),
]


@pytest.mark.parametrize("task, qualname, names, code", SAVED_CONSTANTS, ids=[m[0] for m in SAVED_CONSTANTS])
def test_the_forwards_saved_values_used_in_a_recorded_backward_are_diagnosed(solutions, tmp_path, task, qualname,
                                                                             names, code):
    """Right gradients, wrong second derivatives: the saved values are constants when the backward is recorded."""
    g = verdict(task, copy_of(solutions[0], tmp_path), qualname, code)
    assert (g.status, g.summary) == ("FAIL", f"{qualname}: your backward gives the right gradients, but their own "
                                             f"derivatives are wrong (gradgradcheck differentiates your backward's "
                                             f"Tensor ops)"), (g.summary, g.details)
    assert g.details[0].startswith("case: ")
    assert g.details[1].startswith(f"the forward's {names} used in a recorded backward: saved, "), g.details
    assert "when is_grad_enabled() is False (a plain backward); when it is True, recompute" in g.details[1]
    assert g.details[2].startswith("gradient mismatch for input ")


def test_a_backward_in_numpy_passes_without_gradgradcheck(solutions, tmp_path):
    g = verdict("add_mul", copy_of(solutions[0], tmp_path), "Mul.backward", """
        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return unbroadcast(g.data * b.data, a.shape), unbroadcast(g.data * a.data, b.shape)
        """)
    assert g.status == "PASS" and g.summary.endswith("each with gradcheck")
    assert g.details == [
        "gradgradcheck skipped for Mul: a backward in NumPy cannot be differentiated; in Tensor ops it can"]


DIFFERENT = [  # correct backward passes written otherwise than the engine's
    ("add_mul", "Mul.backward", """
        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return unbroadcast(b * g, a.shape), unbroadcast(a * g, b.shape)
        """),
    ("softmax", "Softmax.backward", """
        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return y * g - y * (y * g).sum(ctx.axis, keepdims=True), None
        """),
    ("layer_norm", "LayerNorm.backward", """
        @staticmethod
        def backward(ctx, g):
            x, w, b = ctx.saved_tensors[:3]  # recomputed from x whether or not the backward is recorded
            C = x.shape[-1]
            mu = x.sum(-1, keepdims=True) / C
            var = ((x - mu) ** 2).sum(-1, keepdims=True) / C
            rstd = 1 / (var + ctx.eps).sqrt()
            xhat = (x - mu) * rstd
            gx = g if w is None else w * g
            dx = (C * gx - gx.sum(-1, keepdims=True) - xhat * (xhat * gx).sum(-1, keepdims=True)) * rstd / C
            rows = g.reshape(-1, C)
            return (dx, None if w is None else (xhat.reshape(-1, C) * rows).sum(0),
                    None if b is None else rows.sum(0), None)
        """),
    ("cross_entropy", "CrossEntropy.backward", """
        @staticmethod
        def backward(ctx, g):
            logits = ctx.saved_tensors[0]  # the softmax recomputed from the logits, recorded or not
            N, V = logits.shape
            w = (g if ctx.reduction == "none" else g * np.ones(N)) * ctx.valid
            if ctx.reduction == "mean":
                w = w / max(ctx.n_valid, 1)
            onehot = Tensor(np.eye(V)[ctx.t], dtype=logits.dtype)
            return (softmax(logits, -1) - onehot) * w.reshape(N, 1), None, None, None
        """),
    ("gelu", "GELU.backward", """
        @staticmethod
        def backward(ctx, g):
            x, t = ctx.saved_tensors
            x = _clip(x, _GELU_CLIP)
            if is_grad_enabled():
                t = (_GELU_C * (x + _GELU_A * x ** 3)).tanh()
            dt = (1 - t * t) * _GELU_C * (1 + 3 * _GELU_A * x * x)  # the chain rule, then the product rule
            return g * (0.5 * (1 + t) + 0.5 * x * dt), None
        """),
    ("attention", "Attention.backward", """
        @staticmethod
        def backward(ctx, g):
            q, k, v = ctx.saved_tensors[:3]  # p recomputed from q and k, recorded or not
            (tq, D), tk = q.shape[-2:], k.shape[-2]
            s = q @ k.swapaxes(-1, -2) / math.sqrt(D)
            if ctx.causal:  # query i sits at position i + tk - tq and sees the keys up to there
                s = s + Tensor(np.triu(np.full((tq, tk), -np.inf), tk - tq + 1), dtype=s.dtype)
            p = softmax(s, -1)
            pd = p if ctx.keep is None else p * ctx.keep
            dp = g @ v.swapaxes(-1, -2)
            dp = dp if ctx.keep is None else dp * ctx.keep
            ds = (dp - (dp * p).sum(-1, keepdims=True)) * p / math.sqrt(D)
            return (unbroadcast(ds @ k, q.shape), unbroadcast(ds.swapaxes(-1, -2) @ q, k.shape),
                    unbroadcast(pd.swapaxes(-1, -2) @ g, v.shape), None, None)
        """),
    ("sum_mean", "Sum.backward", """
        @staticmethod
        def backward(ctx, g):
            return Tensor.zeros(*ctx.shape, dtype=g.dtype) + g.reshape(ctx.kept), None, None
        """),
]


@pytest.mark.parametrize("task, qualname, code", DIFFERENT, ids=[d[1] for d in DIFFERENT])
def test_a_correct_backward_written_differently_passes(solutions, tmp_path, task, qualname, code):
    g = verdict(task, copy_of(solutions[0], tmp_path), qualname, code)
    assert g.status == "PASS", (g.summary, g.details)
    assert "gradgradcheck" in g.summary


def test_the_saved_values_are_named_as_the_learners_forward_saves_them(solutions, tmp_path):
    folder = copy_of(solutions[0], tmp_path)
    path = folder / find("attention").filename
    plant(path, "Attention.forward", """
        @staticmethod
        def forward(ctx, q, k, v, causal, keep):
            e, _, z = shifted_exp(attention_scores(q, k, causal), -1)
            probs = e / z
            ctx.causal, ctx.keep = causal, keep
            ctx.save_for_backward(q, k, v, probs)
            return np.matmul(probs if keep is None else probs * keep, v)
        """)
    g = verdict("attention", folder, "Attention.backward", SAVED_CONSTANTS[-1][-1])
    assert g.details[1].startswith("the forward's probs used in a recorded backward: saved, it is a constant"), \
        g.details
    source = Source.read(path)
    assert source.saved_names("Attention", 4) == ["q", "k", "v", "probs"]
    assert source.saved_names("Attention", 3) == [f"ctx.saved_tensors[{i}]" for i in range(3)]  # no call saves 3
