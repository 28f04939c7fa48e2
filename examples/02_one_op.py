# Step 2: one op, forward and backward. An op is a Function: a forward on NumPy arrays, and a backward
# that maps the upstream gradient g = dL/d(out) to one gradient per input, written in Tensor ops.
import numpy as np

from tinygrad_lite import Function, Tensor, autograd, gradcheck

# mul, as the engine has it: forward a * b; backward d(a*b)/da = b, d(a*b)/db = a
a = Tensor([1.0, 2.0, 3.0], requires_grad=True)
b = Tensor([4.0, 5.0, 6.0], requires_grad=True)
g = np.array([0.5, -1.0, 2.0], dtype=np.float32)  # some upstream gradient dL/d(a*b)
(a * b).backward(g)
print("a.grad =", a.grad, "= g * b")
print("b.grad =", b.grad, "= g * a")
assert np.array_equal(a.grad, g * b.data) and np.array_equal(b.grad, g * a.data)


# a new op, written the same way: softplus(x) = log(1 + e^x), d softplus/dx = sigmoid(x)
class Softplus(Function):
    @staticmethod
    def forward(ctx, x):                 # NumPy arrays in, a NumPy array out
        ctx.save_for_backward(x)         # what the backward needs
        return np.logaddexp(0.0, x)      # log(e^0 + e^x), stable for large |x|

    @staticmethod
    def backward(ctx, g):                # g: a Tensor of the output's shape
        (x,) = ctx.saved_tensors         # x as the input Tensor itself
        return g * x.sigmoid()           # dL/dx = g * sigmoid(x), in Tensor ops


softplus = Softplus.apply                # use it like any op: softplus(tensor)

# check the backward against central differences, in float64, over the whole Jacobian
x = Tensor(np.random.default_rng(0).normal(size=(4, 3)), requires_grad=True, dtype=np.float64)
print("gradcheck(softplus):", gradcheck(softplus, [x]))

# a backward in Tensor ops can be differentiated again: d sigmoid(z)/dz = sigmoid(z) (1 - sigmoid(z))
z = Tensor([-1.0, 0.0, 2.0], requires_grad=True)
softplus(z).sum().backward(create_graph=True)  # z.grad = sigmoid(z), a Tensor that keeps its graph
(d2,) = autograd.grad(z.grad.sum(), [z])
s = 1 / (1 + np.exp(-z.data))
print("d2 softplus/dz2 =", d2.numpy(), "= sigmoid (1 - sigmoid)")
assert np.allclose(d2.numpy(), s * (1 - s))
