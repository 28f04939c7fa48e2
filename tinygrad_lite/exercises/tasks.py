"""The curriculum: the tasks in order, each with the engine ops the learner writes, in words.

A task is one workbook file. It holds a `Function` subclass per op, named as the engine's op class
(`MatMul`, `LayerNorm`, ...), whose forward is the engine's own (or, for a harder op, is to write
too) and whose backward is a stub; above each stub, the derivative to work out in words and a hint.
The grader runs the op table's cases (`tinygrad_lite.tools.opcases`) of each op: every row whose
registered op it is, plus `extra_rows` (mean is sum times 1/n, so the sum task is graded on both).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import functional as F
from .. import shapes
from .. import tensor as T
from .mistakes import (ADD, ATTENTION, CROSS_ENTROPY, EMBEDDING, EXP, GELU, GETITEM, INDEX_ADD, LAYER_NORM, LINEAR,  # the
                       LOG, LOG_SOFTMAX, MATMUL, MUL, SOFTMAX, TANH, TRANSPOSE)  # classic mistakes each op's grader knows


@dataclass(frozen=True)
class Text:
    """What the learner writes in one method: what it computes (the derivative, in words) and a hint."""
    words: str
    hint: str


@dataclass(frozen=True)
class Op:
    """One engine op of a task: the learner's class gets its name and its forward's signature."""
    cls: type  # the engine's Function
    backward: Text
    forward: Text | None = None  # None: the engine's forward is given; else the learner writes it too
    extra_rows: tuple = ()  # op-table rows beyond the op's own
    only: dict = field(default_factory=dict)  # grade only the cases whose keyword arguments match these
    mistakes: tuple = ()  # the classic mistakes recognised by their gradients (mistakes.py)

    @property
    def name(self) -> str:
        return self.cls.__name__


@dataclass(frozen=True)
class Helper:
    """A plain function the task's ops use, written by the learner (task 1's unbroadcast)."""
    fn: object  # the engine's function: its source is the solution
    text: Text


@dataclass(frozen=True)
class Task:
    number: int
    name: str
    title: str
    teaches: str
    ops: tuple = ()
    helpers: tuple = ()

    @property
    def parts(self) -> list[str]:
        """What the learner writes in the task's file: its helpers and its ops, by name."""
        return [h.fn.__name__ for h in self.helpers] + [op.name for op in self.ops]

    @property
    def filename(self) -> str:
        return f"{self.number:02d}_{self.name}.py"


