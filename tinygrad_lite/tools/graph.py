"""Pictures of the autograd graph: Graphviz DOT text of the ops and leaves that produced a tensor.

    from tinygrad_lite.graph import render, to_dot
    loss = model.loss(idx, targets)
    loss.backward(retain_graph=True)              # keep the graph to draw it after backward
    render(loss, "loss.svg", model=model)         # SVG/PNG with Graphviz's `dot`, else loss.dot
    print(to_dot(loss, model=model))              # the DOT text itself

One node per op (box: op name, shape, dtype) and per leaf (ellipse: parameter name, shape, dtype;
dashed for constants). After backward a node also shows the norm of its gradient: leaves always,
ops when their gradient was kept (`retain_grads(tensor)` before backward). Edges point from inputs
to the op that consumed them, so data flows down the picture.

Parameters are named by their module path when `model` (a Module) or `names` is given, else by
`tensor.name`. With more than `max_nodes` nodes the repeated blocks of the model (children of a
ModuleList such as `transformer.h`) are collapsed into one box per run of blocks, keeping the first
one expanded; if that is not enough, only the nodes closest to the output are drawn.
"""
from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..backprop import inputs_of, toposort
from ..tensor import Tensor

__all__ = ["to_dot", "render", "retain_grads"]

_LEAF = 'shape=ellipse, style=filled, fillcolor="#d6e9f8"'
_CONST = 'shape=ellipse, style=dashed, color="#777777", fontcolor="#555555"'
_OP = 'shape=box, style="rounded,filled", fillcolor="#f3f3f3"'
_ROOT = 'shape=box, style="rounded,filled,bold", fillcolor="#fde9c9"'
_GROUP = 'shape=box3d, style=filled, fillcolor="#e6f2e0"'


# ------------------------------------------------------------------ walking the graph
def _is_op(t: Tensor) -> bool:
    """Was t made by an op whose graph is still there (not a leaf, not freed by backward)?"""
    return t._ctx is not None and t._ctx.inputs is not None


def _is_freed(t: Tensor) -> bool:
    """Was t made by an op whose inputs the backward pass already released?"""
    return t._ctx is not None and t._ctx.inputs is None


def retain_grads(t: Tensor) -> None:
    """Make every op in t's graph keep its gradient in `.grad` after backward (for the gradient norms)."""
    for node in toposort([t], only_grad=False):
        if _is_op(node):
            node.retain_grad()


def _param_names(model=None, names=None) -> dict[int, list[str]]:
    """id(tensor) -> its names: every dotted path of a Module's Parameters (a tied one has several)."""
    out: dict[int, list[str]] = {}
    if model is not None:
        from ..nn import Parameter
        for path, module in model.named_modules():
            for attr, value in vars(module).items():
                if isinstance(value, Parameter):
                    out.setdefault(id(value), []).append(f"{path}.{attr}" if path else attr)
    if names is not None:
        items = names.items() if isinstance(names, Mapping) else names
        for name, tensor in items:
            out.setdefault(id(tensor), []).append(name)
    return out


# ------------------------------------------------------------------ labels
def _fmt_shape(shape: tuple) -> str:
    return "scalar" if shape == () else str(tuple(shape))


def _grad_norm(t: Tensor) -> str | None:
    g = t.grad
    if g is None:
        return None
    g = getattr(g, "data", g)  # a Tensor after backward(create_graph=True)
    return f"|grad| {float(np.sqrt(np.square(g, dtype=np.float64).sum())):.3g}"


def _label(t: Tensor, names: dict[int, list[str]]) -> tuple[str, str]:
    """(label lines joined by newlines, node style) of one tensor."""
    info = f"{_fmt_shape(t.shape)} {t.dtype}"
    if _is_op(t):
        lines, style = [t._ctx.fn.name, info], _OP
        if t.data.size == 1:  # a loss, say: show its value
            lines.append(f"= {t.data.item():.4g}")
    elif _is_freed(t):  # an op whose graph the backward pass already released
        lines, style = [t._ctx.fn.name, info, "(graph freed)"], _OP
    elif t.requires_grad:
        label = " = ".join(names.get(id(t), [])) or t.name or "leaf"
        lines, style = [label, info], _LEAF
    else:
        value = f"{t.data.item():.4g}" if t.data.size == 1 else (t.name or "const")
        lines, style = [value, info], _CONST
    grad = _grad_norm(t)
    if grad:
        lines.append(grad)
    return "\n".join(lines), style


