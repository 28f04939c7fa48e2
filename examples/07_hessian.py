# Step 7: second derivatives. f(x, y) = x^2 y + y^3 - 3 x y has a zero gradient at (0, 0) and at
# (1.5, sqrt(0.75)); the eigenvalues of its Hessian there tell a saddle from a minimum. The Hessian
# comes from backward passes through the backward pass (each op's backward is written in Tensor ops).
import numpy as np

from tinygrad_lite import Tensor, autograd
from tinygrad_lite.autograd.functional import hessian


def f(p):  # p = (x, y)
    x, y = p[0], p[1]
    return x * x * y + y ** 3 - 3 * x * y


for point in ([0.0, 0.0], [1.5, np.sqrt(0.75)]):
    p = Tensor(point, requires_grad=True, dtype=np.float64)
    (grad,) = autograd.grad(f(p), p)  # (2xy - 3y, x^2 + 3y^2 - 3x)
    H = hessian(f, p).numpy()  # [[2y, 2x - 3], [2x - 3, 6y]]
    x, y = point
    assert np.allclose(grad.numpy(), 0, atol=1e-12)
    assert np.allclose(H, [[2 * y, 2 * x - 3], [2 * x - 3, 6 * y]], rtol=1e-14)
    eig = np.linalg.eigvalsh(H)  # a symmetric matrix: real eigenvalues
    kind = "a minimum" if eig.min() > 0 else "a saddle point" if eig.min() < 0 < eig.max() else "undecided"
    print(f"at ({x:.4f}, {y:.4f}): gradient {grad.numpy()}, Hessian eigenvalues {np.round(eig, 4)} -> {kind}")