TASKS: list[Task] = [
    Task(1, "add_mul", "add and mul, broadcasting",
         "the chain rule at one node, and the sum over broadcast axes: an input stretched to the output's shape "
         "gets the sum of the gradients of all its copies", helpers=(
             Helper(shapes.unbroadcast, Text(
                 "NumPy broadcasting stretches an input to the output's shape: it prepends axes, and repeats the "
                 "axes where the input has size 1. Each input element is used once for every copy, so its gradient "
                 "is the sum of g over the copies: sum g over the prepended leading axes and over every axis where "
                 "`shape` has size 1 but g does not, then reshape to `shape`.",
                 "g.ndim - len(shape) axes were prepended. g.sum(axes, keepdims=True) keeps the summed axes as size "
                 "1, so that .reshape(shape) drops only the prepended ones. When g already has the shape, return g.")),),
         ops=(
             Op(T.Add, Text(
                 "out = a + b, so d out/da = 1 and d out/db = 1: each input's gradient is g itself, summed back to "
                 "that input's shape (a or b may have been broadcast).",
                 "The forward kept ctx.shapes = (a.shape, b.shape). Return (grad_a, grad_b), None for an input that "
                 "needs no gradient (ctx.needs_input_grad[i] is False). unbroadcast is yours, above."),
                mistakes=ADD),
             Op(T.Mul, Text(
                 "out = a * b, so d out/da = b and d out/db = a: dL/da = g * b and dL/db = g * a, each summed back "
                 "to its input's shape.",
                 "a, b = ctx.saved_tensors gives the inputs as Tensors. Write the products in Tensor ops (g * b), so "
                 "that your backward can itself be differentiated (create_graph=True)."),
                mistakes=MUL))),
    Task(2, "matmul", "matmul, batched",
         "dA = g B^T and dB = A^T g, transposing only the last two axes, the batch axes summed where they broadcast",
         ops=(Op(T.MatMul, Text(
             "C = A @ B with A (..., n, k) and B (..., k, m), g = dL/dC (..., n, m): dL/dA = g @ B^T (..., n, k) and "
             "dL/dB = A^T @ g (..., k, m), where ^T swaps the last two axes. The leading batch axes broadcast as in an "
             "elementwise op, so sum each gradient back to its input's shape. A 1-D a is a row (1, k) and a 1-D b a "
             "column (k, 1), as NumPy treats them: make them 2-D first and reshape the gradients back.",
             "a, b = ctx.saved_tensors. x.swapaxes(-1, -2) transposes the last two axes; unbroadcast(grad, shape) "
             "(task 1's, imported here) sums the batch axes. Each gradient has its input's shape: check them first."),
             mistakes=MATMUL),)),
    Task(3, "linear", "linear, x W + b",
         "a fused op: one node for x W + b, the weight's gradient summed over every leading position, the bias's "
         "over every row",
         ops=(Op(F.Linear, Text(
             "y = x @ W + b with x (..., in), W (in, out), b (out,) or None: dL/dx = g @ W^T; dL/dW sums x^T g over "
             "every leading position, i.e. x.reshape(-1, in).T @ g.reshape(-1, out); dL/db = g summed over every "
             "leading axis.",
             "x, weight = ctx.saved_tensors. Return (dx, dweight, dbias), None where ctx.needs_input_grad is False "
             "(bias is None when the layer has none)."),
             mistakes=LINEAR),)),
    Task(4, "sum_mean", "sum and mean",
         "a reduction's gradient spreads back over the reduced axes; mean = sum * (1/n) comes for free",
         ops=(Op(T.Sum, Text(
             "out = x.sum(axes): every element of x is added once into one element of out, so its gradient is g at "
             "that element: g spread (broadcast) back over the summed axes. x.mean() is x.sum() * (1/n), so it is "
             "graded here too.",
             "The forward kept ctx.shape (x's shape) and ctx.kept (out's shape with the summed axes kept as size 1). "
             "With keepdims=False the summed axes are gone from g: g.reshape(ctx.kept).broadcast_to(ctx.shape). "
             "Return (dx, None, None): axes and keepdims get no gradient."),
             extra_rows=("mean",)),)),
    Task(5, "exp_log_tanh", "exp, log, tanh",
         "elementwise derivatives, and which of the input or the output the forward should save",
         ops=(
             Op(T.Exp, Text("d e^x/dx = e^x, the output itself: dL/dx = g * e^x.",
                            "The forward saved its output: (out,) = ctx.saved_tensors. Reuse it, don't recompute exp."),
                mistakes=EXP),
             Op(T.Log, Text("d log x/dx = 1/x: dL/dx = g / x.", "The forward saved its input: (x,) = ctx.saved_tensors."),
                mistakes=LOG),
             Op(T.Tanh, Text("d tanh x/dx = 1 - tanh(x)^2, which the output gives: dL/dx = g * (1 - out^2).",
                             "The forward saved its output out = tanh(x), not x: (out,) = ctx.saved_tensors."),
                mistakes=TANH))),
    Task(6, "reshape_transpose", "reshape and transpose",
         "movement ops move numbers without changing them: the gradient moves back",
         ops=(
             Op(T.Reshape, Text("Reshaping keeps every number and changes only the shape: dL/dx is g in x's shape.",
                                "The forward kept x's shape in ctx.shape. Return (dx, None): the shape gets no gradient.")),
             Op(T.Transpose, Text(
                 "out = x.transpose(axes) puts axis axes[i] of x at position i of out. dL/dx is g with every axis put "
                 "back where it came from: g transposed by the inverse permutation.",
                 "The forward kept that inverse in ctx.inverse = np.argsort(axes): work out why it is the inverse. "
                 "Return (dx, None)."),
                mistakes=TRANSPOSE))),
    Task(7, "getitem", "getitem, a scatter",
         "indexing picks elements (ints, slices, None, Ellipsis, integer arrays); its gradient scatters them back, "
         "and a repeated index adds up",
         ops=(
             Op(T.IndexAdd, forward=Text(
                 "out = zeros(shape) with g added at [index]: the scatter-add that takes the gradient of x[index] back "
                 "to x's shape. A position that appears k times in index gets k contributions.",
                 "out[index] += g adds once per distinct position: NumPy buffers the update. np.add.at(out, index, g) "
                 "adds every time. Keep what your backward needs on ctx (ctx.index = index)."),
                backward=Text(
                 "out is g scattered into zeros, linear in g: its gradient gathers back, dL/dg = gg[index].",
                 "Return (dg, None, None): index and shape get no gradient."),
                mistakes=INDEX_ADD),
             Op(T.GetItem, Text(
                 "out = x[index] picks elements of x. Each picked element's gradient goes back where it came from, and "
                 "an element picked twice gets both: dL/dx = zeros(x.shape) with g added at [index], which is your "
                 "IndexAdd above.",
                 "The forward kept ctx.shape and ctx.index. IndexAdd.apply(g, ctx.index, ctx.shape) keeps your backward "
                 "in Tensor ops (and differentiable: IndexAdd's own backward is a getitem). Return (dx, None)."),
                mistakes=GETITEM))),
    Task(8, "softmax", "softmax",
         "a vector-Jacobian product without the Jacobian: every output depends on every input of its slice",
         ops=(Op(F.Softmax, Text(
             "y = softmax(x) along an axis: dy_i/dx_j = y_i (delta_ij - y_j). The full Jacobian is never needed: "
             "dL/dx_j = sum_i g_i y_i (delta_ij - y_j) = y_j (g_j - sum_i g_i y_i), i.e. dL/dx = y * (g - sum(g * y)) "
             "with the sum along the softmax axis.",
             "(y,) = ctx.saved_tensors is the output; ctx.axis its axis. t.sum(axis, keepdims=True) keeps the axis "
             "for broadcasting. Return (dx, None)."),
             mistakes=SOFTMAX),)),
    Task(9, "cross_entropy", "log_softmax and cross_entropy",
         "the famous softmax - onehot, and what a mean over the counted rows does to it",
         ops=(
             Op(F.LogSoftmax, Text(
                 "y = x - logsumexp(x) along an axis: dy_i/dx_j = delta_ij - softmax_j, so dL/dx = g - softmax(x) * "
                 "sum(g), the sum along the axis, and softmax(x) = exp(y).",
                 "(y,) = ctx.saved_tensors is the output (log-probabilities); ctx.axis its axis. Return (dx, None)."),
                mistakes=LOG_SOFTMAX),
             Op(F.CrossEntropy, Text(
                 "loss_i = logsumexp(logits_i) - logits_i[t_i], so d loss_i/d logits_ij = softmax_ij - [j == t_i]. "
                 "Reduction 'sum' adds the row losses, 'mean' divides that sum by n_valid, the number of rows that "
                 "count, and 'none' keeps one loss per row (g then has one entry per row). A row whose target is "
                 "ignored gets no gradient.",
                 "logits, e, s = ctx.saved_tensors: the logits (N, V), and the forward's e = exp(logits - max) (N, V) "
                 "and s = sum(e) (N, 1), so softmax = e / s. ctx.t (N,) the targets, ctx.valid (N,) which rows count, "
                 "ctx.reduction, ctx.n_valid. Make a weight per row, w (N,) (g broadcast, / n_valid for 'mean', times "
                 "valid), then softmax * w[:, None] minus w_i at (i, t_i): IndexAdd.apply(w, (np.arange(N), ctx.t), "
                 "(N, V)) puts them there in Tensor ops. Saved, e and s are constants: right for a plain backward, but "
                 "when is_grad_enabled() is True your backward is being recorded for second derivatives "
                 "(create_graph), and the softmax must depend on the logits: recompute it, softmax(logits, -1), so "
                 "that it is differentiated too (gradgradcheck checks this). Return (dlogits, None, None, None)."),
                mistakes=CROSS_ENTROPY))),
    Task(10, "layer_norm", "layer norm",
         "a normalisation couples a whole row: the mean and the variance depend on every element, which gives two "
         "terms that are easy to forget",
         ops=(Op(F.LayerNorm, Text(
             "y = xhat * w + b over the last axis (C features), xhat = (x - mean) * rstd, rstd = 1/sqrt(var + eps). "
             "dL/db = g summed over all positions; dL/dw = g * xhat summed over all positions; and with gx = g * w, "
             "dL/dx = rstd * (gx - mean(gx) - xhat * mean(gx * xhat)), the means over the last axis: the first comes "
             "from the mean's dependence on x, the second from the variance's.",
             "x, weight, bias, xhat, rstd = ctx.saved_tensors (weight and bias may be None): the inputs, and the "
             "forward's xhat (..., C) and rstd (..., 1). Saved, xhat and rstd are constants: right for a plain "
             "backward, but when is_grad_enabled() is True your backward is being recorded for second derivatives "
             "(create_graph), and they must be functions of x: recompute them, normalized(x, ctx.eps) (written "
             "for arrays and Tensors), so that they are differentiated too (gradgradcheck checks this). Return "
             "(dx, dweight, dbias, None)."),
             mistakes=LAYER_NORM),)),
    Task(11, "gelu", "GELU, tanh form",
         "the product rule and the chain rule in one activation (GPT-2's gelu_new)",
         ops=(Op(F.GELU, Text(
             "y = 0.5 x (1 + t) with t = tanh(c (x + a x^3)), c = sqrt(2/pi), a = 0.044715. By the product and chain "
             "rules dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2), and dL/dx = g * dy/dx.",
             "x, t = ctx.saved_tensors: the input, and the forward's t, from x clipped to +-_GELU_CLIP before "
             "cubing it (t is +-1 there anyway); _clip(x, _GELU_CLIP) clips in Tensor ops. Saved, t is a constant: "
             "right for a plain backward, but when is_grad_enabled() is True your backward is being recorded for "
             "second derivatives (create_graph), and t must be a function of x: recompute it from the clipped x in "
             "Tensor ops (.tanh()), so that it is differentiated too (gradgradcheck checks this). ctx.approximate "
             "is 'tanh' (graded here) or 'none' (the exact erf form, which saves x alone; not graded). Return "
             "(dx, None)."),
             only={"approximate": "tanh"}, mistakes=GELU),)),
    Task(12, "embedding", "embedding, repeated ids",
         "a lookup's gradient is a scatter-add into the table: an id used twice gets both rows",
         ops=(Op(F.Embedding, Text(
             "out = weight[ids] copies row ids[p] of weight (V, C) to position p. dL/dweight[v] is the sum of g over "
             "every position holding id v (zero for ids not used): an id used twice gets both rows.",
             "The forward kept ctx.ids (flattened) and ctx.shape = (V, C). g has shape (..., C): g.reshape(-1, C). "
             "IndexAdd.apply(rows, ids, shape) scatter-adds in Tensor ops (np.add.at in NumPy). Return (dweight, None)."),
             mistakes=EMBEDDING),)),
    Task(13, "attention", "scaled dot-product attention",
         "backward through a composition (two products and a softmax) in one node, with the causal mask",
         ops=(Op(F.Attention, forward=Text(
             "out = softmax(q k^T / sqrt(D) + mask) v, the softmax over the keys (last axis): q (..., Tq, D), k (..., "
             "Tk, D), v (..., Tk, Dv) -> (..., Tq, Dv); the leading axes broadcast. With causal=True query i may not "
             "see keys j > i + Tk - Tq: their scores are -inf. keep is a dropout mask for the probabilities, or "
             "None: multiply p by it when given.",
             "attention_scores(q, k, causal) gives the scores s, masked (for arrays, and for Tensors in your "
             "backward); shifted_exp(s, -1) returns (e, max, sum) for a stable softmax, p = e / sum; np.matmul for "
             "the product. Save what your backward needs: ctx.save_for_backward(q, k, v, p), ctx.causal, "
             "ctx.keep."),
             backward=Text(
             "With s = q k^T / sqrt(D) (+ mask), p = softmax(s), out = p v: dL/dv = p^T g; dL/dp = g v^T; through the "
             "softmax (task 8) ds = p * (dp - sum(dp * p)) along the keys; dL/dq = ds k / sqrt(D) and dL/dk = ds^T q "
             "/ sqrt(D). Leading axes broadcast: sum each gradient back to its input's shape.",
             "q, k, v, p = ctx.saved_tensors, as your forward saved them: p (before the dropout mask) is a constant. "
             "Right for a plain backward, but when is_grad_enabled() is True your backward is being recorded for "
             "second derivatives (create_graph), and p must be a function of q and k: recompute it, "
             "softmax(attention_scores(q, k, ctx.causal), -1), so that it is differentiated too (gradgradcheck "
             "checks this). Return (dq, dk, dv, None, None)."),
             mistakes=ATTENTION),)),
    Task(14, "gpt", "a GPT trained on your ops",
         "every op of a small GPT's training step is yours: 50 iterations on Tiny Shakespeare, in float64, give "
         "the engine's losses"),
]

GPT_TASK = TASKS[-1]


def find(name: str) -> Task:
    """A task by its name ("matmul") or number ("2", "02"); KeyError naming the tasks otherwise."""
    for task in TASKS:
        if name in (task.name, str(task.number), f"{task.number:02d}"):
            return task
    raise KeyError(f"no task {name!r}; the tasks are: {', '.join(t.name for t in TASKS)} (or their numbers)")
