"""tinygrad_lite.graph: DOT text of autograd graphs, names, gradient norms, collapsing, render()."""
import re
import shutil
import subprocess

import numpy as np
import pytest

import tinygrad_lite.nn as nn
from gpt import GPT, GPTConfig
from tinygrad_lite import Tensor
from tinygrad_lite.graph import render, retain_grads, to_dot

NODE = re.compile(r'^\s+(\w+) \[label="((?:[^"\\]|\\.)*)"', re.M)
EDGE = re.compile(r"^\s+(\w+) -> (\w+);", re.M)


def parse(dot: str) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """{node id: label lines}, [(from id, to id)] of DOT text written by to_dot."""
    nodes = {nid: label.split("\\n") for nid, label in NODE.findall(dot)}
    return nodes, EDGE.findall(dot)


def by_first_line(nodes: dict) -> dict[str, str]:
    return {lines[0]: nid for nid, lines in nodes.items()}


def abc():
    a = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = Tensor([4.0, -5.0, 6.0], requires_grad=True)
    c = Tensor([0.5, 0.5, 0.5])
    a.name, b.name, c.name = "a", "b", "c"
    return a, b, c


def test_dot_of_a_times_b_plus_c_sum_has_the_expected_nodes_and_edges():
    a, b, c = abc()
    y = (a * b + c).sum()
    nodes, edges = parse(to_dot(y))
    ids = by_first_line(nodes)
    assert sorted(ids) == ["a", "add", "b", "c", "mul", "sum"]
    named = {(nodes[s][0], nodes[t][0]) for s, t in edges}
    assert named == {("a", "mul"), ("b", "mul"), ("mul", "add"), ("c", "add"), ("add", "sum")}
    assert len(edges) == 5
    assert nodes[ids["mul"]][1] == "(3,) float32"
    assert nodes[ids["sum"]][1] == "scalar float32"
    assert nodes[ids["sum"]][2] == f"= {float(np.sum([4.5, -9.5, 18.5])):.4g}"  # the scalar's value
    assert not any("|grad|" in line for lines in nodes.values() for line in lines)  # no backward yet


def test_dot_shows_gradient_norms_after_backward():
    a, b, c = abc()
    y = (a * b + c).sum()
    retain_grads(y)
    y.backward(retain_graph=True)
    nodes, _ = parse(to_dot(y))
    ids = by_first_line(nodes)
    # d sum(a*b + c)/da = b, /db = a; every op's output gets upstream gradient ones(3)
    assert nodes[ids["a"]][-1] == f"|grad| {np.linalg.norm([4.0, -5.0, 6.0]):.3g}"
    assert nodes[ids["b"]][-1] == f"|grad| {np.linalg.norm([1.0, 2.0, 3.0]):.3g}"
    assert nodes[ids["mul"]][-1] == f"|grad| {np.sqrt(3):.3g}"
    assert not nodes[ids["c"]][-1].startswith("|grad|")  # a constant has no gradient


def test_freed_graph_is_a_clear_error():
    a, b, c = abc()
    y = (a * b + c).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        to_dot(y)


def test_an_input_used_twice_has_two_edges_and_constants_show_their_value():
    x = Tensor(3.0, requires_grad=True)
    x.name = "x"
    nodes, edges = parse(to_dot(x * x + 2 * x))
    ids = by_first_line(nodes)
    muls = [nid for nid, lines in nodes.items() if lines[0] == "mul"]
    assert len(muls) == 2 and "2" in ids  # the lifted constant 2, labelled by its value
    assert sorted(edges).count((ids["x"], muls[0])) + sorted(edges).count((ids["x"], muls[1])) == 3


def test_parameters_are_named_by_module_path_and_tied_ones_by_both_names():
    class Tied(nn.Module):
        def __init__(self):
            self.enc = nn.Linear(3, 2)
            self.dec = nn.Linear(2, 3)
            self.head = nn.Module()
            self.head.w = self.enc.weight  # the same Parameter under a second path

        def forward(self, x):
            return self.dec(self.enc(x)) @ self.head.w  # (4, 3) @ (3, 2)

    m = Tied()
    out = m(Tensor(np.ones((4, 3)))).sum()
    nodes, _ = parse(to_dot(out, model=m))
    labels = {lines[0] for lines in nodes.values()}
    assert {"enc.weight = head.w", "enc.bias", "dec.weight", "dec.bias"} <= labels
    nodes, _ = parse(to_dot(out, names={"my_bias": m.enc.bias}))
    assert "my_bias" in {lines[0] for lines in nodes.values()}


