# Step 2: one op, forward and backward. An op is a NumPy forward plus a backward closure that
# maps the upstream gradient g = dL/d(out) to one gradient per input.
import numpy as np

from tinygrad_lite import Tensor, gradcheck

# mul, as the engine has it: forward a * b; backward d(a*b)/da = b, d(a*b)/db = a
a = Tensor([1.0, 2.0, 3.0], requires_grad=True)
b = Tensor([4.0, 5.0, 6.0], requires_grad=True)
g = np.array([0.5, -1.0, 2.0], dtype=np.float32)  # some upstream gradient dL/d(a*b)
(a * b).backward(g)
print("a.grad =", a.grad, "= g * b")
print("b.grad =", b.grad, "= g * a")
assert np.array_equal(a.grad, g * b.data) and np.array_equal(b.grad, g * a.data)


# a new op, written the same way: softplus(x) = log(1 + e^x), d softplus/dx = sigmoid(x)
def softplus(x: Tensor) -> Tensor:
    out = np.logaddexp(0.0, x.data)           # forward, stable for large |x|
    sig = 0.5 * (1.0 + np.tanh(0.5 * x.data))  # sigmoid(x), saved for the backward
    return Tensor._make(out, (x,), lambda g: (g * sig,), "softplus")


# check the backward against central differences, in float64, over the whole Jacobian
x = Tensor(np.random.default_rng(0).normal(size=(4, 3)), requires_grad=True, dtype=np.float64)
print("gradcheck(softplus):", gradcheck(softplus, [x]))
