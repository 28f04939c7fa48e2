"""tinygrad_lite: a small autograd engine on NumPy.

Layers, each importing only those below it: state, observe -> backprop (the chain rule) -> function
(Function, the op registry) -> tensor (Tensor, the primitive ops) -> functional (fused ops) ->
autograd (grad, vjp/jvp/hvp), nn, optim, recompute -> fast (kernels beside the math, tested equal, off
until `tinygrad_lite.fast.enable()`) -> tools (gradcheck, graph pictures, profiler, anomaly mode) -> this
package's names. `tinygrad_lite.parallel` (worker processes) and `tinygrad_lite.exercises` load on demand.
"""
from .state import enable_grad, get_default_dtype, is_grad_enabled, no_grad, set_default_dtype, set_grad_enabled
from .function import Function
from .tensor import Tensor, unbroadcast
from . import autograd, functional, nn, optim
from .recompute import checkpoint, recompute  # checkpoint: PyTorch's name for recompute
from . import fast
from .fast import reuse_freed_memory
from . import gradcheck, graph, memory, profile  # noqa: F401  the old module names (re-exports), loaded first so that
from .tools.anomaly import AnomalyError, detect_anomaly  # the function and the class below keep these two names
from .tools.gradcheck import GradcheckError, gradcheck, gradgradcheck
from .tools.profile import profile

__all__ = ["Tensor", "Function", "unbroadcast", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
           "get_default_dtype", "set_default_dtype", "autograd", "detect_anomaly", "AnomalyError", "gradcheck",
           "GradcheckError", "gradgradcheck", "profile", "reuse_freed_memory", "graph", "fast", "recompute",
           "checkpoint"]
