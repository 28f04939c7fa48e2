# Step 3: watching gradients flow: tensor hooks, retain_grad, and removing a hook again.
import numpy as np

from tinygrad_lite import Tensor

w = Tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
x = Tensor([[1.0, 1.0]])
h = x @ w                  # (1, 2): not a leaf, so backward does not keep its .grad ...
h.retain_grad()            # ... unless asked to
y = h.tanh().sum()

h.register_hook(lambda g: print("dy/dh arrives at h:", g.numpy()))      # called with the gradient
clip = w.register_hook(lambda g: np.clip(g.numpy(), -0.1, 0.1))       # returning a value replaces it
y.backward()
print("h.grad =", h.grad, " w.grad (clipped by the hook) =", w.grad.ravel())
assert np.abs(w.grad).max() <= 0.1

clip.remove()              # without the hook the next backward gives the raw gradient
w.grad = None
(x @ w).tanh().sum().backward()
print("w.grad without the hook =", w.grad.ravel())
assert np.abs(w.grad).max() > 0.1
