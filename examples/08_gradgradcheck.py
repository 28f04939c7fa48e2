# Step 8: checking second derivatives. gradgradcheck differentiates the backward pass of layer_norm
# (recorded with create_graph=True) and compares every derivative with central differences, in
# float64. A backward that is right to first order but wrong to second passes gradcheck, not this.
import numpy as np

import tinygrad_lite.functional as F
from tinygrad_lite import Function, GradcheckError, Tensor, gradcheck, gradgradcheck

rng = np.random.default_rng(0)
x, w, b = (Tensor(rng.standard_normal(s), requires_grad=True, dtype=np.float64) for s in ((2, 3, 5), (5,), (5,)))
print("gradgradcheck(layer_norm):", gradgradcheck(lambda x, w, b: F.layer_norm(x, w, b), [x, w, b]))


class LeakyTanh(Function):  # tanh, whose backward uses tanh(x) as a constant: its own derivative is lost
    @staticmethod
    def forward(ctx, x):
        out = np.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * (1 - out.numpy() ** 2)  # right value; .numpy() cuts the graph of out


print("gradcheck(LeakyTanh):", gradcheck(LeakyTanh.apply, [x]))  # first derivatives: fine
try:
    gradgradcheck(LeakyTanh.apply, [x])
except GradcheckError as e:
    print("gradgradcheck(LeakyTanh) caught it:", str(e)[:110], "...")
else:
    raise AssertionError("gradgradcheck missed a wrong second derivative")
