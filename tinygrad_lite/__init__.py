"""tinygrad_lite: a small autograd engine on NumPy."""
from ._state import (AnomalyError, detect_anomaly, enable_grad, get_default_dtype, is_grad_enabled,
                     no_grad, set_default_dtype)
from .tensor import Tensor, unbroadcast

__all__ = ["Tensor", "unbroadcast", "no_grad", "enable_grad", "is_grad_enabled", "get_default_dtype",
           "set_default_dtype", "detect_anomaly", "AnomalyError", "gradcheck", "GradcheckError"]


def __getattr__(name):  # gradcheck is imported lazily so a half-built tree still imports
    if name in ("gradcheck", "GradcheckError"):
        from . import gradcheck as _gc
        return getattr(_gc, name)
    raise AttributeError(name)
