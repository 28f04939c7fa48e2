# Step 1: a scalar, the graph that computed it, and its gradient.
# The picture goes to the folder given as the first argument (default: out/examples).
import sys
from pathlib import Path

from tinygrad_lite import Tensor
from tinygrad_lite.graph import render

x = Tensor(3.0, requires_grad=True)
y = x * x + 2 * x                # y = x^2 + 2x
y.backward(retain_graph=True)    # dy/dx = 2x + 2; retain_graph keeps the graph for the picture
print("dy/dx =", x.grad)         # 8.0

assert x.grad == 2 * 3.0 + 2
x.name = "x"                     # leaves are labelled by .name (parameters by their module path)
out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/examples")
out.mkdir(parents=True, exist_ok=True)
print("wrote", render(y, out / "01_scalar.svg"))  # SVG with Graphviz's `dot`; without it, 01_scalar.dot
