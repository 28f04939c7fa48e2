"""tinygrad_lite: a small autograd engine on NumPy."""
from ._state import (AnomalyError, detect_anomaly, enable_grad, get_default_dtype, is_grad_enabled,
                     no_grad, set_default_dtype)
from .tensor import Tensor, unbroadcast
from .gradcheck import GradcheckError, gradcheck  # the function shadows the submodule name
from .profile import profile  # likewise the class

__all__ = ["Tensor", "unbroadcast", "no_grad", "enable_grad", "is_grad_enabled", "get_default_dtype",
           "set_default_dtype", "detect_anomaly", "AnomalyError", "gradcheck", "GradcheckError", "profile"]

