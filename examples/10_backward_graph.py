# Step 10: the graph of a backward pass. With create_graph=True the backward pass is recorded like
# any forward: here the gradient of y = tanh(x) * w with respect to x, (1 - tanh^2 x) * w * g, is a
# Tensor made by ops (mul, sub, ...), so it can be drawn, and differentiated again.
import sys
from pathlib import Path

import numpy as np

from tinygrad_lite import Tensor, autograd
from tinygrad_lite.graph import render

x = Tensor([0.5, -1.0, 2.0], requires_grad=True)
w = Tensor([1.5, 2.0, -0.5], requires_grad=True)
x.name, w.name = "x", "w"
y = (x.tanh() * w).sum()
(dx,) = autograd.grad(y, x, create_graph=True)  # dy/dx = (1 - tanh(x)^2) * w, as a graph
print("dy/dx =", dx)  # requires_grad=True: it was made by ops of the backward pass
assert np.allclose(dx.numpy(), (1 - np.tanh(x.numpy()) ** 2) * w.numpy())
out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/examples")  # where the picture goes
out.mkdir(parents=True, exist_ok=True)
print("wrote", render(dx, out / "10_backward_graph.svg",
                      title="dy/dx of y = sum(tanh(x) * w), recorded by autograd.grad(create_graph=True)"))

(d2,) = autograd.grad(dx.sum(), x)  # and once more: d2y/dx2 = -2 tanh(x) (1 - tanh(x)^2) w
print("d2y/dx2 =", d2.numpy())
assert np.allclose(d2.numpy(), -2 * np.tanh(x.numpy()) * (1 - np.tanh(x.numpy()) ** 2) * w.numpy(), rtol=1e-6)
