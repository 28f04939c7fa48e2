# Step 9: a Hessian-vector product of a GPT block's loss, and the curvature along the gradient,
# g^T H g / g^T g: the second derivative of the loss along the direction gradient descent moves in
# (a step of size lr changes the loss by about -lr |g|^2 + lr^2/2 g^T H g). H is never formed: Hg is
# the gradient of g . v, taken through the backward pass (two backward passes).
import numpy as np

import tinygrad_lite.functional as F
from gpt import GPT, GPTConfig
from tinygrad_lite import Tensor, autograd

model = GPT(GPTConfig.from_preset("tiny", n_layer=2), seed=0, dtype=np.float64)
block = model.transformer.h[0]
params = [p for _, p in block.named_parameters()]  # the block's 12 weights and biases
rng = np.random.default_rng(0)
x = Tensor(rng.standard_normal((2, 16, 128)), dtype=np.float64)  # (B, T, C) input to the block
target = Tensor(rng.standard_normal((2, 16, 128)), dtype=np.float64)


def loss_fn():
    return ((block(x) - target) ** 2).mean()  # a regression loss on the block's output


loss = loss_fn()
g = autograd.grad(loss, params, create_graph=True)  # dL/dparams, recorded as a graph
v = [gi.detach() for gi in g]  # the direction: the gradient itself, held constant
gv = sum(((gi * vi).sum() for gi, vi in zip(g, v)), Tensor(0.0, dtype=np.float64))  # g . v
Hv = autograd.grad(gv, params)  # d(g . v)/dparams = H v
gHg = sum(float((h.numpy() * vi.numpy()).sum()) for h, vi in zip(Hv, v))
gg = sum(float((vi.numpy() ** 2).sum()) for vi in v)
print(f"loss {loss.item():.5f}  |g|^2 = {gg:.4e}  g^T H g / g^T g = {gHg / gg:.5f}")

# the same number from finite differences of the gradient along g: (g(theta + eps u) - g(theta - eps u)) . u / (2 eps)
u = [vi.numpy() / np.sqrt(gg) for vi in v]
eps = 1e-5
grads = []
for sign in (1, -1):
    for p, ui in zip(params, u):
        p.data += sign * eps * ui
    grads.append([gi.numpy() for gi in autograd.grad(loss_fn(), params)])
    for p, ui in zip(params, u):
        p.data -= sign * eps * ui
fd = sum(float(((a - b) * ui).sum()) for a, b, ui in zip(*grads, u)) / (2 * eps)
print(f"finite differences: {fd:.5f}")
assert abs(fd - gHg / gg) < 1e-5 * max(1.0, abs(fd))