def _quote(text: str) -> str:
    """A DOT string literal; newlines become DOT's centred line breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# ------------------------------------------------------------------ collapsing repeated blocks
def _scopes(order: list[Tensor], names: dict[int, list[str]]) -> dict[int, str]:
    """id(op or parameter) -> module path. An op that consumes a named parameter belongs to that
    parameter's module; any other op to the module of its most recently computed input (the deepest
    one), so a residual add `x + attn(x)` lands in the block that computed `attn(x)`."""
    depth, scope = {}, {}
    for t in order:
        if id(t) in names:
            scope[id(t)] = names[id(t)][0].rpartition(".")[0]
        parents = inputs_of(t)
        if not parents:
            depth[id(t)] = 0
            continue
        depth[id(t)] = 1 + max(depth[id(p)] for p in parents)
        owned = [scope[id(p)] for p in parents if id(p) in names]
        if owned:
            scope[id(t)] = owned[0]
        else:
            inner = [p for p in parents if id(p) in scope]
            if inner:
                scope[id(t)] = scope[id(max(inner, key=lambda p: depth[id(p)]))]
    return scope


_REPEATED = re.compile(r"^(.*)\.(\d+)(?:\.|$)")  # "transformer.h.3.attn" -> ("transformer.h", "3")


def _groups(order: list[Tensor], scope: dict[int, str], keep_first: bool) -> dict[int, str]:
    """id(node) -> label of the box it collapses into: runs of consecutive repeated blocks."""
    block_of: dict[int, tuple[str, int]] = {}
    for t in order:
        m = _REPEATED.match(scope.get(id(t), ""))
        if m:
            block_of[id(t)] = (m.group(1), int(m.group(2)))
    by_list: dict[str, list[int]] = {}
    for lst, i in set(block_of.values()):
        by_list.setdefault(lst, []).append(i)
    box_of_block: dict[tuple[str, int], str] = {}
    for lst, idxs in by_list.items():
        idxs = sorted(idxs)[1:] if keep_first else sorted(idxs)
        runs: list[list[int]] = []
        for i in idxs:  # consecutive indices share one box
            if runs and i == runs[-1][-1] + 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        for run in runs:
            label = f"{lst}.{run[0]}" if len(run) == 1 else f"{lst}.{run[0]} ... {lst}.{run[-1]}"
            for i in run:
                box_of_block[(lst, i)] = label
    return {k: box_of_block[b] for k, b in block_of.items() if b in box_of_block}


# ------------------------------------------------------------------ DOT
def to_dot(t: Tensor, model=None, names: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] | None = None,
           max_nodes: int = 100, title: str | None = None) -> str:
    """Graphviz DOT text of the graph that produced `t`.

    model: a Module whose parameters are named by their dotted path; names: more {name: tensor}.
    max_nodes: above this many nodes, collapse repeated blocks, then draw only the nodes nearest `t`.
    """
    if _is_freed(t):
        raise RuntimeError(f"to_dot: the graph of this tensor (op '{t._ctx.fn.name}') was freed by backward(); draw it "
                           f"before backward, or call backward(retain_graph=True) to keep it")
    if max_nodes < 2:
        raise ValueError(f"to_dot: max_nodes must be at least 2, got {max_nodes}")
    order = toposort([t], only_grad=False)
    pnames = _param_names(model, names)
    box: dict[int, str] = {}  # id(node) -> label of the collapsed box it is drawn in
    scope: dict[int, str] = {}
    if len(order) > max_nodes:
        scope = _scopes(order, pnames)
        for keep_first in (True, False):
            box = _groups(order, scope, keep_first)
            if _count(order, box) <= max_nodes:
                break
    ids: dict[int, str] = {}  # id(tensor) or box label -> DOT node id
    lines, boxes = [], {}
    for t_ in order:
        label = box.get(id(t_))
        if label is not None:
            stats = boxes.setdefault(label, [0, 0, 0, set()])  # ops, parameters, constants, blocks
            stats[0 if t_._ctx is not None else 1 if t_.requires_grad else 2] += 1
            stats[3].add(_REPEATED.match(scope[id(t_)]).groups())
            ids[id(t_)] = ids.setdefault(label, f"g{len(boxes) - 1}")
        else:
            ids[id(t_)] = f"n{len(ids)}"
    edges, to_box = [], set()
    for t_ in order:
        for p in inputs_of(t_):  # one edge per input (x * x has two); one per pair when a box is involved
            a, b = ids[id(p)], ids[id(t_)]
            if a == b or ((a[0] == "g" or b[0] == "g") and (a, b) in to_box):
                continue
            edges.append((a, b))
            to_box.add((a, b))
    drawn = _nearest(order, ids, edges, t, max_nodes)
    for t_ in order:
        node_id = ids[id(t_)]
        if node_id[0] == "n" and node_id in drawn:
            label, style = _label(t_, pnames)
            lines.append(f"  {node_id} [label={_quote(label)}, {_ROOT if t_ is t else style}];")
    for label, (n_ops, n_params, n_consts, blocks) in boxes.items():
        node_id = ids[label]
        if node_id in drawn:
            counts = [f"{n} {what}" for n, what in ((n_ops, "ops"), (n_params, "parameters"), (n_consts, "constants"))
                      if n]
            text = f"{label}\n{len(blocks)} block{'s' * (len(blocks) > 1)} collapsed: {', '.join(counts)}"
            lines.append(f"  {node_id} [label={_quote(text)}, {_GROUP}];")
    hidden = len({ids[id(t_)] for t_ in order} - drawn)
    if hidden:
        lines.append(f'  more [label={_quote(f"... {hidden} more nodes (max_nodes={max_nodes})")}, '
                     f'shape=note, style=dashed];')
    for a, b in _dedupe_hidden(edges, drawn):
        lines.append(f"  {a} -> {b};")
    head = [f"digraph {_quote(title or 'autograd')} {{",
            '  graph [rankdir=TB, fontname="Helvetica", nodesep=0.25, ranksep=0.35];',
            '  node [fontname="Helvetica", fontsize=10, margin="0.08,0.04"];',
            '  edge [color="#555555", arrowsize=0.6];']
    if title:
        head.append(f"  label={_quote(title)}; labelloc=t;")
    return "\n".join(head + lines + ["}"]) + "\n"


def _count(order: list[Tensor], box: dict[int, str]) -> int:
    return len({box.get(id(t), id(t)) for t in order})


def _nearest(order: list[Tensor], ids: dict, edges: list, root: Tensor, max_nodes: int) -> set[str]:
    """The DOT node ids to draw: all of them, or the max_nodes - 1 closest to the root (by edges)."""
    every = {ids[id(t)] for t in order}
    if len(every) <= max_nodes:
        return every
    inputs: dict[str, list[str]] = {}
    for a, b in edges:
        inputs.setdefault(b, []).append(a)
    drawn, frontier = {ids[id(root)]}, [ids[id(root)]]
    while frontier and len(drawn) < max_nodes - 1:  # breadth first, from the output up
        nxt = []
        for b in frontier:
            for a in inputs.get(b, []):
                if a not in drawn and len(drawn) < max_nodes - 1:
                    drawn.add(a)
                    nxt.append(a)
        frontier = nxt
    return drawn


def _dedupe_hidden(edges: list, drawn: set[str]) -> list[tuple[str, str]]:
    """Edges between drawn nodes, plus one edge `more -> x` for each drawn x with a hidden input."""
    out, to_more = [], {}
    for a, b in edges:
        if a in drawn and b in drawn:
            out.append((a, b))
        elif b in drawn:
            to_more[b] = None  # an ordered set
    return out + [("more", b) for b in to_more]


def render(t: Tensor, path, **kwargs) -> Path:
    """Draw t's graph to `path` (.svg, .png or .pdf via Graphviz's `dot`; .dot writes the text).

    Without the `dot` program the DOT text goes to path with the suffix .dot instead, with a warning
    saying so. Returns the path written. kwargs go to `to_dot` (model, names, max_nodes, title).
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("svg", "png", "pdf", "dot"):
        raise ValueError(f"render: cannot tell the format from {path.name!r}; use a .svg, .png, .pdf or .dot path")
    text = to_dot(t, **kwargs)
    exe = shutil.which("dot") if fmt != "dot" else None
    if exe is None:
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(text, encoding="utf-8")
        if fmt != "dot":
            warnings.warn(f"render: Graphviz's `dot` program was not found, so {dot_path} was written instead of "
                          f"{path}; install Graphviz (e.g. `apt-get install graphviz`) and run "
                          f"`dot -T{fmt} {dot_path} -o {path}`", RuntimeWarning, stacklevel=2)
        return dot_path
    import subprocess  # here: only a picture needs Graphviz, and `import tinygrad_lite` should start no processes
    res = subprocess.run([exe, f"-T{fmt}", "-o", str(path)], input=text.encode(), capture_output=True)
    if res.returncode != 0:
        raise RuntimeError(f"render: `dot -T{fmt}` failed ({res.returncode}): {res.stderr.decode(errors='replace')}")
    return path