def tiny_gpt_loss(n_layer: int):
    model = GPT(GPTConfig.from_preset("tiny", n_layer=n_layer), seed=0)
    rng = np.random.default_rng(0)
    return model, model.loss(rng.integers(0, 256, (2, 8)), rng.integers(0, 256, (2, 8)))


def test_max_nodes_collapses_repeated_blocks_keeping_the_first():
    model, loss = tiny_gpt_loss(n_layer=4)
    full_nodes, full_edges = parse(to_dot(loss, model=model, max_nodes=10_000))
    per_block = sum(1 for lines in full_nodes.values() if lines[0].startswith("transformer.h.1."))
    assert per_block == 12  # 12 parameters in a GPT-2 block
    nodes, edges = parse(to_dot(loss, model=model, max_nodes=80))
    assert len(nodes) <= 80 < len(full_nodes)
    labels = [lines[0] for lines in nodes.values()]
    assert "transformer.h.0.attn.c_attn.weight" in labels  # the first block stays expanded
    assert not any(l.startswith(("transformer.h.1.", "transformer.h.3.")) for l in labels)
    box = [nid for nid, lines in nodes.items() if lines[0] == "transformer.h.1 ... transformer.h.3"]
    assert len(box) == 1
    assert nodes[box[0]][1].startswith("3 blocks collapsed:") and "36 parameters" in nodes[box[0]][1]
    # the box sits in the residual stream: one edge in (from block 0), one edge out (to ln_f)
    into = [nodes[s][0] for s, t in edges if t == box[0]]
    out_of = [nodes[t][0] for s, t in edges if s == box[0]]
    assert into == ["add"] and out_of == ["layer_norm"]
    # every node but the root feeds something: the picture stays connected
    sources = {s for s, _ in edges}
    root = [nid for nid, lines in nodes.items() if lines[0] == "cross_entropy"]
    assert set(nodes) - sources == set(root)


def test_without_a_model_only_the_nodes_nearest_the_output_are_drawn():
    _, loss = tiny_gpt_loss(n_layer=2)
    dot = to_dot(loss, max_nodes=12)
    nodes, edges = parse(dot)
    assert len(nodes) <= 12
    assert "cross_entropy" in {lines[0] for lines in nodes.values()}
    more = [lines for nid, lines in nodes.items() if nid == "more"]
    assert more and re.match(r"\.\.\. \d+ more nodes \(max_nodes=12\)", more[0][0])
    with pytest.raises(ValueError, match="max_nodes"):
        to_dot(loss, max_nodes=1)


def test_render_without_graphviz_writes_dot_and_says_so(tmp_path, monkeypatch):
    a, b, c = abc()
    y = (a * b + c).sum()
    monkeypatch.setattr(shutil, "which", lambda name: None)  # wherever render looks `dot` up
    with pytest.warns(RuntimeWarning, match=r"`dot` program was not found.*y\.dot"):
        written = render(y, tmp_path / "y.svg")
    assert written == tmp_path / "y.dot" and not (tmp_path / "y.svg").exists()
    assert written.read_text() == to_dot(y)
    assert render(y, tmp_path / "z.dot") == tmp_path / "z.dot"  # .dot asked for: no warning needed
    with pytest.raises(ValueError, match=r"\.svg, \.png"):
        render(y, tmp_path / "y.jpg")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_render_with_graphviz_writes_svg_and_png(tmp_path):
    model, loss = tiny_gpt_loss(n_layer=3)
    svg = render(loss, tmp_path / "g.svg", model=model, max_nodes=60, title='a "quoted" title')
    assert svg == tmp_path / "g.svg" and "<svg" in svg.read_text()
    png = render(loss, tmp_path / "g.png", model=model, max_nodes=60)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = subprocess.run(["dot", "-Tsvg"], input=to_dot(loss).encode(), capture_output=True)  # uncollapsed
    assert res.returncode == 0, res.stderr
