"""tinygrad_lite: a small autograd engine on NumPy."""
from ._state import (AnomalyError, detect_anomaly, enable_grad, get_default_dtype, is_grad_enabled,
                     no_grad, set_default_dtype)
from .tensor import Tensor, unbroadcast
from .gradcheck import GradcheckError, gradcheck  # the function shadows the submodule name
from .profile import profile  # likewise the class
from .memory import reuse_freed_memory
from . import graph  # noqa: E402  (tinygrad_lite.graph.to_dot / render)

reuse_freed_memory()  # see memory.py: reuse freed blocks instead of page-faulting fresh ones each step

__all__ = ["Tensor", "unbroadcast", "no_grad", "enable_grad", "is_grad_enabled", "get_default_dtype",
           "set_default_dtype", "detect_anomaly", "AnomalyError", "gradcheck", "GradcheckError", "profile",
           "reuse_freed_memory", "graph"]

